//! Attachment benchmarks: an upload over loopback HTTP against writing the same bytes to a
//! file with fsync; a partner's node fetching 100 files of 5 MB over the sync link (MB/s and
//! bytes on the wire); and how long a reply takes to reach the partner while those files sync.
//! Results and their reading are in BENCHMARKS.md.
//!
//! Both nodes are `tests/common`'s (in this process, real sockets); the partner's site dials
//! through `tests/common/faults.rs`'s proxy, which counts every byte that crosses.
//!
//! Run: `cargo bench --bench attachments`. Scale with:
//!
//! - `PARLEY_BENCH_UPLOAD_MB` size of the uploaded file (default 25)
//! - `PARLEY_BENCH_UPLOAD_REPS` timed uploads, each of a new file (default 5)
//! - `PARLEY_BENCH_FILES` files fetched by the partner (default 100)
//! - `PARLEY_BENCH_FILE_MB` size of each (default 5)

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::bench::{env_usize, loadavg};
use common::faults::FaultProxy;
use common::{TestNode, eventually, pair, random_pdf};
use parley::domain::Role;
use parley::service::{CreateInput, Principal};
use serde_json::json;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn admin() -> Principal {
    Principal {
        user: "admin".into(),
        admin: true,
    }
}

// ---------------------------------------------------------------------------------------------
// (a) Upload against write + fsync.

async fn bench_upload(mb: usize, reps: usize) {
    println!("\n== Upload of a {mb} MB file over loopback HTTP, against write + fsync ==");
    let node = TestNode::start("acme", Role::Retailer).await;
    let size = mb * 1024 * 1024;
    let http = reqwest::Client::new();
    let (mut up, mut raw) = (Vec::new(), Vec::new());
    for r in 0..reps {
        // A new file each time: a file already here is not stored again.
        let bytes = random_pdf(size);
        let t = Instant::now();
        let resp = http
            .post(format!("{}/api/v1/attachments", node.base))
            .bearer_auth(&node.token)
            .header("content-type", "application/octet-stream")
            .header("x-filename", "catalogue.pdf")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let d = t.elapsed();
        up.push(mbps(size, d));
        // The same bytes to a file beside the database, then fsync: the disk's own rate.
        let path = node.dir.path().join(format!("raw-{r}.bin"));
        let t = Instant::now();
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&bytes).unwrap();
        f.sync_all().unwrap();
        let w = t.elapsed();
        raw.push(mbps(size, w));
        std::fs::remove_file(&path).unwrap();
        println!(
            "  run {r}: upload {:.0} ms ({:.0} MB/s); write+fsync {:.0} ms ({:.0} MB/s)",
            d.as_secs_f64() * 1000.0,
            up[r],
            w.as_secs_f64() * 1000.0,
            raw[r]
        );
    }
    // Where an upload's time goes: the same work without HTTP, and the hash alone.
    let (mut svc_only, mut hash_only) = (Vec::new(), Vec::new());
    let p = admin();
    for _ in 0..reps {
        let bytes = random_pdf(size);
        let t = Instant::now();
        let _ = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes));
        hash_only.push(mbps(size, t.elapsed()));
        let t = Instant::now();
        node.svc()
            .upload(&p, Some("direct.pdf".into()), &bytes[..])
            .await
            .unwrap();
        svc_only.push(mbps(size, t.elapsed()));
    }
    println!(
        "  breakdown (median): the upload without HTTP {:.0} MB/s; SHA-256 alone {:.0} MB/s",
        median(svc_only),
        median(hash_only)
    );
    let (u, w) = (median(up), median(raw));
    println!(
        "  median: upload {u:.0} MB/s, write+fsync {w:.0} MB/s: {:.0} % (goal >= 50 %: {})",
        100.0 * u / w,
        if u >= 0.5 * w { "met" } else { "not met" }
    );
}

// ---------------------------------------------------------------------------------------------
// (b) + (c) A partner fetches many files; replies cross meanwhile.

async fn bench_sync(files: usize, file_mb: usize) {
    println!("\n== Partner sync of {files} files of {file_mb} MB, and replies meanwhile ==");
    let acme = TestNode::start("acme", Role::Retailer).await;
    let size = file_mb * 1024 * 1024;
    let p = admin();
    // The files and their conversations, before the partner's site is paired.
    let t = Instant::now();
    for i in 0..files {
        let bytes = random_pdf(size);
        let u = acme
            .svc()
            .upload(&p, Some(format!("photo-{i}.pdf")), &bytes[..])
            .await
            .unwrap();
        let input = CreateInput {
            id: None,
            kind: parley::domain::Kind::Message,
            partner: "bolt".into(),
            subject: format!("Damaged delivery {i}"),
            topic: None,
            reference_id: None,
            due_date: None,
            body: Some("Photos attached".into()),
            idempotency_key: None,
        };
        acme.svc()
            .create_with_files(&p, input, &[u.sha256])
            .await
            .unwrap();
    }
    let chat = acme
        .create(
            json!({"kind": "message", "partner": "bolt", "subject": "Live chat",
                       "body": "first"}),
        )
        .await;
    let chat = chat["id"].as_str().unwrap().to_string();
    println!(
        "  {files} files stored at acme in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let proxy = FaultProxy::start(acme.base.trim_start_matches("http://").parse().unwrap()).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    eventually(10, "the site's server", || async {
        bolt.svc().public_url().map(|_| ())
    })
    .await;
    bolt.svc().set_public_url(None);
    acme.svc().set_public_url(Some(proxy.url()));
    let t = Instant::now();
    pair(&acme, &bolt).await;

    // Replies at acme every 100 ms until the files are all at bolt; each is timed from its
    // 201 at acme until bolt's API shows it.
    let files_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let latencies = {
        let (acme_base, token, bolt_svc, done) = (
            acme.base.clone(),
            acme.token.clone(),
            bolt.svc().clone(),
            files_done.clone(),
        );
        let chat = chat.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let id: uuid::Uuid = chat.parse().unwrap();
            let p = admin();
            // Wait for the chat conversation to be at bolt first.
            while bolt_svc.get(&p, id).await.is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut out = Vec::new();
            let mut n = 1;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let resp = http
                    .post(format!("{acme_base}/api/v1/conversations/{chat}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"body": format!("reply {n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201);
                let sent = Instant::now();
                loop {
                    let c = bolt_svc.get(&p, id).await.unwrap();
                    if c.messages.len() >= n {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                out.push(sent.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            out
        })
    };
    let rules_max = bolt.svc().attachment_rules().max_bytes;
    assert!(size as u64 <= rules_max);
    // All files present at bolt: its wanted list is empty and every file is complete.
    loop {
        let left = bolt
            .svc()
            .store()
            .read(|tx| -> Result<u64, parley::store::StoreError> {
                use redb::ReadableTableMetadata;
                Ok(tx.open_table(parley::store::blobs::BLOB_WANTED)?.len()?)
            })
            .await
            .unwrap();
        let metas = bolt
            .svc()
            .store()
            .read(|tx| -> Result<u64, parley::store::StoreError> {
                use redb::ReadableTableMetadata;
                Ok(tx.open_table(parley::store::blobs::BLOB_META)?.len()?)
            })
            .await
            .unwrap();
        if left == 0 && metas == files as u64 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(900),
            "{left} files still to come"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t.elapsed();
    files_done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut lat = latencies.await.unwrap();
    let payload = files * size;
    let down = proxy.bytes_down();
    println!(
        "  all {files} files at bolt in {:.1} s (from pairing): {:.0} MB/s of payload",
        took.as_secs_f64(),
        mbps(payload, took)
    );
    println!(
        "  bytes down {down} for a payload of {payload}: {:.4}x (goal <= 1.05x: {}); up {}",
        down as f64 / payload as f64,
        if (down as f64) <= 1.05 * payload as f64 {
            "met"
        } else {
            "not met"
        },
        proxy.bytes_up()
    );
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    let p99 = pct(0.99);
    println!(
        "  reply latency over {} replies: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (goal p99 <= 250 ms: {})",
        lat.len(),
        pct(0.5).as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        lat.last().unwrap().as_secs_f64() * 1000.0,
        if p99 <= Duration::from_millis(250) {
            "met"
        } else {
            "not met"
        }
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "Parley attachment benchmarks, {} (load {})",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        loadavg()
    );
    rt.block_on(async {
        bench_upload(
            env_usize("PARLEY_BENCH_UPLOAD_MB", 25),
            env_usize("PARLEY_BENCH_UPLOAD_REPS", 5),
        )
        .await;
        let files = env_usize("PARLEY_BENCH_FILES", 100);
        if files > 0 {
            bench_sync(files, env_usize("PARLEY_BENCH_FILE_MB", 5)).await;
        }
    });
    println!("\nload after: {}", loadavg());
}
