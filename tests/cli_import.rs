//! `parley import FILE`: topic records from CSV, all or nothing, bad rows named by line.

use std::process::{Command, Output, Stdio};

fn parley(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("PARLEY_ORG_ID")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn import_is_all_or_nothing_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = parley(
        d,
        &[
            "init",
            "--org-id",
            "acme",
            "--org-name",
            "Acme",
            "--role",
            "retailer",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    let good = d.join("items.csv");
    std::fs::write(&good, "kind,ref,title,status\r\nitem,SKU-1,Kettle,active\r\nitem,SKU-2,\"Toaster, 2 slots\",draft\r\n").unwrap();
    let o = parley(d, &["import", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("imported 2 topic records (2 new, 0 updated)"),
        "{}",
        text(&o)
    );

    let bad = d.join("bad.csv");
    std::fs::write(
        &bad,
        "kind,ref,title\norder,PO-9,Nine\nplanet,X-1,Not a kind\norder,PO-10\n",
    )
    .unwrap();
    let o = parley(d, &["import", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("nothing was imported") && t.contains("line 3") && t.contains("line 4"),
        "{t}"
    );
    assert!(!t.contains("line 2"), "{t}");

    // PO-9 was on a good line of the refused file: it must not have been stored.
    let fixed = d.join("fixed.csv");
    std::fs::write(
        &fixed,
        "kind,ref,title\norder,PO-9,Nine\nitem,SKU-1,Kettle\n",
    )
    .unwrap();
    let o = parley(d, &["import", fixed.to_str().unwrap()]);
    assert!(text(&o).contains("(1 new, 1 updated)"), "{}", text(&o));

    let o = parley(d, &["import", d.join("missing.csv").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot read"), "{}", text(&o));
}
