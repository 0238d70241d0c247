//! Light peers: as far as a hub can tell, each is a supplier's node — its own Ed25519 key and
//! node id, paired through the invite flow (`POST /api/v1/peers/invites` at the hub, then the
//! `POST /api/v1/peers/accept` a pairing node sends), dialing `/api/v1/sync` over its own TCP
//! socket with the hello/proof handshake and running the real sync engine. What makes it
//! light: its documents live in a map in memory, it has no HTTP API of its own and no store.
//! Many run in one process. Shared by `tests/hub.rs` and `benches/hub.rs`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::{ActorId, AutoCommit, Automerge, ChangeHash};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use parley::domain::{Author, Kind, OrgId, Role, commands, doc};
use parley::replicator::dial;
use parley::replicator::pump::{self, Codec, Kind as Frame};
use parley::service::{Direction, InviteCode, transcript};
use parley_sync::{
    Config, Cursor, DocId, DocUpdate, FeedEntry, FeedPage, Host, HostError, Presence, Session,
    StoreError,
};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
use uuid::Uuid;

/// What a light peer holds: documents, its feed, its cursor into the hub's feed and its
/// per-document sync states. Everything here is shared with the hub (its only peer).
#[derive(Default)]
pub struct Mem {
    docs: HashMap<DocId, Automerge>,
    feed: std::collections::BTreeMap<u64, DocId>,
    seq_of: HashMap<DocId, u64>,
    high: u64,
    cursor: Option<Cursor>,
    states: HashMap<DocId, Vec<u8>>,
}

impl Mem {
    fn put(&mut self, id: DocId, d: Automerge) {
        self.docs.insert(id, d);
        if let Some(old) = self.seq_of.remove(&id) {
            self.feed.remove(&old);
        }
        self.high += 1;
        self.feed.insert(self.high, id);
        self.seq_of.insert(id, self.high);
    }
}

/// The host invariants the engine relies on, kept in memory: a store is atomic (one map
/// insert), the feed is monotonic, and everything held is shared with the one peer.
struct View<'a>(&'a mut Mem, u64);

impl Host for View<'_> {
    fn feed_id(&mut self) -> u64 {
        self.1
    }
    fn feed_high(&mut self) -> Result<u64, HostError> {
        Ok(self.0.high)
    }
    fn feed_since(&mut self, since: u64, limit: usize) -> Result<FeedPage, HostError> {
        let mut entries = Vec::new();
        for (&seq, id) in self.0.feed.range(since + 1..) {
            entries.push(FeedEntry {
                seq,
                doc: *id,
                heads: self.0.docs[id].get_heads(),
            });
            if entries.len() == limit {
                return Ok(FeedPage {
                    entries,
                    scanned_to: seq,
                });
            }
        }
        Ok(FeedPage {
            entries,
            scanned_to: self.0.high.max(since),
        })
    }
    fn is_shared(&mut self, doc: DocId) -> Result<bool, HostError> {
        Ok(self.0.docs.contains_key(&doc))
    }
    fn load_doc(&mut self, doc: DocId) -> Result<Option<Automerge>, HostError> {
        Ok(self.0.docs.get(&doc).cloned())
    }
    fn heads(&mut self, doc: DocId) -> Result<Option<Vec<ChangeHash>>, HostError> {
        Ok(self.0.docs.get(&doc).map(|d| d.get_heads()))
    }
    fn has_heads(&mut self, doc: DocId, heads: &[ChangeHash]) -> Result<Presence, HostError> {
        Ok(match self.0.docs.get(&doc) {
            None => Presence::Missing,
            Some(d) if parley_sync::contains_all(d, heads) => Presence::Has,
            Some(_) => Presence::Lacks,
        })
    }
    fn store_doc(&mut self, u: DocUpdate<'_>) -> Result<(), StoreError> {
        self.0.put(u.doc, u.after.clone());
        Ok(())
    }
    fn load_sync_state(&mut self, doc: DocId) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.0.states.get(&doc).cloned())
    }
    fn save_sync_state(&mut self, doc: DocId, state: &[u8]) -> Result<(), HostError> {
        self.0.states.insert(doc, state.to_vec());
        Ok(())
    }
    fn load_cursor(&mut self) -> Result<Option<Cursor>, HostError> {
        Ok(self.0.cursor)
    }
    fn save_cursor(&mut self, cursor: Cursor) -> Result<(), HostError> {
        self.0.cursor = Some(cursor);
        Ok(())
    }
}

/// What a test or bench watches of a light peer.
#[derive(Default)]
pub struct Status {
    /// A link is open and its first exchange completed.
    pub caught_up: AtomicBool,
    pub connected: AtomicBool,
    /// Links opened so far.
    pub links: AtomicU64,
    /// Upgrades the hub answered 503.
    pub busy: AtomicU64,
}

pub struct LightPeer {
    pub node_id: Uuid,
    pub org: OrgId,
    key: SigningKey,
    hub_node: Uuid,
    hub_key: VerifyingKey,
    hub_url: String,
    hub_org: OrgId,
    feed_id: u64,
    actor: ActorId,
    pub mem: Arc<Mutex<Mem>>,
    pub status: Arc<Status>,
    poke: Arc<Notify>,
}

/// One HTTP client for every light peer's hello, keeping no idle connection: a link holds
/// one socket (its WebSocket), as a real node's does, not a second one parked in a pool.
fn hello_client() -> &'static reqwest::Client {
    static C: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client")
    })
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("randomness");
    b
}

/// Pairs a new light peer of supplier org `org` with the hub at `base` (admin `token`).
pub async fn pair(http: &reqwest::Client, base: &str, token: &str, org: &str) -> LightPeer {
    let key = SigningKey::from_bytes(&random32());
    let node_id = Uuid::new_v4();
    let r = http
        .post(format!("{base}/api/v1/peers/invites"))
        .bearer_auth(token)
        .json(&json!({"org_id": org, "org_name": format!("{org} Ltd"), "role": "supplier"}))
        .send()
        .await
        .expect("invite");
    assert!(r.status().is_success(), "invite: {}", r.status());
    let code = r.json::<Value>().await.expect("invite json")["code"]
        .as_str()
        .expect("code")
        .to_string();
    let c = InviteCode::decode(&code).expect("the hub's invite decodes");
    let r = http
        .post(format!(
            "{}/api/v1/peers/accept",
            c.url.trim_end_matches('/')
        ))
        .json(&json!({
            "secret": c.secret, "node_id": node_id, "org_id": org,
            "org_name": format!("{org} Ltd"), "role": "supplier", "url": null,
            "public_key": hex::encode(key.verifying_key().as_bytes()), "tls": null,
        }))
        .send()
        .await
        .expect("accept");
    assert!(r.status().is_success(), "accept: {}", r.status());
    let a: Value = r.json().await.expect("accept json");
    assert_eq!(
        a["node_id"],
        json!(c.node),
        "the hub answering is the one that invited"
    );
    assert_eq!(a["public_key"], json!(c.key));
    let hub_key = VerifyingKey::from_bytes(
        &hex::decode(&c.key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .expect("a 32-byte key"),
    )
    .expect("the hub's key");
    LightPeer {
        node_id,
        org: OrgId::parse(org).expect("org id"),
        key,
        hub_node: c.node,
        hub_key,
        hub_url: c.url.trim_end_matches('/').to_string(),
        hub_org: OrgId::parse(&c.org).expect("hub org"),
        feed_id: u64::from_le_bytes(random32()[..8].try_into().expect("8 bytes")) | 1,
        actor: ActorId::random(),
        mem: Arc::default(),
        status: Arc::default(),
        poke: Arc::default(),
    }
}

impl LightPeer {
    /// Writes a new conversation with the hub's org, as this supplier, and wakes the link.
    pub fn create(&self, subject: &str) -> Uuid {
        let n = commands::NewConversation {
            id: Uuid::new_v4(),
            kind: Kind::Message,
            subject: subject.into(),
            topic: None,
            reference_id: None,
            due_date: None,
            body: Some(format!("{subject}: first message")),
            attachments: Vec::new(),
            message_id: Uuid::new_v4(),
        };
        let by = Author {
            org: self.org.clone(),
            user: "clerk".into(),
        };
        let conv = commands::new_conversation(
            n,
            by,
            Role::Supplier,
            &self.hub_org,
            Role::Retailer,
            chrono::Utc::now(),
        )
        .expect("a valid conversation");
        let mut d = AutoCommit::new().with_actor(self.actor.clone());
        doc::create(&mut d, &conv).expect("the document shape");
        let saved = d.save();
        let am = Automerge::load(&saved).expect("saved bytes load");
        self.mem
            .lock()
            .expect("mem")
            .put(DocId(*conv.id.as_bytes()), am);
        self.poke.notify_one();
        conv.id
    }

    /// The conversations held, each with the orgs it is between.
    pub fn holdings(&self) -> Vec<(Uuid, Vec<String>)> {
        let m = self.mem.lock().expect("mem");
        m.docs
            .iter()
            .map(|(id, d)| {
                let p = doc::read_participants(d).expect("a conversation");
                (
                    Uuid::from_bytes(id.0),
                    vec![p.retailer.to_string(), p.supplier.to_string()],
                )
            })
            .collect()
    }

    /// How many messages conversation `id` holds here (0 if it is not here).
    pub fn messages(&self, id: Uuid) -> usize {
        let m = self.mem.lock().expect("mem");
        m.docs
            .get(&DocId(*id.as_bytes()))
            .and_then(|d| doc::read(d).ok())
            .map_or(0, |c| c.messages.len())
    }

    /// Dials the hub and keeps a link up, redialing with the node's own backoff when cut.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                let wait = match me.link().await {
                    Ok(()) => {
                        attempt = 0;
                        dial::backoff(0)
                    }
                    Err(Some(after)) => dial::after(after, attempt),
                    Err(None) => dial::backoff(attempt),
                };
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(wait).await;
            }
        })
    }

    /// One link: hello, proofs, upgrade, session until it ends. `Err(Some(d))`: the hub was
    /// busy and said to come back after `d`.
    async fn link(&self) -> Result<(), Option<Duration>> {
        let http = hello_client();
        let cn = random32();
        let r = http
            .post(format!("{}/api/v1/peers/hello", self.hub_url))
            .json(&json!({"node_id": self.node_id, "nonce": hex::encode(cn)}))
            .send()
            .await
            .map_err(|_| None)?;
        if !r.status().is_success() {
            return Err(None);
        }
        let h: Value = r.json().await.map_err(|_| None)?;
        let sn: [u8; 32] = h["nonce"]
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or(None)?;
        let check = |dir, proof: Option<&str>| {
            let sig = proof
                .and_then(|p| hex::decode(p).ok())
                .and_then(|b| <[u8; 64]>::try_from(b).ok());
            sig.is_some_and(|s| {
                let t = transcript(dir, self.node_id, self.hub_node, &cn, &sn);
                self.hub_key
                    .verify_strict(&t, &Signature::from_bytes(&s))
                    .is_ok()
            })
        };
        assert!(
            check(Direction::Server, h["proof"].as_str()),
            "the hub proves itself"
        );
        let mine = self.key.sign(&transcript(
            Direction::Client,
            self.node_id,
            self.hub_node,
            &cn,
            &sn,
        ));
        let mut req = dial::sync_url(&self.hub_url)
            .into_client_request()
            .expect("request");
        let hd = req.headers_mut();
        hd.insert(
            "X-Parley-Node",
            self.node_id.to_string().parse().expect("h"),
        );
        hd.insert("X-Parley-Nonce", hex::encode(sn).parse().expect("h"));
        hd.insert(
            "X-Parley-Proof",
            hex::encode(mine.to_bytes()).parse().expect("h"),
        );
        hd.insert("Sec-WebSocket-Protocol", dial::PROTOCOL.parse().expect("h"));
        let host = self.hub_url.trim_start_matches("http://").to_string();
        let stream = tokio::net::TcpStream::connect(host)
            .await
            .map_err(|_| None)?;
        let (ws, resp) =
            match tokio_tungstenite::client_async_with_config(req, stream, Some(dial::ws_config()))
                .await
            {
                Ok(x) => x,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 503 => {
                    self.status.busy.fetch_add(1, Ordering::Relaxed);
                    let after = r
                        .headers()
                        .get("Retry-After")
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                        .unwrap_or(1);
                    return Err(Some(Duration::from_secs(after)));
                }
                Err(_) => return Err(None),
            };
        let accepted = resp
            .headers()
            .get("X-Parley-Proof")
            .and_then(|v| v.to_str().ok());
        assert!(
            check(Direction::Accepted, accepted),
            "the hub accepts with its proof"
        );
        self.session(ws).await;
        Ok(())
    }

    async fn session<S>(&self, ws: S)
    where
        S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + futures_util::Sink<Message>
            + Send
            + Unpin
            + 'static,
        <S as futures_util::Sink<Message>>::Error: Send,
    {
        let codec = Codec {
            kind: |m| match m {
                Message::Binary(b) => Frame::Binary(b.to_vec()),
                Message::Close(_) => Frame::Close,
                _ => Frame::Other,
            },
            binary: Message::binary,
            ping: || Message::Ping(Vec::new().into()),
        };
        let mut t = pump::spawn(ws, codec, false);
        self.status.links.fetch_add(1, Ordering::Relaxed);
        self.status.connected.store(true, Ordering::Release);
        let mut s = Session::new(Config::default());
        let mut out = self.step(&mut s, Input::Start);
        loop {
            for f in out.take().into_iter().flatten() {
                if t.tx.send(f).await.is_err() {
                    break;
                }
            }
            let done = s.progress().initial_sync_complete;
            self.status.caught_up.store(done, Ordering::Release);
            out = tokio::select! {
                f = t.rx.recv() => match f {
                    Some(b) => self.step(&mut s, Input::Frame(&b)),
                    None => break,
                },
                _ = self.poke.notified() => self.step(&mut s, Input::Local),
            };
            if out.is_none() {
                break;
            }
        }
        self.status.caught_up.store(false, Ordering::Release);
        self.status.connected.store(false, Ordering::Release);
    }

    /// One session call on the in-memory host; `None` ends the link (the engine's error).
    fn step(&self, s: &mut Session, input: Input<'_>) -> Option<Vec<Vec<u8>>> {
        let mut m = self.mem.lock().expect("mem");
        let mut v = View(&mut m, self.feed_id);
        let r = match input {
            Input::Start => s.start(&mut v),
            Input::Frame(b) => s.receive(b, &mut v),
            Input::Local => s.local_changed(&mut v),
        };
        r.ok()
    }
}

enum Input<'a> {
    Start,
    Frame(&'a [u8]),
    Local,
}
