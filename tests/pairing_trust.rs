//! Pairing as an attacker would try it, between real nodes on loopback.
//!
//! The story: a retailer's invite made for a new supplier was used by a node that claimed to
//! be the retailer's own org (and became its "site", with every conversation the retailer has
//! with every partner), or another partner's org (and received that partner's conversations).
//! A re-pairing with a known node id took over that peer, and whoever answered at a peer's
//! address received its key. Here an invite names its org, pairing proves both ends, and each
//! of those attempts is refused with nothing stored and nothing sent.

mod common;

use std::sync::{Arc, Mutex};

use common::{
    TestNode, decode_invite, encode_invite, eventually, inbox_ids, invite, invite_for, pair,
};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn has(n: &TestNode, id: &str) -> Option<()> {
    let (s, _) = n.get(&format!("/api/v1/conversations/{id}")).await;
    (s == StatusCode::OK).then_some(())
}

async fn peers(n: &TestNode) -> Vec<Value> {
    let (s, v) = n.get("/api/v1/peers").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

async fn node_id(n: &TestNode) -> String {
    n.svc()
        .identity()
        .await
        .unwrap()
        .unwrap()
        .node_id
        .to_string()
}

/// What a hostile node sends to the inviting node: the invite's secret with whatever identity
/// it likes to claim, skipping every check its own node would make.
async fn claim(
    inviter: &TestNode,
    code: &str,
    as_node: &str,
    org: &str,
    role: &str,
) -> (StatusCode, Value) {
    let c = decode_invite(code);
    let key = parley::service::peer_nonce(); // any 32 bytes make a usable Ed25519 key
    let vk = ed25519_dalek::SigningKey::from_bytes(&key).verifying_key();
    let body = json!({
        "secret": c["secret"], "node_id": as_node, "org_id": org, "org_name": format!("{org} Inc"),
        "role": role, "url": null, "public_key": hex::encode(vk.as_bytes()), "tls": null,
    });
    inviter
        .call("POST", "/api/v1/peers/accept", Some(body), None)
        .await
}

/// A conversation from `a` with `partner`, and its id once it has reached `b`.
async fn shared(a: &TestNode, b: &TestNode, partner: &str, subject: &str) -> String {
    let c = a
        .create(json!({"kind": "message", "partner": partner, "subject": subject}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(15, subject, || has(b, &id)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_for_one_org_pairs_no_other() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    let zenith = TestNode::start("zenith", Role::Supplier).await;
    pair(&acme, &bolt).await;
    pair(&acme, &zenith).await;
    let to_bolt = shared(&acme, &bolt, "bolt", "Thin description SKU-1").await;
    let to_zenith = shared(&acme, &zenith, "zenith", "Zenith order PO-9").await;

    let code = invite(
        &acme,
        json!({"org_id": "nova", "org_name": "Nova", "role": "supplier"}),
    )
    .await;
    let c = decode_invite(&code);
    assert_eq!(
        (c["for_org"].as_str(), c["own_site"].as_bool()),
        (Some("nova"), Some(false))
    );

    // Impostors: our own org, another partner's org, a third org, and nova with the wrong role.
    let impostors = [
        TestNode::start("acme", Role::Retailer).await,
        TestNode::start("zenith", Role::Supplier).await,
        TestNode::start("orbit", Role::Supplier).await,
        TestNode::start("nova", Role::Retailer).await,
    ];
    for imp in &impostors {
        // Through its own node: refused before anything is sent, with the reason.
        let (s, v) = imp.post("/api/v1/peers", json!({"code": code})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let d = v["detail"].as_str().unwrap();
        assert!(d.contains("this invite is for org nova (supplier)"), "{d}");
        assert!(
            d.contains(&format!("belongs to {} ({})", imp.org, imp.role)),
            "{d}"
        );
        // Straight at the inviting node, claiming its own identity: refused there too.
        let me = node_id(imp).await;
        let (s, v) = claim(&acme, &code, &me, &imp.org, &imp.role.to_string()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let d = v["detail"].as_str().unwrap();
        assert!(
            d.contains("for org nova (supplier); your node belongs to"),
            "{d}"
        );
    }
    // Nothing was stored: acme still has its two real peers, the impostors have none, and no
    // conversation reached any of them while the real partners stayed in sync.
    let to_bolt2 = shared(&acme, &bolt, "bolt", "After the attempts").await;
    let mut orgs: Vec<String> = peers(&acme)
        .await
        .iter()
        .map(|p| p["org_id"].as_str().unwrap().to_string())
        .collect();
    orgs.sort();
    assert_eq!(orgs, ["bolt", "zenith"]);
    assert_eq!(inbox_ids(&bolt).await, {
        let mut v = vec![to_bolt.clone(), to_bolt2.clone()];
        v.sort();
        v
    });
    assert_eq!(inbox_ids(&zenith).await, [to_zenith]);
    for imp in &impostors {
        assert!(peers(imp).await.is_empty(), "{} recorded a peer", imp.org);
        assert!(
            inbox_ids(imp).await.is_empty(),
            "{} received a conversation",
            imp.org
        );
    }

    // The invite still works for the org it names, and then never again.
    let nova = TestNode::start("nova", Role::Supplier).await;
    let (s, v) = nova
        .post("/api/v1/peers/invites/inspect", json!({"code": code}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["for_org"].as_str(), v["inviter_org"].as_str()),
        (Some("nova"), Some("acme"))
    );
    assert!(v["problem"].is_null(), "{v}");
    let (s, v) = nova.post("/api/v1/peers", json!({"code": code})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["org_id"], "acme");
    let p = peers(&acme).await;
    let np = p
        .iter()
        .find(|p| p["org_id"] == "nova")
        .expect("nova is a peer");
    assert_eq!(
        (np["org_name"].as_str(), np["own_org"].as_bool()),
        (Some("Nova"), Some(false))
    );
    let to_nova = shared(&acme, &nova, "nova", "Welcome, Nova").await;
    assert_eq!(inbox_ids(&nova).await, [to_nova]);
    let nova2 = TestNode::start("nova", Role::Supplier).await;
    let (s, v) = nova2.post("/api/v1/peers", json!({"code": code})).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a used invite is refused for good, not 503: {v}"
    );
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("unknown or already used"),
        "{v}"
    );
    for n in impostors
        .into_iter()
        .chain([nova2, nova, zenith, bolt, acme])
    {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_own_site_invite_makes_a_site() {
    let site1 = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&site1, &bolt).await;
    let c = bolt
        .create(json!({"kind": "task", "partner": "acme", "subject": "Return RMA-7"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(15, "bolt's task at site1", || has(&site1, &id)).await;

    // Whom an invite is for must be said, and must make sense.
    for (body, status, part) in [
        (json!({}), StatusCode::BAD_REQUEST, "whom the invite is for"),
        (
            json!({"own_site": true, "org_id": "bolt"}),
            StatusCode::BAD_REQUEST,
            "names no org",
        ),
        (
            json!({"org_id": "acme", "role": "retailer"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "own-site invite",
        ),
        (
            json!({"org_id": "newco"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name and role",
        ),
        (
            json!({"org_id": "newco", "org_name": "N", "role": "retailer"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "across roles",
        ),
        (
            json!({"org_id": "bolt", "role": "retailer"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a retailer",
        ),
    ] {
        let (s, v) = site1.post("/api/v1/peers/invites", body.clone()).await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(part), "{body}: {v}");
    }

    // A node of our own org cannot become a site with a partner invite.
    let site2 = TestNode::start("acme", Role::Retailer).await;
    let for_bolt = invite(&site1, json!({"org_id": "bolt"})).await;
    let (s, v) = site2.post("/api/v1/peers", json!({"code": for_bolt})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = claim(
        &site1,
        &for_bolt,
        &node_id(&site2).await,
        "acme",
        "retailer",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("for org bolt (supplier)"),
        "{v}"
    );

    // An own-site invite is for our own org only.
    let site_code = invite(&site1, json!({"own_site": true})).await;
    let bolt2 = TestNode::start("bolt", Role::Supplier).await;
    let (s, v) = bolt2
        .post("/api/v1/peers", json!({"code": site_code}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = claim(
        &site1,
        &site_code,
        &node_id(&bolt2).await,
        "bolt",
        "supplier",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("another site of acme"),
        "{v}"
    );
    assert!(inbox_ids(&site2).await.is_empty() && inbox_ids(&bolt2).await.is_empty());
    assert_eq!(peers(&site1).await.len(), 1);

    // Used as meant, it makes a site that sees the org's conversations.
    let (s, v) = site2
        .post("/api/v1/peers/invites/inspect", json!({"code": site_code}))
        .await;
    assert_eq!(
        (s, v["own_site"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    let (s, v) = site2
        .post("/api/v1/peers", json!({"code": site_code}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["own_org"], true);
    eventually(15, "bolt's task at site2", || has(&site2, &id)).await;
    for n in [bolt2, site2, bolt, site1] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_pairing_an_existing_node_id_is_refused() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let before_id = shared(&acme, &bolt, "bolt", "Before").await;
    let before = peers(&acme).await;

    // An invite for one more bolt node, used with the (public) node id of the bolt node that
    // is already paired: refused, and acme keeps the real one.
    let code = invite(&acme, json!({"org_id": "bolt"})).await;
    let bolt_id = node_id(&bolt).await;
    let (s, v) = claim(&acme, &code, &bolt_id, "bolt", "supplier").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let d = v["detail"].as_str().unwrap();
    assert!(
        d.contains("already paired") && d.contains("remove the old peer first"),
        "{d}"
    );
    // bolt itself may not pair twice either.
    let (s, v) = bolt.post("/api/v1/peers", json!({"code": code})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let after = peers(&acme).await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        (&after[0]["node_id"], &after[0]["url"]),
        (&before[0]["node_id"], &before[0]["url"])
    );

    // The real peer keeps syncing both ways.
    let id = shared(&acme, &bolt, "bolt", "After the attempt").await;
    bolt.post(
        &format!("/api/v1/conversations/{id}/messages"),
        json!({"body": "still here"}),
    )
    .await;
    eventually(15, "bolt's reply at acme", || async {
        let (_, v) = acme.get(&format!("/api/v1/conversations/{id}")).await;
        (v["messages"].as_array().map_or(0, |m| m.len()) == 1).then_some(())
    })
    .await;
    // The invite is still good for another bolt node: a partner's second node.
    let bolt2 = TestNode::start("bolt", Role::Supplier).await;
    let (s, v) = bolt2.post("/api/v1/peers", json!({"code": code})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // (It receives what acme wrote; bolt's own reply relayed by acme is a separate matter: a
    // node accepts another node's writes for its org only from that org's nodes.)
    eventually(15, "the conversation at bolt's second node", || {
        has(&bolt2, &before_id)
    })
    .await;
    for n in [bolt2, bolt, acme] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_unknown_and_malformed_invites_are_refused_for_good() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    let code = invite(&acme, invite_for(&acme, &bolt)).await;
    // A secret the inviting node never made.
    let mut forged = decode_invite(&code);
    forged["secret"] = json!("0".repeat(64));
    let (s, v) = bolt
        .post("/api/v1/peers", json!({"code": encode_invite(&forged)}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("unknown or already used"),
        "{v}"
    );
    // CR/LF smuggled into the invite's address: refused before anything is sent.
    let catcher = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = catcher.local_addr().unwrap().port();
    let mut evil = decode_invite(&code);
    evil["url"] = json!(format!("http://127.0.0.1:{port}/\r\nX-Injected: 1\r\n"));
    let (s, v) = bolt
        .post("/api/v1/peers", json!({"code": encode_invite(&evil)}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("control characters"),
        "{v}"
    );
    let nothing =
        tokio::time::timeout(std::time::Duration::from_millis(300), catcher.accept()).await;
    assert!(nothing.is_err(), "nothing dialled the injected address");
    // ... and in a pairing request's address.
    let c = decode_invite(&code);
    let body = json!({
        "secret": c["secret"], "node_id": node_id(&bolt).await, "org_id": "bolt", "org_name": "Bolt",
        "role": "supplier", "url": "http://127.0.0.1:1/\r\nHost: evil", "public_key": bolt.svc().node_public_key().await.unwrap(),
    });
    let (s, v) = acme
        .call("POST", "/api/v1/peers/accept", Some(body), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(peers(&acme).await.is_empty());
    // The genuine code still works once, then is used up.
    let (s, v) = bolt.post("/api/v1/peers", json!({"code": code})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = claim(
        &acme,
        &code,
        &uuid::Uuid::new_v4().to_string(),
        "bolt",
        "supplier",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    bolt.stop().await;
    acme.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_peer_addresses_are_refused_unless_allowed() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let strict = TestNode::start_strict("bolt", Role::Supplier).await;
    let code = invite(&acme, invite_for(&acme, &strict)).await;
    // The invite's address is 127.0.0.1: the strict node will not dial it.
    let (s, v) = strict.post("/api/v1/peers", json!({"code": code})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let d = v["detail"].as_str().unwrap();
    assert!(
        d.contains("loopback") && d.contains("allow_loopback_peers"),
        "{d}"
    );
    let mut by_name = decode_invite(&code);
    by_name["url"] = json!(acme.base.replace("127.0.0.1", "localhost"));
    let (s, v) = strict
        .post("/api/v1/peers", json!({"code": encode_invite(&by_name)}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(peers(&strict).await.is_empty() && peers(&acme).await.is_empty());

    // A strict inviting node refuses a pairing node whose address is loopback.
    let strict_acme = TestNode::start_strict("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    let code = invite(&strict_acme, invite_for(&strict_acme, &bolt)).await;
    let (s, v) = bolt.post("/api/v1/peers", json!({"code": code})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("loopback"), "{v}");
    assert!(peers(&strict_acme).await.is_empty() && peers(&bolt).await.is_empty());
    for n in [bolt, strict_acme, strict, acme] {
        n.stop().await;
    }
}

/// Which of two paired nodes dials the other: the lower node id, when both have addresses.
async fn dialer_first(a: TestNode, b: TestNode) -> (TestNode, TestNode) {
    if node_id(&a).await < node_id(&b).await {
        (a, b)
    } else {
        (b, a)
    }
}

async fn connected(n: &TestNode) -> Option<()> {
    (peers(n).await.first()?["connected"] == true).then_some(())
}

/// The bytes a relay saw from the client on one connection.
type Tap = Arc<Mutex<Vec<u8>>>;

/// Reads one HTTP request head (and a body of `Content-Length`) from `s`.
async fn read_request(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_node_at_a_peers_address_learns_nothing_usable() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let (dialer, mut server) = dialer_first(acme, bolt).await;
    eventually(15, "the first link", || connected(&dialer)).await;
    let server_id = node_id(&server).await;
    let old_addr = server.addr();

    // The server goes away and someone else answers at its address, posing as it: it echoes
    // the node id and answers the hello with a made-up proof.
    server.pause().await;
    let fake = TcpListener::bind(old_addr).await.unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let log = seen.clone();
    let fake_task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = fake.accept().await else {
                return;
            };
            let req = read_request(&mut s).await;
            log.lock().unwrap().push(req);
            let body =
                json!({"node_id": server_id, "nonce": "ab".repeat(32), "proof": "00".repeat(64)})
                    .to_string();
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-parley-node: {server_id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    eventually(30, "the dialer trying the fake three times", || async {
        (seen.lock().unwrap().len() >= 3).then_some(())
    })
    .await;
    fake_task.abort();
    for req in seen.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(req);
        assert!(
            text.starts_with("POST /api/v1/peers/hello "),
            "only a hello reached the fake: {text}"
        );
        let lower = text.to_lowercase();
        for secret_bearing in [
            "authorization",
            "x-parley-proof",
            "upgrade: websocket",
            "bearer",
        ] {
            assert!(
                !lower.contains(secret_bearing),
                "the fake received {secret_bearing}: {text}"
            );
        }
    }
    let p = peers(&dialer).await;
    let err = p[0]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("could not prove"), "{p:?}");
    assert_eq!(
        p[0]["stopped"], false,
        "an impostor at the address is no reason to give up"
    );

    // The real server comes back on another port; a relay at the old address passes the
    // dialer's traffic through and records it, as a wire-tapper would.
    server.resume_on("127.0.0.1:0").await;
    let target = server.addr();
    let relay = TcpListener::bind(old_addr).await.unwrap();
    let taps: Arc<Mutex<Vec<Tap>>> = Arc::default();
    let taps2 = taps.clone();
    let relay_task = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = relay.accept().await else {
                return;
            };
            let tap: Tap = Arc::default();
            taps2.lock().unwrap().push(tap.clone());
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let up = async move {
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tap.lock().unwrap().extend_from_slice(&buf[..n]);
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut ur, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    eventually(30, "the link through the relay", || connected(&dialer)).await;
    let recorded: Vec<Vec<u8>> = taps
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.lock().unwrap().clone())
        .collect();
    let upgrade = recorded
        .iter()
        .find(|r| r.starts_with(b"GET /api/v1/sync"))
        .expect("the relay saw the upgrade");
    let end = upgrade.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&upgrade[..end]).to_lowercase();
    assert!(
        head.contains("x-parley-proof") && !head.contains("authorization"),
        "{head}"
    );
    // Replaying exactly what it saw does not get in: the challenge was used once already.
    let mut s = TcpStream::connect(target).await.unwrap();
    s.write_all(&upgrade[..end]).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the node closed without answering the replay");
        answer.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "the replay was accepted: {answer}"
    );
    // The dialer's own link is unaffected and still carries changes.
    let c = dialer
        .create(json!({"kind": "message", "partner": server.org, "subject": "Through the relay"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(15, "a conversation through the relay", || has(&server, &id)).await;
    relay_task.abort();
    dialer.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_by_its_peer_stops_dialing_and_says_why() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let (dialer, server) = dialer_first(acme, bolt).await;
    eventually(15, "the first link", || connected(&dialer)).await;
    let (s, _) = server
        .call(
            "DELETE",
            &format!("/api/v1/peers/{}", node_id(&dialer).await),
            None,
            Some(&server.token.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let p = eventually(30, "the dialer giving up", || async {
        let p = peers(&dialer).await;
        (p[0]["stopped"] == true).then_some(p)
    })
    .await;
    assert_eq!(p[0]["connected"], false);
    let err = p[0]["last_error"].as_str().unwrap();
    assert!(
        err.contains("does not know this node") && err.contains("pair again"),
        "{err}"
    );
    dialer.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_paired_with_a_shared_key_keep_working_without_sending_it() {
    // Nodes paired before identity keys hold one shared key each side; rewrite a fresh
    // pairing into that form on both nodes and restart them.
    let mut acme = TestNode::start("acme", Role::Retailer).await;
    let mut bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let shared_key = format!("pk_{}", hex::encode(parley::service::peer_nonce()));
    for n in [&acme, &bolt] {
        let store = n.svc().store().clone();
        let key = shared_key.clone();
        store
            .write(move |ctx| -> Result<(), parley::store::StoreError> {
                for mut p in parley::store::peers::list_peers_w(ctx.read_tx())? {
                    p.public_key = None;
                    p.key = key.clone();
                    parley::store::peers::put_peer(ctx.tx(), &p)?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }
    acme.pause().await;
    bolt.pause().await;
    acme.resume().await;
    bolt.resume().await;
    let (dialer, server) = dialer_first(acme, bolt).await;
    eventually(20, "the legacy link", || connected(&dialer)).await;
    let c = dialer
        .create(json!({"kind": "message", "partner": server.org, "subject": "Legacy link"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(15, "a conversation over the legacy link", || {
        has(&server, &id)
    })
    .await;
    dialer.stop().await;
    server.stop().await;
}
