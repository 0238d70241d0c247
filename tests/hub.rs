//! A retailer's hub with a few hundred supplier nodes (light peers, `common/hub.rs`): all
//! pair through invites, take their conversations from the hub and send their own, live
//! through the hub's restart, and end holding exactly their own conversations. First syncs
//! take turns (`[sync] first_syncs`), and one reply wakes one supplier's link, not all of
//! them. A node hammering the sync endpoint is turned away before any work.

mod common;
#[path = "common/hub.rs"]
mod hub;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::scrape::{scrape, value};
use common::{TestNode, eventually};
use futures_util::StreamExt;
use hub::LightPeer;
use parley::domain::Role;
use serde_json::{Value, json};
use uuid::Uuid;

const PEERS: usize = 300;

async fn pair_all(hub: &TestNode, n: usize) -> Vec<Arc<LightPeer>> {
    let http = reqwest::Client::new();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            async move {
                Arc::new(hub::pair(&http, &hub.base, &hub.token, &format!("sup-{i:04}")).await)
            }
        })
        .buffered(16)
        .collect()
        .await
}

/// Whether every light peer is linked, caught up, and holds exactly `want` of its org.
fn converged(peers: &[Arc<LightPeer>], want: &HashMap<Uuid, HashSet<Uuid>>) -> bool {
    peers.iter().all(|p| {
        p.status.caught_up.load(Ordering::Acquire)
            && p.holdings()
                .iter()
                .map(|(id, _)| *id)
                .collect::<HashSet<_>>()
                == want[&p.node_id]
    })
}

/// Every `parley_sync_wakes_total` sample of a scrape, summed: quiet when it stops moving.
fn all_wakes(body: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with("parley_sync_wakes_total{"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_suppliers_pair_sync_live_through_a_restart_and_converge() {
    let mut hub =
        TestNode::start_configured("acme", Role::Retailer, "[sync]\nfirst_syncs = 2\n").await;
    let t0 = std::time::Instant::now();
    let peers = pair_all(&hub, PEERS).await;
    eprintln!("paired {PEERS} in {:?}", t0.elapsed());
    let (s, listed) = hub.get("/api/v1/peers").await;
    assert_eq!(s, 200);
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(PEERS),
        "every supplier paired"
    );

    // Before anyone connects, the hub writes one or two conversations to each supplier.
    let mut want: HashMap<Uuid, HashSet<Uuid>> = HashMap::new();
    let created: Vec<(Uuid, Uuid)> = futures_util::stream::iter(peers.iter().enumerate())
        .flat_map(|(i, p)| futures_util::stream::iter((0..1 + i % 2).map(move |k| (p, k))))
        .map(|(p, k)| {
            let hub = &hub;
            async move {
                let body = json!({"kind": "message", "partner": p.org.as_str(), "subject": format!("Order {k} for {}", p.org.as_str()), "body": "Please confirm"});
                let v = hub.create(body).await;
                (p.node_id, Uuid::parse_str(v["id"].as_str().unwrap()).unwrap())
            }
        })
        .buffered(16)
        .collect()
        .await;
    eprintln!("conversations written at {:?}", t0.elapsed());
    for (peer, id) in created {
        want.entry(peer).or_default().insert(id);
    }
    // Each supplier writes one of its own, then all dial at once.
    let mut theirs = Vec::new();
    for p in &peers {
        let id = p.create(&format!("Catalogue of {}", p.org.as_str()));
        want.entry(p.node_id).or_default().insert(id);
        theirs.push(id);
    }
    let seen_waiting = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (base, token, seen) = (hub.base.clone(), hub.token.clone(), seen_waiting.clone());
        tokio::spawn(async move { watch_for_a_wait(base, token, seen).await })
    };
    let tasks: Vec<_> = peers.iter().map(|p| p.spawn()).collect();

    eventually(
        120,
        "every supplier holds exactly its conversations",
        || async { converged(&peers, &want).then_some(()) },
    )
    .await;
    eprintln!("first sync of everyone done at {:?}", t0.elapsed());
    let waiter = watcher.await.unwrap();
    assert!(
        seen_waiting.load(Ordering::Acquire),
        "with 2 turns and {PEERS} first syncs, one was seen waiting its turn"
    );
    // The one seen waiting completed too (it is among the converged), and nothing waits now.
    let (_, listed) = hub.get("/api/v1/peers").await;
    let w = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node_id"] == json!(waiter))
        .unwrap();
    assert_eq!(
        (w["waiting_turn"].clone(), w["caught_up"].clone()),
        (json!(false), json!(true))
    );
    eventually(
        30,
        "every supplier's own conversation at the hub",
        || async {
            for id in &theirs {
                let (s, _) = hub.get(&format!("/api/v1/conversations/{id}")).await;
                if s != 200 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;

    // One reply at the hub wakes the link of its supplier, and no other. First the hub goes
    // quiet: late deliveries settling wake their own suppliers' links.
    let last = std::cell::Cell::new(all_wakes(&scrape(&hub).await));
    let before = eventually(30, "no link waking any more", || {
        let (hub, last) = (&hub, &last);
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let body = scrape(hub).await;
            let now = all_wakes(&body);
            (now == last.replace(now)).then_some(body)
        }
    })
    .await;
    let target = &peers[0];
    let conv = *want[&target.node_id]
        .iter()
        .find(|id| !theirs.contains(id))
        .unwrap();
    hub.reply_ok(&conv.to_string(), "Confirmed for Tuesday")
        .await;
    eventually(20, "the reply at its supplier", || async {
        (target.messages(conv) == 2).then_some(())
    })
    .await;
    let after = scrape(&hub).await;
    let wakes = |body: &str, p: &LightPeer| {
        value(
            body,
            &format!("parley_sync_wakes_total{{peer=\"{}\"}}", p.node_id),
        )
        .unwrap_or(0.0)
    };
    assert!(
        wakes(&after, target) > wakes(&before, target),
        "its supplier's link woke"
    );
    let woken: Vec<_> = peers[1..]
        .iter()
        .filter(|p| wakes(&after, p) != wakes(&before, p))
        .map(|p| p.org.as_str().to_string())
        .collect();
    assert!(woken.is_empty(), "links of other suppliers woke: {woken:?}");

    // The hub restarts on the same address and data directory; everyone redials.
    eprintln!("restart at {:?}", t0.elapsed());
    hub.pause().await;
    eventually(30, "every link noticed the hub is gone", || async {
        peers
            .iter()
            .all(|p| !p.status.connected.load(Ordering::Acquire))
            .then_some(())
    })
    .await;
    hub.resume().await;
    eventually(
        120,
        "every supplier back, caught up, holding exactly its own",
        || async {
            (converged(&peers, &want)
                && peers
                    .iter()
                    .all(|p| p.status.links.load(Ordering::Relaxed) >= 2))
            .then_some(())
        },
    )
    .await;
    eprintln!("converged after the restart at {:?}", t0.elapsed());
    for p in &peers {
        for (id, orgs) in p.holdings() {
            assert_eq!(
                orgs,
                ["acme".to_string(), p.org.as_str().to_string()],
                "{id} at {}",
                p.org.as_str()
            );
        }
    }
    assert_eq!(target.messages(conv), 2, "the reply survived the restart");
    for t in tasks {
        t.abort();
    }
}

/// Polls the hub's peer list until a link shows `waiting_turn` (and a place in the line);
/// returns that peer. Gives up, returning nil, once nothing waits after a first wait was seen
/// or after a generous bound.
async fn watch_for_a_wait(base: String, token: String, seen: Arc<AtomicBool>) -> Uuid {
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        let r = http
            .get(format!("{base}/api/v1/peers"))
            .bearer_auth(&token)
            .send()
            .await;
        if let Ok(r) = r
            && let Ok(v) = r.json::<Value>().await
            && let Some(w) = v
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["waiting_turn"] == json!(true))
        {
            assert!(w["waiting_place"].as_u64().is_some_and(|n| n >= 1), "{w}");
            assert_eq!(w["connected"], json!(true), "a waiting link is open: {w}");
            seen.store(true, Ordering::Release);
            return Uuid::parse_str(w["node_id"].as_str().unwrap()).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Uuid::nil()
}

/// One sync upgrade from a node that is not paired (a made-up id and proof): the status, and
/// the `Retry-After` it came with.
async fn hammer_once(base: &str) -> (u16, Option<String>, Value) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = parley::replicator::dial::sync_url(base)
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("X-Parley-Node", Uuid::new_v4().to_string().parse().unwrap());
    h.insert("X-Parley-Nonce", "00".repeat(32).parse().unwrap());
    h.insert("X-Parley-Proof", "11".repeat(64).parse().unwrap());
    h.insert("Sec-WebSocket-Protocol", "parley-sync.1".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => panic!("an unpaired node was given a sync link"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let retry = r
                .headers()
                .get("Retry-After")
                .map(|v| v.to_str().unwrap().to_string());
            let body = r
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (r.status().as_u16(), retry, body)
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_hammering_the_sync_endpoint_is_turned_away_before_any_work() {
    let hub =
        TestNode::start_configured("acme", Role::Retailer, "[sync]\naccept_per_second = 1\n").await;
    let good = pair_all(&hub, 1).await.remove(0);
    let id = hub
        .create(
            json!({"kind": "message", "partner": good.org.as_str(), "subject": "Delivery slots"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // 1 per second with bursts of 2: of 30 upgrades at once, at most a few reach the proof
    // check (and fail it); the rest are answered 503 with Retry-After, before any work, and
    // told to come back further apart the more of them there are (at 1 a second, the 25th
    // refused in a second waits 25 s).
    let (mut busy, mut refused, mut last_wait) = (0, 0, 0u64);
    for _ in 0..30 {
        match hammer_once(&hub.base).await {
            (503, retry, body) => {
                let secs: u64 = retry
                    .expect("a 503 says when to come back")
                    .parse()
                    .unwrap();
                assert!((1..=30).contains(&secs), "Retry-After {secs}");
                assert!(secs >= last_wait, "Retry-After {secs} after {last_wait}");
                last_wait = secs;
                assert_eq!(body["error"], "unavailable", "{body}");
                busy += 1;
            }
            (401, _, _) => refused += 1,
            (s, _, b) => panic!("answered {s}: {b}"),
        }
    }
    assert!(
        busy >= 25 && refused <= 5,
        "{busy} turned away, {refused} refused"
    );
    assert!(last_wait >= 20, "the crowd is spread out: {last_wait} s");
    // Nothing of it stayed: the one paired peer, no link, no new partner.
    let (_, listed) = hub.get("/api/v1/peers").await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["connected"], json!(false));
    assert_eq!(listed[0]["waiting_turn"], json!(false));

    // A paired supplier dialing while the hammering goes on is turned away too, comes back
    // after Retry-After, and syncs once the hammering stops.
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let (base, stop) = (hub.base.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                hammer_once(&base).await;
            }
        })
    };
    let task = good.spawn();
    eventually(30, "the supplier turned away at least once", || async {
        (good.status.busy.load(Ordering::Relaxed) >= 1).then_some(())
    })
    .await;
    stop.store(true, Ordering::Release);
    hammer.await.unwrap();
    let conv = Uuid::parse_str(&id).unwrap();
    // It may have been told to wait up to 30 s (and waits up to twice that).
    eventually(150, "the supplier synced after backing off", || async {
        let held: Vec<Uuid> = good.holdings().into_iter().map(|(id, _)| id).collect();
        (good.status.caught_up.load(Ordering::Acquire) && held == [conv]).then_some(())
    })
    .await;
    task.abort();
}

/// A change a partner sends the hub travels on at once to the hub's own other site (which
/// holds everything), and wakes no link of an unrelated supplier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partners_reply_reaches_our_other_site_and_wakes_no_other_supplier() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let site2 = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    common::pair(&acme, &site2).await;
    common::pair(&acme, &bolt).await;
    let other = pair_all(&acme, 1).await.remove(0);
    let task = other.spawn();
    let c = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Pallet count", "body": "How many?"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    for n in [&site2, &bolt] {
        eventually(30, "the conversation at our site and at bolt", || async {
            (n.bodies(&id).await.len() == 1).then_some(())
        })
        .await;
    }
    eventually(30, "the other supplier linked", || async {
        other.status.caught_up.load(Ordering::Acquire).then_some(())
    })
    .await;
    let series = format!("parley_sync_wakes_total{{peer=\"{}\"}}", other.node_id);
    let before = value(&scrape(&acme).await, &series).unwrap_or(0.0);
    bolt.reply_ok(&id, "Twelve pallets").await;
    eventually(
        30,
        "bolt's reply at our other site, through the hub",
        || async { (site2.bodies(&id).await == ["How many?", "Twelve pallets"]).then_some(()) },
    )
    .await;
    assert_eq!(
        value(&scrape(&acme).await, &series).unwrap_or(0.0),
        before,
        "the unrelated supplier's link was not woken"
    );
    assert!(
        other.holdings().is_empty(),
        "and it holds nothing of acme and bolt's"
    );
    task.abort();
}
