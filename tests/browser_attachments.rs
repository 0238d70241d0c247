//! Files on messages in a real headless Chromium against a real node: attach a picture and a
//! PDF with the picker, send them as a reply without words, see the picture previewed and the
//! PDF listed, download the PDF through its link byte-identical; a file the node refuses shows
//! the node's own reason in the form and is never sent; a new conversation carries a file; and
//! a hostile SVG opened by its URL is downloaded, not run: the same file served plainly by
//! another origin does run its script, so the check would see it if the node let it.

mod common;
#[path = "browser/kit.rs"]
mod kit;
#[path = "browser/wd.rs"]
mod wd;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{TestNode, eventually, random_pdf};
use kit::{axe, shoot, step, tools_or_skip};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wd::{Driver, Session};

fn crc32(bytes: &[u8]) -> u32 {
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
fn png(w: u32, h: u32) -> Vec<u8> {
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

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A tiny HTTP listener on another origin: records every path asked for, serves `/svg` (made
/// by `svg` from the listener's port) as a plain `image/svg+xml`, as a careless server would,
/// and answers anything else with "ok".
async fn listener(svg: impl Fn(u16) -> Vec<u8>) -> (u16, Arc<Mutex<Vec<String>>>) {
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
async fn downloads_to(b: &Session, dir: &Path) {
    b.cdp(
        "Page.setDownloadBehavior",
        json!({"behavior": "allow", "downloadPath": dir.display().to_string()}),
    )
    .await;
}

/// Waits for a finished download named `name` in `dir` and returns its bytes.
async fn downloaded(dir: &Path, name: &str, len: usize) -> Vec<u8> {
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

async fn title(b: &Session) -> Value {
    b.exec("return document.title", json!([])).await
}

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
    b.goto(&format!("{base}/")).await;
    b.type_into("#login-name", "admin").await;
    b.type_into("#login-password", "correct-horse").await;
    b.click(".login button[type=submit]").await;
    b.wait_contains("main h1", "Inbox").await;

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

/// A partner's files as this node shows them: a picture that arrives from the partner's node
/// is previewed once it is here (the page updates by itself), and a file over this node's
/// limit is named with "Too large for this node", never linked or shown as a broken picture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partners_files_show_as_they_arrive_or_as_too_large() {
    let Some(tools) = tools_or_skip() else { return };
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt =
        TestNode::start_configured("bolt", Role::Supplier, "[attachments]\nmax_mb = 1\n").await;
    common::pair(&acme, &bolt).await;
    let photo = png(40, 30);
    let scan = random_pdf(1024 * 1024 + 4096);
    let (s, p) = acme.upload("dent.png", photo.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, big) = acme.upload("full%20scan.pdf", scan.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{big}");
    let conv = acme
        .create(
            json!({"kind": "message", "partner": "bolt", "subject": "Dent photos",
                       "body": "", "attachments": [p["sha256"], big["sha256"]]}),
        )
        .await;
    let id = conv["id"].as_str().unwrap().to_string();
    eventually(30, "the conversation at bolt", || async {
        let (s, _) = bolt.get(&format!("/api/v1/conversations/{id}")).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;

    let driver = Driver::start(&tools).await;
    let b = driver.session(1280, 1024).await;
    let base = bolt.base.clone();
    b.goto(&format!("{base}/")).await;
    b.type_into("#login-name", "admin").await;
    b.type_into("#login-password", "correct-horse").await;
    b.click(".login button[type=submit]").await;
    b.wait_contains("main h1", "Inbox").await;
    b.goto(&format!("{base}/c/{id}")).await;
    b.wait_contains("#conversation-subject", "Dent photos")
        .await;

    step("the picture is previewed once it has arrived, without a reload");
    let pic = format!("#thread li[data-sha='{}']", sha_hex(&photo));
    b.wait_true(
        &format!(
            "const i = document.querySelector(\"{pic} img.file-thumb\"); return !!i && i.complete && i.naturalWidth === 40"
        ),
        json!([]),
        "the arrived picture to render",
    )
    .await;

    step("the file over this node's limit is named, not linked");
    let too = format!("#thread li[data-sha='{}']", sha_hex(&scan));
    b.wait_contains(&too, "Too large for this node").await;
    let shown = b
        .exec(
            &format!(
                "const li = document.querySelector(\"{too}\"); return [li.dataset.state, li.querySelectorAll('a, img').length, li.textContent]"
            ),
            json!([]),
        )
        .await;
    assert_eq!(shown[0], "too_large", "{shown}");
    assert_eq!(shown[1], 0, "no link, no picture: {shown}");
    assert!(
        shown[2].as_str().unwrap().contains("full scan.pdf")
            && shown[2].as_str().unwrap().contains("1.0 MB"),
        "{shown}"
    );
    let (_, c) = bolt.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(
        c["messages"][0]["attachments"][1]["state"], "too_large",
        "{c}"
    );
    axe(&b, "a partner's files, one too large").await;

    step("a file still arriving is named with Arriving…, not linked (as the thread draws it)");
    // Which state a fast transfer is caught in cannot be chosen from outside, so the thread's
    // own drawing code is given a file in the `arriving` state the node reports.
    let arriving = b
        .exec_async(
            "const done = arguments[arguments.length - 1];
             import('/files.js').then((m) => {
               const ul = m.messageFiles([{ sha256: arguments[0], size: 2048, name: 'late <b>.png', type: 'image/png', state: 'arriving', preview: true }]);
               done([ul.querySelectorAll('a, img').length, ul.textContent, ul.querySelectorAll('b').length]);
             }).catch((e) => done(String(e)));",
            json!([sha_hex(b"late")]),
        )
        .await;
    assert_eq!(arriving[0], 0, "{arriving}");
    assert!(
        arriving[1].as_str().unwrap().contains("late <b>.png")
            && arriving[1].as_str().unwrap().contains("Arriving\u{2026}"),
        "{arriving}"
    );
    assert_eq!(arriving[2], 0, "a name is text, never markup: {arriving}");
    b.close().await;
}
