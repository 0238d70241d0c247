//! Files on messages in a real headless Chromium against a real node: attach a picture and a
//! PDF with the picker (a slow upload shows its progress and holds Send), send them as a reply
//! without words, see the picture previewed and the PDF listed, download the PDF through its
//! link byte-identical; a file the node refuses shows the node's own reason in the form and is
//! never sent; a new conversation carries a picked and a dropped file; and a hostile SVG opened
//! by its URL is downloaded, not run: the same file served plainly by another origin does run
//! its script, so the check would see it if the node let it.

mod common;
#[path = "browser/files.rs"]
mod files;
#[path = "browser/kit.rs"]
mod kit;
#[path = "browser/wd.rs"]
mod wd;

use common::{TestNode, eventually, random_pdf};
use files::{downloaded, downloads_to, listener, png, sha_hex, sign_in, title};
use kit::{axe, shoot, step, tools_or_skip};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::json;
use wd::Driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_attached_previewed_downloaded_and_never_run() {
    let Some(tools) = tools_or_skip() else { return };
    let n = TestNode::start_configured(
        "acme",
        Role::Retailer,
        "[attachments]\nmax_mb = 1\ntypes = [\"pdf\", \"png\", \"jpeg\", \"gif\", \"webp\", \"txt\", \"csv\", \"svg\"]\n",
    )
    .await;
    let conv = n
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Dented kettles", "body": "Send us what you have"}))
        .await;
    let id = conv["id"].as_str().unwrap().to_string();

    let dir = tempfile::tempdir().unwrap();
    let photo = png(160, 96);
    let pdf = random_pdf(300 * 1024 + 11);
    let elf = {
        let mut v = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
        v.resize(4096, 0x90);
        v
    };
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = files.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let photo_path = write("kettle photo.png", &photo);
    let pdf_path = write("spec sheet.pdf", &pdf);
    let elf_path = write("invoice.pdf", &elf);
    let empty_path = write("empty.txt", b"");
    let big_path = write("big scan.pdf", &random_pdf(1024 * 1024 + 1));
    let csv = "sku,price\n".to_string() + &"SKU-1,9.99\n".repeat(24_000);
    let csv_path = write("price list.csv", csv.as_bytes());
    let saved = dir.path().join("downloads");
    std::fs::create_dir(&saved).unwrap();

    let driver = Driver::start(&tools).await;
    let b = driver.session(1280, 1024).await;
    downloads_to(&b, &saved).await;
    let base = n.base.clone();
    sign_in(&b, &base).await;

    step("open the conversation: the reply box has a labelled file picker");
    b.goto(&format!("{base}/c/{id}")).await;
    b.wait_contains("#conversation-subject", "Dented kettles")
        .await;
    b.wait("label[for=reply-files]").await;

    step("a slow upload shows its progress, and Send waits for it");
    // Throttling takes effect once the network domain is on.
    b.cdp("Network.enable", json!({})).await;
    b.cdp(
        "Network.emulateNetworkConditions",
        json!({"offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 64 * 1024}),
    )
    .await;
    b.choose_files("#reply-files", &[&csv_path]).await;
    b.wait_true(
        "const li = document.querySelector('#reply-uploads li[data-state=uploading]'); const p = li && li.querySelector('progress');
         return !!p && p.value > 0 && p.value < 100 && document.getElementById('reply-send').disabled",
        json!([]),
        "a progress bar part way, with Send disabled",
    )
    .await;
    b.cdp(
        "Network.emulateNetworkConditions",
        json!({"offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}),
    )
    .await;
    b.wait_true(
        "return document.querySelectorAll('#reply-uploads li[data-state=done]').length === 1 && !document.getElementById('reply-send').disabled",
        json!([]),
        "the slow upload to finish and Send to be enabled again",
    )
    .await;
    // Taken, but removed before sending: it is not sent.
    b.click("#reply-uploads li[data-state=done] .upload-remove")
        .await;
    b.wait_true(
        "return document.querySelectorAll('#reply-uploads li').length === 0 && document.activeElement.id === 'reply-files'",
        json!([]),
        "the list empty, the focus back on the picker",
    )
    .await;

    step("pick a picture and a PDF: each uploads at once and is listed with its size");
    b.choose_files("#reply-files", &[&photo_path, &pdf_path])
        .await;
    b.wait_true(
        "return document.querySelectorAll('#reply-uploads li[data-state=done]').length === 2",
        json!([]),
        "both uploads to finish",
    )
    .await;
    let listed = b.text("#reply-uploads").await;
    assert!(
        listed.contains("kettle photo.png") && listed.contains("spec sheet.pdf"),
        "{listed}"
    );
    assert!(
        listed.contains("300.0 KB") || listed.contains("300 KB"),
        "{listed}"
    );
    assert_eq!(b.prop("#reply-send", "disabled").await, json!(false));

    step("a file the node refuses shows the node's reason in place and is not sent");
    let (s, why) = n.upload("invoice.pdf", elf.clone()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{why}");
    let (s, empty_why) = n.upload("empty.txt", vec![]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{empty_why}");
    let (s, big_why) = n.upload("big scan.pdf", random_pdf(1024 * 1024 + 1)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{big_why}");
    b.choose_files("#reply-files", &[&elf_path, &empty_path, &big_path])
        .await;
    b.wait_true(
        "return document.querySelectorAll('#reply-uploads li[data-state=refused]').length === 3",
        json!([]),
        "three refusals",
    )
    .await;
    let errors = b
        .exec(
            "return [...document.querySelectorAll('#reply-uploads li[data-state=refused]')].map((li) =>
               [li.querySelector('.upload-name').textContent, li.querySelector('.upload-error').textContent,
                li.querySelector('.upload-error').getAttribute('role')])",
            json!([]),
        )
        .await;
    for (name, answer) in [
        ("invoice.pdf", &why),
        ("empty.txt", &empty_why),
        ("big scan.pdf", &big_why),
    ] {
        let row = errors
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {errors}"));
        let detail = answer["detail"].as_str().unwrap();
        assert!(
            row[1].as_str().unwrap().contains(detail),
            "{name}: the form says {row}, the node said {detail}"
        );
        assert_eq!(row[2], "alert", "told to screen readers: {row}");
    }
    axe(&b, "reply box with uploads and refusals").await;
    // Removed by keyboard: Enter on Remove, and the focus moves to the next Remove in the
    // list, so three presses take the three refused files; the two taken stay.
    b.exec(
        "document.querySelector('#reply-uploads li[data-state=refused] .upload-remove').focus()",
        json!([]),
    )
    .await;
    for left in [4, 3, 2] {
        b.press(&["Enter"]).await;
        b.wait_true(
            "return document.querySelectorAll('#reply-uploads li').length === arguments[0]",
            json!([left]),
            "a refused file removed",
        )
        .await;
    }
    let focus = b
        .exec(
            "const a = document.activeElement; return [a.className, a.getAttribute('aria-label'),
               [...document.querySelectorAll('#reply-uploads li')].map((li) => li.dataset.state)]",
            json!([]),
        )
        .await;
    assert_eq!(
        focus,
        json!([
            "link upload-remove",
            "Remove spec sheet.pdf",
            ["done", "done"]
        ]),
        "the focus stays in the list"
    );

    step("send the files as a reply without words");
    b.click("#reply-send").await;
    b.wait_contains("#toast", "Reply sent").await;
    b.wait("#thread li .files img.file-thumb").await;
    let (_, c) = n.get(&format!("/api/v1/conversations/{id}")).await;
    let last = c["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["body"], "", "{last}");
    let att = last["attachments"].as_array().unwrap();
    assert_eq!(att.len(), 2, "only the files the node took: {last}");
    assert_eq!(att[0]["sha256"], sha_hex(&photo));
    assert_eq!(att[1]["sha256"], sha_hex(&pdf));
    assert_eq!(att[1]["name"], "spec sheet.pdf");
    assert_eq!(
        b.exec(
            "return document.querySelectorAll('#reply-uploads li').length",
            json!([])
        )
        .await,
        json!(0),
        "the picker starts empty again"
    );

    step("the picture is previewed, the PDF is listed with a download link");
    b.wait_true(
        "const i = document.querySelector('#thread img.file-thumb'); return !!i && i.complete && i.naturalWidth === 160",
        json!([]),
        "the preview to render",
    )
    .await;
    let img = b
        .exec(
            "const i = document.querySelector('#thread img.file-thumb'); return [i.alt, i.getAttribute('loading'), i.naturalHeight]",
            json!([]),
        )
        .await;
    assert_eq!(img, json!(["kettle photo.png", "lazy", 96]));
    let link = b
        .exec(
            "const a = [...document.querySelectorAll('#thread a.file-link')].find((a) => a.textContent === 'spec sheet.pdf');
             return a ? [a.getAttribute('href'), a.getAttribute('download'), a.closest('li').textContent] : null",
            json!([]),
        )
        .await;
    assert_eq!(
        link[0],
        format!(
            "/api/v1/attachments/{}?name=spec%20sheet.pdf",
            sha_hex(&pdf)
        ),
        "{link}"
    );
    assert_eq!(link[1], "spec sheet.pdf");
    assert!(link[2].as_str().unwrap().contains("300 KB"), "{link}");
    // For the README: the files of the reply, and a refused file in the reply box.
    b.choose_files("#reply-files", &[&elf_path]).await;
    b.wait("#reply-uploads li[data-state=refused] .upload-error")
        .await;
    b.exec(
        "document.getElementById('thread').lastElementChild.scrollIntoView({ block: 'start' })",
        json!([]),
    )
    .await;
    shoot(&b, "files.png").await;
    axe(&b, "thread with files").await;
    b.click("#reply-uploads li[data-state=refused] .upload-remove")
        .await;
    b.wait_gone("#reply-uploads li").await;

    step("download the PDF through its link: the same bytes, as a download");
    let headers = b
        .exec_async(
            "const done = arguments[arguments.length - 1];
             const a = [...document.querySelectorAll('#thread a.file-link')].find((a) => a.textContent === 'spec sheet.pdf');
             fetch(a.href, { credentials: 'same-origin' }).then((r) => done([r.status, r.headers.get('content-disposition'),
               r.headers.get('x-content-type-options'), r.headers.get('content-security-policy')]));",
            json!([]),
        )
        .await;
    assert_eq!(headers[0], 200, "{headers}");
    assert!(
        headers[1].as_str().unwrap().starts_with("attachment"),
        "{headers}"
    );
    assert_eq!(headers[2], "nosniff");
    b.click(&format!(
        "#thread li[data-sha='{}'] a.file-link",
        sha_hex(&pdf)
    ))
    .await;
    let got = downloaded(&saved, "spec sheet.pdf", pdf.len()).await;
    assert!(
        got == pdf,
        "the downloaded PDF differs from the one uploaded"
    );

    step("a new conversation carries a file too");
    b.goto(&format!("{base}/new?partner=bolt&subject=Kettle%20photo"))
        .await;
    b.wait("#compose-subject").await;
    b.choose_files("#compose-files", &[&photo_path]).await;
    // A file dropped onto the form: the events a drag from the desktop fires, with a file.
    let glowed = b
        .exec(
            "const dt = new DataTransfer();
             dt.items.add(new File(['sku,counted\\nSKU-1,4\\n'], 'counts.csv', { type: 'text/csv' }));
             const f = document.getElementById('compose-form');
             const fire = (t) => f.dispatchEvent(new DragEvent(t, { bubbles: true, cancelable: true, dataTransfer: dt }));
             fire('dragenter'); fire('dragover');
             const glow = f.classList.contains('dropping');
             fire('drop');
             return [glow, f.classList.contains('dropping')]",
            json!([]),
        )
        .await;
    assert_eq!(
        glowed,
        json!([true, false]),
        "the form is marked while a file is over it"
    );
    b.wait_true(
        "return document.querySelectorAll('#compose-uploads li[data-state=done]').length === 2",
        json!([]),
        "the picked and the dropped upload",
    )
    .await;
    axe(&b, "New Conversation with a file").await;
    b.click("#compose-send").await;
    b.wait_contains("#toast", "Message sent").await;
    let started = eventually(20, "the new conversation", || async {
        let (_, list) = n.get("/api/v1/conversations?limit=200").await;
        list["items"]
            .as_array()?
            .iter()
            .find(|c| c["subject"] == "Kettle photo")
            .cloned()
    })
    .await;
    let (_, c) = n
        .get(&format!(
            "/api/v1/conversations/{}",
            started["id"].as_str().unwrap()
        ))
        .await;
    let first = &c["messages"][0];
    assert_eq!(first["body"], "", "{c}");
    assert_eq!(first["attachments"][0]["sha256"], sha_hex(&photo), "{c}");
    assert_eq!(first["attachments"][1]["name"], "counts.csv", "{c}");
    assert_eq!(first["attachments"][1]["type"], "text/csv", "{c}");
    let noise: Vec<String> = b
        .console_errors()
        .await
        .into_iter()
        // The refused uploads' 4xx answers are logged by the browser itself.
        .filter(|e| !e.contains("/api/v1/attachments"))
        .collect();
    assert!(noise.is_empty(), "{noise:?}");

    step("a hostile SVG opened by its URL downloads and runs no script");
    let svg_src = |port: u16| {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\" onload=\"document.title='onload ran'\">\
             <script>document.title = 'script ran'; var x = new XMLHttpRequest(); \
             x.open('GET', 'http://127.0.0.1:{port}/ran', false); x.send();</script></svg>"
        )
    };
    let (port, seen) = listener(|port| svg_src(port).into_bytes()).await;
    let svg = svg_src(port).into_bytes();
    let (s, up) = n.upload("evil.svg", svg.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{up}");
    assert_eq!(up["type"], "image/svg+xml");
    let page = format!("{base}/c/{id}");
    b.goto(&page).await;
    b.wait_contains("#conversation-subject", "Dented kettles")
        .await;
    let before = title(&b).await;
    b.goto(&format!(
        "{base}/api/v1/attachments/{}?name=evil.svg",
        up["sha256"].as_str().unwrap()
    ))
    .await;
    let got = downloaded(&saved, "evil.svg", svg.len()).await;
    assert!(got == svg, "the SVG is saved as it is");
    assert_eq!(
        b.url().await,
        page,
        "the browser stayed on the page: a download"
    );
    assert_eq!(title(&b).await, before, "no script changed the title");
    assert!(
        seen.lock().unwrap().is_empty(),
        "no script called out: {:?}",
        seen.lock().unwrap()
    );
    // The same file served plainly by another origin does run: the checks above would see it.
    b.goto(&format!("http://127.0.0.1:{port}/svg")).await;
    let ran = title(&b).await;
    assert!(ran.as_str().unwrap_or("").contains("ran"), "{ran}");
    assert!(
        seen.lock().unwrap().iter().any(|p| p == "/ran"),
        "{:?}",
        seen.lock().unwrap()
    );
    b.close().await;
}
