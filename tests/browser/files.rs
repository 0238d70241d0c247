//! What the browser tests of files share: real pictures to upload, a listener on another
//! origin, downloads into a known folder, and signing in.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wd::Session;

pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A real `w`×`h` RGB PNG (deflate "stored" blocks), so the browser can decode it.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0u8);
        for x in 0..w {
            raw.extend([(x * 37) as u8, (y * 59) as u8, 200]);
        }
    }
    assert!(raw.len() < 65_535, "one stored block");
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend((raw.len() as u16).to_le_bytes());
    z.extend((!(raw.len() as u16)).to_le_bytes());
    z.extend(&raw);
    z.extend(((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], ihdr), (b"IDAT", z), (b"IEND", vec![])] {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(&data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    out
}

pub fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A tiny HTTP listener on another origin: records every path asked for, serves `/svg` (made
/// by `svg` from the listener's port) as a plain `image/svg+xml`, as a careless server would,
/// and answers anything else with "ok".
pub async fn listener(svg: impl Fn(u16) -> Vec<u8>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let svg = svg(port);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (log, svg) = (log.clone(), svg.clone());
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 2048];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                // Recorded before answering: a script's synchronous request is seen here
                // before the page that made it has finished loading.
                log.lock().unwrap().push(path.clone());
                let (ty, body) = if path == "/svg" {
                    ("image/svg+xml", svg)
                } else {
                    ("text/plain", b"ok".to_vec())
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {ty}\r\ncontent-length: {}\r\naccess-control-allow-origin: *\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    (port, seen)
}

/// Downloads go to `dir` (Chromium asks nothing in headless mode once told where).
pub async fn downloads_to(b: &Session, dir: &Path) {
    b.cdp(
        "Page.setDownloadBehavior",
        json!({"behavior": "allow", "downloadPath": dir.display().to_string()}),
    )
    .await;
}

/// Waits for a finished download named `name` in `dir` and returns its bytes.
pub async fn downloaded(dir: &Path, name: &str, len: usize) -> Vec<u8> {
    let path = dir.join(name);
    let t = std::time::Instant::now();
    loop {
        if let Ok(b) = std::fs::read(&path)
            && b.len() == len
        {
            return b;
        }
        let have: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "no finished download of {name} in {}; it holds {have:?}",
            dir.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn title(b: &Session) -> Value {
    b.exec("return document.title", json!([])).await
}

/// Signs in on the page at `base` as the test node's admin.
pub async fn sign_in(b: &Session, base: &str) {
    b.goto(&format!("{base}/")).await;
    b.type_into("#login-name", "admin").await;
    b.type_into("#login-password", "correct-horse").await;
    b.click(".login button[type=submit]").await;
    b.wait_contains("main h1", "Inbox").await;
}
