//! Files on messages, through a real node's HTTP API: upload (raw and multipart), attach to a
//! new conversation and to a reply, download byte-identical with headers that keep a file
//! from running script, one copy per file, and every bad upload refused with nothing kept.

mod common;

use common::{TestNode, random_pdf};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Chunks stored, over all files: what an upload left behind.
async fn stored_chunks(n: &TestNode) -> u64 {
    n.svc()
        .store()
        .read(|tx| -> Result<u64, parley::store::StoreError> {
            use redb::ReadableTableMetadata;
            Ok(tx.open_table(parley::store::blobs::BLOB_CHUNKS)?.len()?)
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_attached_downloaded_and_stored_once() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let pdf = random_pdf(5 * 1024 * 1024 + 17);
    let (s, up) = n
        .upload("Credit%20memo%20%E2%84%96%207.pdf", pdf.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{up}");
    assert_eq!(up["sha256"], sha_hex(&pdf));
    assert_eq!(up["size"], pdf.len() as u64);
    assert_eq!(up["name"], "Credit memo № 7.pdf");
    assert_eq!(up["type"], "application/pdf");
    let chunks = stored_chunks(&n).await;
    assert_eq!(
        chunks as usize,
        pdf.len().div_ceil(parley_sync::wire::BLOB_CHUNK_BYTES),
        "stored in chunks"
    );

    // The same bytes again, by multipart this time: stored once.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(pdf.clone()).file_name("again.pdf"),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/attachments", n.base))
        .bearer_auth(&n.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let again: Value = resp.json().await.unwrap();
    assert_eq!(again["sha256"], up["sha256"]);
    assert_eq!(again["name"], "again.pdf");
    assert_eq!(stored_chunks(&n).await, chunks, "a second copy is not kept");

    let sha = up["sha256"].as_str().unwrap().to_string();
    let png =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    let (s, img) = n.upload("photo.png", png.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{img}");
    let c = n
        .create(
            json!({"kind": "message", "partner": "bolt", "subject": "Dented kettles",
                       "body": "See the memo", "attachments": [sha]}),
        )
        .await;
    let files = &c["messages"][0]["attachments"];
    assert_eq!(files[0]["sha256"], sha);
    assert_eq!(
        files[0]["name"], "again.pdf",
        "named as this user last uploaded it"
    );
    assert_eq!(files[0]["state"], "present");
    assert_eq!(files[0]["preview"], false);
    let id = c["id"].as_str().unwrap();
    // A reply may be files alone.
    let (s, r) = n
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"body": "", "attachments": [img["sha256"]]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let m = &r["messages"][1];
    assert_eq!(m["body"], "");
    assert_eq!(m["attachments"][0]["type"], "image/png");
    assert_eq!(m["attachments"][0]["preview"], true);

    let (s, h, body) = n.download(&sha).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body == pdf, "the download is byte-identical");
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let cd = h["content-disposition"].to_str().unwrap();
    assert!(cd.starts_with("attachment;"), "{cd}");
    let (s, h, body) = n.download(img["sha256"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, png);
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline;")
    );

    // Without a token there is nothing to download.
    let resp = reqwest::get(format!("{}/api/v1/attachments/{sha}", n.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (s, _, _) = n.download(&"0".repeat(64)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = n.download("../../etc/passwd").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_leave_nothing() {
    let n = TestNode::start_configured("acme", Role::Retailer, "[attachments]\nmax_mb = 1\n").await;
    let limit = 1024 * 1024;

    // Over the limit, with Content-Length: refused before it is read.
    let (s, v) = n.upload("big.pdf", random_pdf(limit + 1)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    common::assert_error(&v, "too_large");
    // Over the limit without Content-Length (chunked): counted while it streams.
    let big = random_pdf(3 * limit);
    let stream = futures_util::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/attachments", n.base))
        .bearer_auth(&n.token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = resp.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("1048576"), "{v}");

    // A renamed executable, an empty file, an HTML page, an SVG (not taken by default).
    let elf = [b"\x7fELF\x02\x01\x01\0".as_slice(), &[0u8; 4096]].concat();
    for (name, bytes, status) in [
        ("invoice.pdf", elf, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            "setup.jpg",
            [b"MZ\x90\0".as_slice(), &[1u8; 600]].concat(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("empty.txt", Vec::new(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "page.txt",
            b"<!doctype html><script>alert(1)</script>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "x.png",
            b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "text-then-binary.txt",
            [b"hello ".repeat(70_000).as_slice(), &[0u8, 1, 2]].concat(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let (s, v) = n.upload(name, bytes).await;
        assert_eq!(s, status, "{name}: {v}");
        assert!(
            !v["detail"].as_str().unwrap_or("").is_empty(),
            "{name}: {v}"
        );
    }

    // A body cut short: the client says 800 KB and sends half, then hangs up.
    {
        use tokio::io::AsyncWriteExt;
        let mut sock = tokio::net::TcpStream::connect(n.base.trim_start_matches("http://"))
            .await
            .unwrap();
        let head = format!(
            "POST /api/v1/attachments HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/octet-stream\r\ncontent-length: 800000\r\n\r\n",
            n.token
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&random_pdf(400_000)).await.unwrap();
        drop(sock);
    }
    // Names that are paths or carry line breaks are not kept as names.
    let (s, v) = n
        .upload("..%2F..%2Fetc%2Fpasswd", b"plain text".to_vec())
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["name"], "attachment.txt");

    // Attaching what is not here, or not a hash, changes nothing.
    for files in [
        json!(["0".repeat(64)]),
        json!(["not-a-hash"]),
        json!([v["sha256"].as_str().unwrap().to_uppercase()]),
    ] {
        let (s, e) = n
            .post(
                "/api/v1/conversations",
                json!({"kind": "message", "partner": "bolt",
                   "subject": "x", "body": "y", "attachments": files}),
            )
            .await;
        assert!(
            s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::BAD_REQUEST,
            "{s} {e}"
        );
    }
    assert!(common::inbox_ids(&n).await.is_empty());
    // Everything refused left no chunk behind: only the one text file is stored. The cut
    // upload's chunks go once the node notices the cut.
    common::eventually(20, "the cut upload to be dropped", || async {
        (stored_chunks(&n).await == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_never_attached_is_dropped_after_a_day_and_an_attached_one_never() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let (kept, dropped) = (random_pdf(300_000), random_pdf(400_000));
    let (_, k) = n.upload("kept.pdf", kept.clone()).await;
    let (_, d) = n.upload("draft.pdf", dropped.clone()).await;
    n.create(
        json!({"kind": "message", "partner": "bolt", "subject": "With a file",
                    "attachments": [k["sha256"]]}),
    )
    .await;
    let store = n.svc().store().clone();
    // An hour later nothing goes: the draft may still be sent.
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).timestamp_millis();
    assert_eq!(store.sweep_unreferenced_files(hour_ago).await.unwrap(), 0);
    let (s, _, _) = n.download(d["sha256"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    // A day later (files dated before now count as older than a day), the draft's file goes.
    let later = (chrono::Utc::now() + chrono::Duration::seconds(1)).timestamp_millis();
    assert_eq!(store.sweep_unreferenced_files(later).await.unwrap(), 1);
    let (s, _, _) = n.download(d["sha256"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, b) = n.download(k["sha256"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b == kept);
    assert_eq!(
        stored_chunks(&n).await as usize,
        kept.len().div_ceil(parley_sync::wire::BLOB_CHUNK_BYTES),
        "only the attached file's chunks are left"
    );
    // A message without a body, files only, at create.
    let (s, up) = n.upload("again.pdf", dropped.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let c = n
        .create(
            json!({"kind": "message", "partner": "bolt", "subject": "Files only",
                       "attachments": [up["sha256"]]}),
        )
        .await;
    assert_eq!(c["messages"][0]["body"], "");
    let (_, inbox) = n.get("/api/v1/conversations?folder=all").await;
    let row = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == c["id"])
        .unwrap()
        .clone();
    assert_eq!(row["last_message_preview"], "Files: again.pdf", "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_saved_only_under_an_ending_of_its_kind() {
    let n = TestNode::start("acme", Role::Retailer).await;
    // Text named as a program: stored and offered as text.
    let (s, up) = n
        .upload("invoice.hta", b"Invoice 7, total 120 EUR".to_vec())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{up}");
    assert_eq!(up["name"], "invoice.hta.txt");
    let sha = up["sha256"].as_str().unwrap().to_string();
    // A link that names it anew cannot change its ending either.
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/attachments/{sha}?name=setup.exe",
            n.base
        ))
        .bearer_auth(&n.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cd = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cd.contains("filename=\"setup.exe.txt\""), "{cd}");
    assert_eq!(resp.headers()["content-type"], "text/plain");

    // A multipart body whose media type is spelt in capitals is still multipart.
    let boundary = "XyZ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"memo.txt\"\r\nContent-Type: text/plain\r\n\r\nplain words\r\n--{boundary}--\r\n"
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/attachments", n.base))
        .bearer_auth(&n.token)
        .header(
            "content-type",
            format!("MULTIPART/FORM-DATA; BOUNDARY={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["size"], 11,
        "only the part is stored, not the envelope: {v}"
    );
    assert_eq!(v["name"], "memo.txt");

    // A malformed hash is a 400, an unknown one a plain 404.
    let (s, _, _) = n.download("ABC").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/attachments/{}", n.base, "1".repeat(64)))
        .bearer_auth(&n.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let v: Value = resp.json().await.unwrap();
    assert!(!v["detail"].as_str().unwrap().contains("fetched"), "{v}");

    // A reply of files only may leave the body out.
    let c = n
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Files", "body": "x"}))
        .await;
    let (s, r) = n
        .post(
            &format!(
                "/api/v1/conversations/{}/messages",
                c["id"].as_str().unwrap()
            ),
            json!({"attachments": [sha]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        r["messages"][1]["attachments"][0]["name"],
        "invoice.hta.txt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_after_its_first_commits_leaves_nothing() {
    use tokio::io::AsyncWriteExt;
    let n = TestNode::start("acme", Role::Retailer).await;
    let mut sock = tokio::net::TcpStream::connect(n.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/attachments HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        n.token,
        20 << 20
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    // More than one 8 MiB commit's worth, then the client is gone.
    sock.write_all(&random_pdf(12 << 20)).await.unwrap();
    sock.flush().await.unwrap();
    let written = common::eventually(30, "the first commits of the upload", || async {
        let c = stored_chunks(&n).await;
        (c > 0).then_some(c)
    })
    .await;
    assert!(written > 0);
    drop(sock);
    common::eventually(30, "the cut upload to be dropped whole", || async {
        (stored_chunks(&n).await == 0).then_some(())
    })
    .await;
}
