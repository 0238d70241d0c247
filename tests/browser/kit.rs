//! What the browser tests share: finding the browser, screenshots, steps, and axe-core.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::wd::{Session, Tools};

pub fn tools_or_skip() -> Option<Tools> {
    match Tools::find() {
        Some(t) => Some(t),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "CI is set but no chromium/chromedriver was found: install Debian's chromium and chromium-driver (.ci/run does)"
            )
        }
        None => {
            eprintln!(
                "\n*** SKIP: browser tests need chromium and chromedriver (apt-get install chromium chromium-driver) ***\n"
            );
            None
        }
    }
}

/// README screenshots are refreshed with `PARLEY_SCREENSHOTS=1 cargo test --test browser`;
/// other runs write them under target/ so that a test run leaves the work tree clean.
pub fn screenshot_path(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = if std::env::var_os("PARLEY_SCREENSHOTS").is_some() {
        root.join("docs/screenshots")
    } else {
        root.join("target/screenshots")
    };
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

/// Takes a screenshot for the README, without a passing notice in it.
pub async fn shoot(b: &Session, name: &str) {
    b.exec(
        "document.getElementById('toast').classList.remove('show')",
        json!([]),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    b.screenshot(&screenshot_path(name)).await;
}

pub fn step(s: &str) {
    eprintln!("browser: {s}");
}

/// axe-core's script, from the npm registry (`.ci/run` installs it under the target dir;
/// `AXE_CORE` names another copy). Without it the check fails under CI and is skipped loudly
/// otherwise.
fn axe_source() -> Option<String> {
    let path = std::env::var_os("AXE_CORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
            target.join("axe/node_modules/axe-core/axe.min.js")
        });
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(_) if std::env::var_os("CI").is_some() => panic!(
            "CI is set but axe-core is missing at {}: npm install --prefix target/axe axe-core@4 (.ci/run does)",
            path.display()
        ),
        Err(_) => {
            eprintln!(
                "\n*** SKIP axe-core check: no {} (npm install --prefix target/axe axe-core@4) ***\n",
                path.display()
            );
            None
        }
    }
}

/// Runs axe-core (WCAG 2.x A and AA rules) over the page as it is now and fails on any
/// serious or critical violation, naming the rule and the elements.
pub async fn axe(b: &Session, page: &str) {
    let Some(src) = axe_source() else { return };
    let loaded = b
        .exec("return typeof window.axe === 'object'", json!([]))
        .await;
    if loaded != json!(true) {
        b.exec(&format!("{src}\n;return true;"), json!([])).await;
    }
    let v: Value = b
        .exec_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
               .then((r) => done(r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
                 .map((v) => ({ id: v.id, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }))))
               .catch((e) => done([{ id: 'axe-failed', help: String(e), nodes: [] }]));",
            json!([]),
        )
        .await;
    let list = v.as_array().cloned().unwrap_or_default();
    assert!(
        list.is_empty(),
        "axe-core on {page}: serious or critical violations: {}",
        serde_json::to_string_pretty(&list).unwrap_or_default()
    );
    eprintln!("browser: axe-core on {page}: no serious or critical violation");
}
