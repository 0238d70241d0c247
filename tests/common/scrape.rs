//! Reading a node's `/metrics` in tests, and checking it with `promtool`.

use reqwest::StatusCode;

use super::TestNode;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Scrape {
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
}

pub async fn scrape_url(
    url: &str,
    auth: Option<&str>,
    cookie: Option<&str>,
    accept: Option<&str>,
) -> Scrape {
    let mut req = reqwest::Client::new().get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Scrape {
        status,
        content_type,
        body: resp.text().await.unwrap(),
    }
}

/// An admin's scrape of `n` (OpenMetrics).
pub async fn scrape(n: &TestNode) -> String {
    let s = scrape_url(
        &format!("{}/metrics", n.base),
        Some(&format!("Bearer {}", n.token)),
        None,
        None,
    )
    .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(s.content_type, OPENMETRICS);
    assert!(s.body.ends_with("# EOF\n"), "{}", s.body);
    s.body
}

/// The value of the series written exactly as `series` (name and labels in order).
pub fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The series of a scrape: every sample line's name and labels.
pub fn series(body: &str) -> Vec<String> {
    let mut s: Vec<String> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
        .collect();
    s.sort();
    s
}

/// Pipes `body` through `promtool check metrics`. In CI a missing promtool fails the test;
/// elsewhere the check is skipped with the reason printed.
pub fn promtool_check(body: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is needed in CI (apt-get install prometheus): {e}"
            );
            eprintln!("skipping promtool check metrics: promtool not found ({e})");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- body ---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
