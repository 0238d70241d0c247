//! Files reach the partner's node over the sync link, and nothing else does.
//!
//! Two real nodes: acme (retailer) and a bolt site behind NAT that dials acme through a proxy
//! the test controls. acme attaches 5 MB of random bytes to a conversation with bolt. On its
//! way the proxy damages one byte of one chunk, then cuts the link after eight chunks went
//! down and keeps it down until bolt noticed. The test shows:
//!
//! - bolt ends with the file byte-identical (downloaded through its own API), shown `present`;
//!   while it was arriving its conversation already showed the file as `arriving`;
//! - the damaged chunk was refused and sent again, and nothing else of the file crossed twice
//!   but what was in flight at the cut: less than 1.5x the file's size went down in all;
//! - a reply written while the file is in flight arrives meanwhile (file transfer never holds
//!   messages back).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::faults::FaultProxy;
use common::{TestNode, eventually, random_pdf};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn addr_of(n: &TestNode) -> SocketAddr {
    n.base.trim_start_matches("http://").parse().unwrap()
}

/// A bolt site behind NAT, dialing `a` through `proxy`.
async fn site_behind(a: &TestNode, proxy: &FaultProxy) -> TestNode {
    common::node_behind(a, &proxy.url(), "bolt", Role::Supplier).await
}

async fn connected(n: &TestNode) -> bool {
    let (_, peers) = n.get("/api/v1/peers").await;
    peers[0]["connected"] == true
}

async fn conversation(n: &TestNode, id: &str) -> Option<Value> {
    let (s, v) = n.get(&format!("/api/v1/conversations/{id}")).await;
    (s == StatusCode::OK).then_some(v)
}

fn file_state(c: &Value) -> Option<String> {
    c["messages"][0]["attachments"][0]["state"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_reaches_the_partner_through_a_cut_and_a_damaged_chunk() {
    const CHUNK: usize = parley_sync::wire::BLOB_CHUNK_BYTES;
    let acme = TestNode::start("acme", Role::Retailer).await;
    let proxy = FaultProxy::start(addr_of(&acme)).await;
    let bolt = site_behind(&acme, &proxy).await;
    eventually(20, "the link", || async {
        connected(&bolt).await.then_some(())
    })
    .await;

    let pdf = random_pdf(5 * 1024 * 1024);
    let sha = hex::encode(Sha256::digest(&pdf));
    // Damage chunk 3 on its way (its bytes 1000..1032 are unique: random), and cut after 8.
    proxy.damage(pdf[3 * CHUNK + 1000..3 * CHUNK + 1032].to_vec());
    proxy.cut_after_chunks(8);
    let (s, up) = acme.upload("proof-of-delivery.pdf", pdf.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{up}");
    let c = acme
        .create(
            json!({"kind": "message", "partner": "bolt", "subject": "Proof of delivery",
                       "body": "Signed POD attached", "attachments": [sha]}),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();

    // The conversation arrives before its file, which shows as arriving (the cut is set for
    // after 8 chunks, so the file cannot be complete before the cut).
    let seen = eventually(30, "the conversation at bolt", || async {
        conversation(&bolt, &id).await
    })
    .await;
    assert_eq!(file_state(&seen).as_deref(), Some("arriving"), "{seen}");
    let (s, _, _) = bolt.download(&sha).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "an incomplete file is never served"
    );

    eventually(60, "the cut", || async {
        (proxy.cuts() == 1).then_some(())
    })
    .await;
    eventually(30, "bolt to notice the cut", || async {
        (!connected(&bolt).await).then_some(())
    })
    .await;
    let (s, _, _) = bolt.download(&sha).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A reply written at acme while the link is down, then the link comes back.
    let (s, _) = acme
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"body": "Written while the file was on its way"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    proxy.bring_up();

    let done = eventually(90, "the file at bolt", || async {
        let c = conversation(&bolt, &id).await?;
        (file_state(&c).as_deref() == Some("present")).then_some(c)
    })
    .await;
    assert_eq!(done["messages"].as_array().unwrap().len(), 2, "{done}");
    let (s, h, got) = bolt.download(&sha).await;
    assert_eq!(s, StatusCode::OK);
    assert!(got == pdf, "byte-identical at the partner");
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(
        done["messages"][0]["attachments"][0]["name"],
        "proof-of-delivery.pdf"
    );

    // What crossed: every chunk at least once; chunk 3 twice (damaged, then again); others
    // again only if they were in flight at the cut (at most the fetch window, 4).
    assert!(proxy.damaged(), "the damage was applied");
    let chunks = proxy.chunks();
    let mut times: HashMap<u32, usize> = HashMap::new();
    for c in &chunks {
        *times.entry(c.index).or_default() += 1;
    }
    assert_eq!(
        times.len(),
        pdf.len().div_ceil(CHUNK),
        "every chunk crossed"
    );
    assert!(
        times[&3] >= 2,
        "the damaged chunk was sent again: {times:?}"
    );
    let again: usize = times.values().map(|n| n - 1).sum();
    assert!(again <= 1 + 4 + 4, "chunks sent more than once: {times:?}");
    let after_cut_first = chunks
        .iter()
        .filter(|c| c.epoch == 1)
        .map(|c| c.index)
        .min();
    assert!(
        after_cut_first.is_some_and(|i| i > 0),
        "the fetch resumed, not restarted: {chunks:?}"
    );
    let down = proxy.bytes_down();
    assert!(
        (down as f64) < 1.5 * pdf.len() as f64,
        "{down} bytes went down for a file of {}",
        pdf.len()
    );
    eprintln!(
        "file {} B: {} B down ({:.3}x), {} B up, {} chunks sent again",
        pdf.len(),
        down,
        down as f64 / pdf.len() as f64,
        proxy.bytes_up(),
        again
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_is_not_held_back_by_a_file_in_flight() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let proxy = FaultProxy::start(addr_of(&acme)).await;
    let bolt = site_behind(&acme, &proxy).await;
    eventually(20, "the link", || async {
        connected(&bolt).await.then_some(())
    })
    .await;
    let pdf = random_pdf(25 * 1024 * 1024 - 100);
    let sha = hex::encode(Sha256::digest(&pdf));
    let (s, _) = acme.upload("catalogue.pdf", pdf.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let c = acme
        .create(
            json!({"kind": "message", "partner": "bolt", "subject": "Catalogue",
                       "body": "The 2027 catalogue", "attachments": [sha]}),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    // Once the first chunks are crossing, a reply.
    eventually(60, "the file to be in flight", || async {
        (proxy.chunks().len() >= 4).then_some(())
    })
    .await;
    let t = Instant::now();
    let (s, _) = acme
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"body": "one more thing"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let c = eventually(30, "the reply at bolt", || async {
        let c = conversation(&bolt, &id).await?;
        (c["messages"].as_array()?.len() == 2).then_some(c)
    })
    .await;
    let reply_at = t.elapsed();
    let chunks_then = proxy.chunks().len();
    assert_ne!(
        file_state(&c).as_deref(),
        Some("present"),
        "the reply came first"
    );
    assert!(
        chunks_then < 100,
        "the reply arrived while the file was still crossing"
    );
    eprintln!("reply arrived after {reply_at:?}, with {chunks_then} of 100 chunks across");
    eventually(120, "the file at bolt", || async {
        let c = conversation(&bolt, &id).await?;
        (file_state(&c).as_deref() == Some("present")).then_some(())
    })
    .await;
    let (_, _, got) = bolt.download(&sha).await;
    assert!(got == pdf);
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_a_clean_link_cross_once_each() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let mut shas = Vec::new();
    let mut payload = 0;
    for i in 0..6 {
        let f = random_pdf(600_000 + i * 1000);
        payload += f.len();
        let (s, up) = acme.upload(&format!("f{i}.pdf"), f.clone()).await;
        assert_eq!(s, StatusCode::CREATED);
        shas.push((up["sha256"].as_str().unwrap().to_string(), f));
    }
    let all: Vec<&str> = shas.iter().map(|(s, _)| s.as_str()).collect();
    acme.create(
        json!({"kind": "message", "partner": "bolt", "subject": "Six files",
                       "body": "all of them", "attachments": all}),
    )
    .await;
    let proxy = FaultProxy::start(addr_of(&acme)).await;
    let bolt = site_behind(&acme, &proxy).await;
    for (sha, f) in &shas {
        let got = eventually(60, "every file at bolt", || async {
            let (s, _, b) = bolt.download(sha).await;
            (s == StatusCode::OK).then_some(b)
        })
        .await;
        assert!(&got == f);
    }
    let mut seen: HashMap<([u8; 32], u32), usize> = HashMap::new();
    for c in proxy.chunks() {
        *seen.entry((c.file, c.index)).or_default() += 1;
    }
    assert_eq!(seen.len(), 6 * 3, "three chunks each");
    assert!(
        seen.values().all(|n| *n == 1),
        "a chunk crossed twice: {seen:?}"
    );
    let down = proxy.bytes_down();
    // The pairing, the conversation and the frames around the chunks: a few KB.
    assert!(
        down < payload as u64 + 64 * 1024,
        "{down} bytes down for {payload}"
    );
}
