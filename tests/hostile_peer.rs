//! A hostile partner speaking the real sync protocol.
//!
//! The partner here is a `parley_sync::Session` over an in-memory host that holds whatever
//! Automerge documents the test forges; our side is a real node's store behind the real
//! `SyncHost` and `flush_sync`, exactly as the replicator drives them. Frames pass between the
//! two sessions as bytes. Each case forges one thing the write gate forbids and shows that the
//! whole change is refused, the partner is told why, and nothing of it is stored.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use automerge::{AutoCommit, Automerge, ChangeHash, ROOT, ReadDoc, transaction::Transactable};
use chrono::Utc;
use parley::domain::attachment::AttachmentRef;
use parley::domain::commands::{self, NewConversation};
use parley::domain::{Author, Event, Kind, Message, OrgId, Role, doc, new_id};
use parley::service::{Clock, CreateInput, Principal, Service};
use parley::store::sync_host::{PeerScope, SyncHost};
use parley::store::{Store, StoreOptions, docs, peers::Peer};
use parley_sync::{
    BlobStored, BlobWant, Config, Cursor, DocId, DocUpdate, FeedEntry, FeedPage, Host, HostError,
    Record, Session, StoreError, decode_frame,
};
use uuid::Uuid;

/// The partner's node: stores anything it is sent, serves whatever the test put in it.
#[derive(Default)]
struct Hostile {
    /// A new incarnation each time, so our cursor into an earlier partner feed is not reused.
    feed_id: u64,
    docs: BTreeMap<[u8; 16], Automerge>,
    feed: Vec<(u64, DocId)>,
    high: u64,
    states: HashMap<[u8; 16], Vec<u8>>,
    cursor: Option<Cursor>,
    /// Files it asks us for, with their sizes.
    wants: Vec<([u8; 32], u64)>,
    /// What it sends when asked for a file, right or wrong.
    serves: HashMap<[u8; 32], Vec<u8>>,
    /// Chunks of files it received from us.
    got: Vec<([u8; 32], u32)>,
    /// It gives no chunk from this index on (a site that has only part of a file).
    stop_at: Option<u32>,
    /// What it sends as a document's stored bytes when we hold nothing of it, true or not.
    snapshots: HashMap<[u8; 16], parley_sync::Snapshot>,
}

impl Hostile {
    fn put(&mut self, d: Automerge) -> Uuid {
        let id: String = match d.get(ROOT, "id").unwrap() {
            Some((v, _)) => v.into_string().unwrap(),
            None => panic!("forged documents keep an id"),
        };
        let id = Uuid::parse_str(&id).unwrap();
        let doc = DocId(*id.as_bytes());
        self.high += 1;
        self.feed.retain(|(_, d)| *d != doc);
        self.feed.push((self.high, doc));
        self.docs.insert(doc.0, d);
        id
    }

    fn get(&self, id: Uuid) -> Option<&Automerge> {
        self.docs.get(id.as_bytes())
    }
}

impl Host for Hostile {
    fn feed_id(&mut self) -> u64 {
        if self.feed_id == 0 {
            self.feed_id = Uuid::new_v4().as_u128() as u64 | 1;
        }
        self.feed_id
    }
    fn feed_high(&mut self) -> Result<u64, HostError> {
        Ok(self.high)
    }
    fn feed_since(&mut self, since: u64, limit: usize) -> Result<FeedPage, HostError> {
        let entries: Vec<FeedEntry> = self
            .feed
            .iter()
            .filter(|(s, _)| *s > since)
            .take(limit)
            .map(|(s, d)| FeedEntry {
                seq: *s,
                doc: *d,
                heads: self.docs[&d.0].get_heads(),
            })
            .collect();
        let scanned_to = entries.last().map_or(since, |e| e.seq);
        Ok(FeedPage {
            entries,
            scanned_to,
        })
    }
    fn is_shared(&mut self, doc: DocId) -> Result<bool, HostError> {
        Ok(self.docs.contains_key(&doc.0))
    }
    fn load_doc(&mut self, doc: DocId) -> Result<Option<Automerge>, HostError> {
        Ok(self.docs.get(&doc.0).cloned())
    }
    fn stored_snapshot(&mut self, doc: DocId) -> Result<Option<parley_sync::Snapshot>, HostError> {
        Ok(self.snapshots.get(&doc.0).cloned())
    }
    fn store_doc(&mut self, u: DocUpdate<'_>) -> Result<(), StoreError> {
        self.docs.insert(u.doc.0, u.after.clone());
        Ok(())
    }
    fn load_sync_state(&mut self, doc: DocId) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.states.get(&doc.0).cloned())
    }
    fn save_sync_state(&mut self, doc: DocId, state: &[u8]) -> Result<(), HostError> {
        self.states.insert(doc.0, state.to_vec());
        Ok(())
    }
    fn load_cursor(&mut self) -> Result<Option<Cursor>, HostError> {
        Ok(self.cursor)
    }
    fn save_cursor(&mut self, c: Cursor) -> Result<(), HostError> {
        self.cursor = Some(c);
        Ok(())
    }
    fn blobs_wanted(
        &mut self,
        limit: usize,
        exclude: &[[u8; 32]],
    ) -> Result<Vec<BlobWant>, HostError> {
        let done: Vec<[u8; 32]> = self.got.iter().map(|(f, _)| *f).collect();
        Ok(self
            .wants
            .iter()
            .filter(|(f, _)| !exclude.contains(f) && !done.contains(f))
            .take(limit)
            .map(|(f, size)| BlobWant {
                file: *f,
                size: *size,
                next: 0,
            })
            .collect())
    }
    fn blob_chunk(
        &mut self,
        file: &[u8; 32],
        index: u32,
    ) -> Result<Option<(u64, Vec<u8>)>, HostError> {
        if self.stop_at.is_some_and(|s| index >= s) {
            return Ok(None);
        }
        Ok(self.serves.get(file).and_then(|b| {
            let start = index as usize * parley_sync::wire::BLOB_CHUNK_BYTES;
            (start < b.len()).then(|| {
                let end = (start + parley_sync::wire::BLOB_CHUNK_BYTES).min(b.len());
                (b.len() as u64, b[start..end].to_vec())
            })
        }))
    }
    fn store_blob_chunk(
        &mut self,
        file: &[u8; 32],
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<BlobStored, HostError> {
        self.got.push((*file, index));
        let size = self
            .wants
            .iter()
            .find(|(f, _)| f == file)
            .map_or(0, |w| w.1);
        let end = (index as usize * parley_sync::wire::BLOB_CHUNK_BYTES + bytes.len()) as u64;
        Ok(if end >= size {
            BlobStored::Complete
        } else {
            BlobStored::Stored
        })
    }
}

/// Our node (acme, a retailer, with partners bolt and zeta) and the scope of bolt's peer.
struct Ours {
    store: Arc<Store>,
    svc: Arc<Service>,
    scope: PeerScope,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn org(s: &str) -> OrgId {
    OrgId::parse(s).unwrap()
}

fn peer_of(org_id: &str, role: Role) -> Peer {
    // A paired peer's record as the store keeps it; the key is never used here.
    serde_json::from_value(serde_json::json!({
        "node_id": Uuid::new_v4(),
        "org_id": org_id,
        "org_name": format!("{org_id} Co"),
        "role": role,
        "url": null,
        "key": "unused",
        "created_at": Utc::now(),
        "last_sync_at": null,
    }))
    .expect("peer record")
}

fn ours_with(opts: StoreOptions) -> Ours {
    let dir = tempfile::tempdir().unwrap();
    let mut o = open_in(dir, opts);
    o.rt.block_on(async {
        o.svc
            .init_identity("acme", "Acme Retail", Role::Retailer)
            .await
            .unwrap();
        for (id, name) in [("bolt", "Bolt Supplies"), ("zeta", "Zeta Goods")] {
            o.svc
                .add_partner(
                    &parley::service::Principal::operator(),
                    id,
                    name,
                    Role::Supplier,
                )
                .await
                .unwrap();
        }
    });
    o.scope.peer = peer_of("bolt", Role::Supplier);
    o
}

/// Opens the store in `dir` as a node would at start.
fn open_in(dir: tempfile::TempDir, opts: StoreOptions) -> Ours {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let path = dir.path().to_path_buf();
    let store = rt
        .block_on(rt.spawn_blocking(move || Store::open(&path, opts)))
        .unwrap()
        .unwrap();
    let svc = {
        let _in_runtime = rt.enter();
        Service::new(store.clone(), Clock::System)
    };
    Ours {
        store,
        svc,
        scope: PeerScope {
            peer: peer_of("bolt", Role::Supplier),
            me: org("acme"),
        },
        rt,
        _dir: dir,
    }
}

fn ours() -> Ours {
    ours_with(StoreOptions::default())
}

/// What our side said and did during one exchange.
#[derive(Default)]
struct Outcome {
    rejected: Vec<(Uuid, String)>,
    hello_high: Option<u64>,
    announced: Vec<Uuid>,
    /// File chunks we sent the partner, and the files we said we cannot give.
    chunks_to_them: Vec<([u8; 32], u32)>,
    /// Files we asked the partner for.
    wants_to_them: Vec<[u8; 32]>,
    none_to_them: Vec<[u8; 32]>,
    /// Files we refused after fetching them from the partner.
    files_refused: Vec<([u8; 32], String)>,
}

impl Ours {
    /// Stops the node cleanly, lets `f` do what it likes to the database file, and starts it
    /// again on the same data directory, as the same peer's counterpart.
    fn restart(self, f: impl FnOnce(&std::path::Path)) -> Ours {
        let Ours {
            store,
            svc,
            scope,
            rt,
            _dir: dir,
        } = self;
        drop(svc);
        drop(rt);
        drop(store);
        f(&dir.path().join("parley.redb"));
        let mut o = open_in(dir, StoreOptions::default());
        o.scope = scope;
        o
    }

    fn step(
        &self,
        s: &mut Session,
        f: impl FnOnce(&mut Session, &mut SyncHost) -> Vec<Vec<u8>>,
    ) -> Vec<Vec<u8>> {
        let mut host = SyncHost::new(&self.store, &self.scope, Utc::now()).unwrap();
        let frames = f(s, &mut host);
        let pending = host.into_pending();
        self.store
            .flush_sync(self.scope.peer.node_id, pending, Utc::now())
            .unwrap();
        frames
    }

    /// Runs both sessions until neither has anything to say.
    fn exchange(&self, h: &mut Hostile) -> Outcome {
        self.exchange_with(h, Config::default())
    }

    /// [`Ours::exchange`] on a link opened with `config` at both ends (files or not).
    fn exchange_with(&self, h: &mut Hostile, config: Config) -> Outcome {
        // Our side as the replicator configures it.
        let mut us = Session::new(Config {
            prepare: Some(parley::store::sync_host::prepare_new),
            ..config.clone()
        });
        let mut them = Session::new(config);
        let mut out = Outcome::default();
        let mut to_them = self.step(&mut us, |s, host| s.start(host).unwrap());
        let mut to_us = them.start(h).unwrap();
        let mut poked = false;
        for _ in 0..10_000 {
            if to_them.is_empty() && to_us.is_empty() {
                // What the last flush stored may give our side more to do (a file to fetch):
                // the replicator pokes the session after every flush; so does this, once.
                if poked {
                    break;
                }
                poked = true;
                to_them = self.step(&mut us, |s, host| s.local_changed(host).unwrap());
                continue;
            }
            poked = false;
            for f in &to_them {
                for r in decode_frame(f).unwrap().records {
                    match r {
                        Record::Hello { feed_high, .. } => out.hello_high = Some(feed_high),
                        Record::Feed { entries, .. } => out
                            .announced
                            .extend(entries.iter().map(|e| Uuid::from_bytes(e.doc.0))),
                        Record::BlobChunk { file, index, .. } => {
                            out.chunks_to_them.push((file, index))
                        }
                        Record::BlobNone { file } => out.none_to_them.push(file),
                        Record::BlobWant { file, .. } => out.wants_to_them.push(file),
                        _ => {}
                    }
                }
            }
            let mut next_to_us = Vec::new();
            for f in std::mem::take(&mut to_them) {
                next_to_us.extend(them.receive(&f, h).unwrap());
            }
            for f in std::mem::take(&mut to_us) {
                to_them.extend(self.step(&mut us, |s, host| s.receive(&f, host).unwrap()));
            }
            to_us = next_to_us;
        }
        for e in us.take_events() {
            match e {
                parley_sync::Event::Rejected { doc, reason } => {
                    out.rejected.push((Uuid::from_bytes(doc.0), reason))
                }
                parley_sync::Event::BlobRefused { file, reason } => {
                    out.files_refused.push((file, reason))
                }
                _ => {}
            }
        }
        out
    }

    fn stored(&self, id: Uuid) -> bool {
        docs::exists(&self.store.begin_read().unwrap(), id.as_u128()).unwrap()
    }

    fn view(&self, id: Uuid) -> parley::domain::Conversation {
        let p = admin();
        self.rt.block_on(self.svc.get(&p, id)).unwrap()
    }

    fn reply(&self, id: Uuid, body: &str) {
        let p = admin();
        self.rt
            .block_on(self.svc.reply(&p, id, body.into(), None, None))
            .unwrap();
    }

    fn create_with(&self, partner: &str, subject: &str) -> Uuid {
        let p = admin();
        let input = CreateInput {
            id: None,
            kind: Kind::Task,
            partner: partner.into(),
            subject: subject.into(),
            topic: None,
            reference_id: None,
            due_date: None,
            body: Some("Please add materials and dimensions.".into()),
            idempotency_key: None,
        };
        self.rt.block_on(self.svc.create(&p, input)).unwrap().0.id
    }
}

fn admin() -> Principal {
    Principal {
        user: "admin".into(),
        admin: true,
    }
}

fn by(o: &str) -> Author {
    Author {
        org: org(o),
        user: "mallory".into(),
    }
}

/// An honest new conversation started by bolt with acme, then `forge`d before it is sent.
fn forged(kind: Kind, forge: impl FnOnce(&mut AutoCommit)) -> Automerge {
    let n = NewConversation {
        id: new_id(),
        kind,
        subject: "Order PO-1001 is late".into(),
        topic: None,
        reference_id: None,
        due_date: None,
        body: Some("It ships Friday.".into()),
        attachments: Vec::new(),
        message_id: new_id(),
    };
    let c = commands::new_conversation(
        n,
        by("bolt"),
        Role::Supplier,
        &org("acme"),
        Role::Retailer,
        Utc::now(),
    )
    .unwrap();
    let mut d = AutoCommit::new();
    doc::create(&mut d, &c).unwrap();
    d.commit();
    forge(&mut d);
    d.commit();
    Automerge::load(&d.save()).unwrap()
}

fn msg(author: Author, body: &str, at: &str) -> Message {
    Message {
        id: new_id(),
        author,
        body: body.into(),
        sent_at: at.parse().unwrap(),
        attachments: Vec::new(),
    }
}

fn file_ref(sha256: &str, size: u64, name: &str, mime: &str) -> AttachmentRef {
    AttachmentRef {
        sha256: sha256.into(),
        size,
        name: name.into(),
        mime: mime.into(),
    }
}

/// A new message of bolt's carrying `files`.
fn msg_with(files: Vec<AttachmentRef>) -> Message {
    Message {
        attachments: files,
        ..msg(by("bolt"), "see attached", &Utc::now().to_rfc3339())
    }
}

fn first_message(d: &AutoCommit) -> automerge::ObjId {
    let (_, msgs) = d.get(ROOT, "messages").unwrap().unwrap();
    let k = d.keys(&msgs).next().unwrap();
    d.get(&msgs, k.as_str()).unwrap().unwrap().1
}

type Forge = Box<dyn FnOnce(&mut AutoCommit)>;

#[test]
fn every_field_rule_refuses_a_new_conversation_whole() {
    let now = Utc::now().to_rfc3339();
    let cases: Vec<(&str, Kind, Forge, &str)> = vec![
        (
            "a 250,000-character subject with NUL and ESC",
            Kind::Message,
            Box::new(|d| {
                let s = format!("\u{0}\u{1b}[2J{}", "x".repeat(250_000));
                d.put(ROOT, "subject", s).unwrap();
            }),
            "subject",
        ),
        (
            "a subject with an escape sequence",
            Kind::Message,
            Box::new(|d| d.put(ROOT, "subject", "late \u{1b}[31m!").unwrap()),
            "control characters",
        ),
        (
            "a bidi override in the subject",
            Kind::Message,
            Box::new(|d| d.put(ROOT, "subject", "invoice\u{202E}fdp.exe").unwrap()),
            "bidirectional",
        ),
        (
            "a 900 KB message body",
            Kind::Message,
            Box::new(move |d| {
                let m = msg(by("bolt"), &"y".repeat(900_000), &Utc::now().to_rfc3339());
                doc::add_message(d, &m).unwrap();
            }),
            "change",
        ),
        (
            "a 70 KB message body, within the change limit",
            Kind::Message,
            Box::new(move |d| {
                let m = msg(by("bolt"), &"y".repeat(70_000), &Utc::now().to_rfc3339());
                doc::add_message(d, &m).unwrap();
            }),
            "body",
        ),
        (
            "a 3 MB field the schema does not know",
            Kind::Message,
            Box::new(|d| d.put(ROOT, "payload", "z".repeat(3_000_000)).unwrap()),
            "change",
        ),
        (
            "an unknown key",
            Kind::Message,
            Box::new(|d| d.put(ROOT, "x_bank_account", "DE00 1234").unwrap()),
            "not part of the conversation schema",
        ),
        (
            "an unknown key inside a message",
            Kind::Message,
            Box::new(|d| {
                let m = first_message(d);
                d.put(&m, "html", "<script>").unwrap();
            }),
            "not part of the conversation schema",
        ),
        (
            "schema = 99",
            Kind::Message,
            Box::new(|d| d.put(ROOT, "schema", 99_u64).unwrap()),
            "schema version",
        ),
        (
            "a sent_at of 9999-12-31",
            Kind::Message,
            Box::new(|d| {
                let m = msg(by("bolt"), "pinned on top", "9999-12-31T00:00:00Z");
                doc::add_message(d, &m).unwrap();
            }),
            "ahead of this node's clock",
        ),
        (
            "resolved_at on an open conversation",
            Kind::Message,
            Box::new(|d| {
                d.put(ROOT, "resolved_at", automerge::ScalarValue::Timestamp(1))
                    .unwrap()
            }),
            "resolved_at",
        ),
        (
            "task progress on a message",
            Kind::Message,
            Box::new(|d| d.put(ROOT, "progress", "completed").unwrap()),
            "only tasks",
        ),
        (
            "a due date on a message",
            Kind::Message,
            Box::new(|d| d.put(ROOT, "due_date", "2026-12-24").unwrap()),
            "only tasks",
        ),
        (
            "participant roles swapped",
            Kind::Message,
            Box::new(|d| {
                let (_, p) = d.get(ROOT, "participants").unwrap().unwrap();
                d.put(&p, "retailer", "bolt").unwrap();
                d.put(&p, "supplier", "acme").unwrap();
            }),
            "must be the conversation's retailer",
        ),
        (
            "a third org as participant",
            Kind::Message,
            Box::new(|d| {
                let (_, p) = d.get(ROOT, "participants").unwrap().unwrap();
                d.put(&p, "retailer", "zeta").unwrap();
            }),
            "",
        ),
        (
            "a history action outside the vocabulary",
            Kind::Message,
            Box::new(move |d| {
                let e = Event {
                    id: new_id(),
                    at: now.parse().unwrap(),
                    by: by("bolt"),
                    action: "bank account changed".into(),
                    from: None,
                    to: Some("DE00 1234".into()),
                };
                doc::add_event(d, &e).unwrap();
            }),
            "is not one of",
        ),
        (
            "a message written as acme",
            Kind::Message,
            Box::new(|d| {
                let m = msg(
                    by("acme"),
                    "we agree to pay twice",
                    &Utc::now().to_rfc3339(),
                );
                doc::add_message(d, &m).unwrap();
            }),
            "written as acme",
        ),
        (
            "created as acme",
            Kind::Message,
            Box::new(|d| {
                let (_, cb) = d.get(ROOT, "created_by").unwrap().unwrap();
                d.put(&cb, "org", "acme").unwrap();
            }),
            "written as acme",
        ),
        (
            "an author that is no user name",
            Kind::Message,
            Box::new(|d| {
                let m = first_message(d);
                d.put(&m, "user", "mallory\u{202E}nimda").unwrap();
            }),
            "user name",
        ),
        (
            "a subject stored as a number",
            Kind::Message,
            Box::new(|d| d.put(ROOT, "subject", 42_i64).unwrap()),
            "wrong type",
        ),
        (
            "a file whose hash is not a SHA-256",
            Kind::Message,
            Box::new(|d| {
                let f = file_ref("../../etc/passwd", 10, "a.pdf", "application/pdf");
                doc::add_message(d, &msg_with(vec![f])).unwrap();
            }),
            "sha256",
        ),
        (
            "a file named as a path",
            Kind::Message,
            Box::new(|d| {
                let f = file_ref(&"ab".repeat(32), 10, "../../.ssh/id_rsa", "application/pdf");
                doc::add_message(d, &msg_with(vec![f])).unwrap();
            }),
            "name",
        ),
        (
            "a file name with a bidi override",
            Kind::Message,
            Box::new(|d| {
                let f = file_ref(
                    &"ab".repeat(32),
                    10,
                    "invoice\u{202E}fdp.exe",
                    "application/pdf",
                );
                doc::add_message(d, &msg_with(vec![f])).unwrap();
            }),
            "name",
        ),
        (
            "a file served as HTML",
            Kind::Message,
            Box::new(|d| {
                let f = file_ref(&"ab".repeat(32), 10, "a.html", "text/html");
                doc::add_message(d, &msg_with(vec![f])).unwrap();
            }),
            "type",
        ),
        (
            "a file of zero bytes, and one of 2 GiB",
            Kind::Message,
            Box::new(|d| {
                let f = file_ref(&"ab".repeat(32), 0, "a.pdf", "application/pdf");
                let g = file_ref(&"cd".repeat(32), 2 << 30, "b.pdf", "application/pdf");
                doc::add_message(d, &msg_with(vec![f, g])).unwrap();
            }),
            "size",
        ),
        (
            "21 files on one message",
            Kind::Message,
            Box::new(|d| {
                let fs = (0..21)
                    .map(|i| file_ref(&format!("{i:064x}"), 10, "a.pdf", "application/pdf"))
                    .collect();
                doc::add_message(d, &msg_with(fs)).unwrap();
            }),
            "at most 20",
        ),
        (
            "an unknown key in a file reference",
            Kind::Message,
            Box::new(|d| {
                let f = file_ref(&"ab".repeat(32), 10, "a.pdf", "application/pdf");
                doc::add_message(d, &msg_with(vec![f])).unwrap();
                let (_, msgs) = d.get(ROOT, "messages").unwrap().unwrap();
                for k in d.keys(&msgs).collect::<Vec<_>>() {
                    let m = d.get(&msgs, k.as_str()).unwrap().unwrap().1;
                    if let Some((_, list)) = d.get(&m, "attachments").unwrap() {
                        let f = d.get(&list, 0).unwrap().unwrap().1;
                        d.put(&f, "url", "http://evil.example/x").unwrap();
                    }
                }
            }),
            "not part of the conversation schema",
        ),
        (
            "attachments that are not a list",
            Kind::Message,
            Box::new(|d| {
                let m = first_message(d);
                d.put(&m, "attachments", "ab".repeat(32)).unwrap();
            }),
            "attachments",
        ),
    ];
    let node = ours();
    let mut h = Hostile::default();
    let mut forged_ids = Vec::new();
    for (what, kind, forge, want) in cases {
        let id = h.put(forged(kind, forge));
        forged_ids.push((id, what, want));
    }
    // One honest conversation among them still arrives: refusals are per conversation.
    let honest = h.put(forged(Kind::Task, |_| {}));
    let out = node.exchange(&mut h);
    assert!(node.stored(honest), "the honest conversation arrives");
    for (id, what, want) in forged_ids {
        assert!(!node.stored(id), "{what}: stored although forged");
        let reason = out
            .rejected
            .iter()
            .find(|(d, _)| *d == id)
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| panic!("{what}: no refusal reported"));
        assert!(
            reason.contains(want),
            "{what}: refused for {reason:?}, expected {want:?}"
        );
    }
}

#[test]
fn forged_edits_of_an_existing_conversation_change_nothing() {
    let node = ours();
    let id = node.create_with("bolt", "Description too thin");
    let mut h = Hostile::default();
    node.exchange(&mut h);
    let theirs = h
        .get(id)
        .expect("the partner received our conversation")
        .clone();
    let before = node.view(id);
    let edits: Vec<(&str, Forge, &str)> = vec![
        (
            "rewrite our message",
            Box::new(|d| {
                let m = first_message(d);
                d.put(&m, "body", "we never asked for this").unwrap();
            }),
            "altered",
        ),
        (
            "delete our message",
            Box::new(|d| {
                let (_, msgs) = d.get(ROOT, "messages").unwrap().unwrap();
                let k = d.keys(&msgs).next().unwrap();
                d.delete(&msgs, k.as_str()).unwrap();
            }),
            "removed",
        ),
        (
            "rename a conversation it did not start",
            Box::new(|d| doc::set_subject(d, "renamed by bolt").unwrap()),
            "only acme",
        ),
        (
            "reply from the future",
            Box::new(|d| {
                let m = msg(by("bolt"), "first forever", "9999-12-31T00:00:00Z");
                doc::add_message(d, &m).unwrap();
            }),
            "ahead",
        ),
        (
            "resolve in acme's name",
            Box::new(|d| {
                let at = Utc::now();
                doc::set_resolved(d, Some((at, &by("acme")))).unwrap();
            }),
            "written as acme",
        ),
        (
            "hide bytes under an unknown key",
            Box::new(|d| d.put(ROOT, "shadow", "s".repeat(10_000)).unwrap()),
            "not part of the conversation schema",
        ),
        (
            "slip a file into our message",
            Box::new(|d| {
                let m = first_message(d);
                let list = d
                    .put_object(&m, "attachments", automerge::ObjType::List)
                    .unwrap();
                let f = d.insert_object(&list, 0, automerge::ObjType::Map).unwrap();
                d.put(&f, "sha256", "ab".repeat(32)).unwrap();
                d.put(&f, "size", 10_u64).unwrap();
                d.put(&f, "name", "payload.pdf").unwrap();
                d.put(&f, "type", "application/pdf").unwrap();
            }),
            "altered",
        ),
    ];
    for (what, edit, want) in edits {
        let mut d = AutoCommit::load(&theirs.save())
            .unwrap()
            .with_actor(automerge::ActorId::random());
        edit(&mut d);
        d.commit();
        let mut h = Hostile::default();
        h.put(Automerge::load(&d.save()).unwrap());
        let out = node.exchange(&mut h);
        let reason = out
            .rejected
            .iter()
            .find(|(d, _)| *d == id)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{what}: no refusal reported"));
        assert!(reason.contains(want), "{what}: {reason}");
        assert_eq!(node.view(id), before, "{what}: our copy changed");
    }
}

#[test]
fn the_daily_quota_holds() {
    let node = ours_with(StoreOptions {
        peer_quota_bytes_per_day: 40_000,
        ..StoreOptions::default()
    });
    let mut h = Hostile::default();
    let body = "b".repeat(8_000);
    let ids: Vec<Uuid> = (0..20)
        .map(|_| {
            let b = body.clone();
            h.put(forged(Kind::Message, move |d| {
                let m = msg(by("bolt"), &b, &Utc::now().to_rfc3339());
                doc::add_message(d, &m).unwrap();
            }))
        })
        .collect();
    let out = node.exchange(&mut h);
    let stored = ids.iter().filter(|id| node.stored(**id)).count();
    assert!(stored >= 1, "the quota lets the first ones in");
    assert!(stored < 10, "{stored} of 20 stored: the quota did not hold");
    assert!(
        out.rejected.iter().any(|(_, r)| r.contains("per day")),
        "the partner is told about the quota"
    );
    let used: u64 = ids
        .iter()
        .filter(|id| node.stored(**id))
        .map(|id| {
            parley::store::quota::stored_bytes(&node.store.begin_read().unwrap(), id.as_u128())
                .unwrap()
        })
        .sum();
    assert!(used <= 40_000, "stored {used} bytes");
}

#[test]
fn a_partner_learns_nothing_of_our_other_partners() {
    let node = ours();
    for n in 0..3 {
        node.create_with("bolt", &format!("bolt {n}"));
    }
    let zeta: Vec<Uuid> = (0..5)
        .map(|n| node.create_with("zeta", &format!("zeta {n}")))
        .collect();
    let mut h = Hostile::default();
    let first = node.exchange(&mut h);
    assert_eq!(
        first.hello_high,
        Some(3),
        "HELLO counts bolt's changes only"
    );
    assert_eq!(first.announced.len(), 3);
    assert!(first.announced.iter().all(|id| !zeta.contains(id)));
    // A burst of activity with zeta moves nothing bolt can see.
    let p = admin();
    for id in &zeta {
        for n in 0..10 {
            node.rt
                .block_on(node.svc.reply(&p, *id, format!("note {n}"), None, None))
                .unwrap();
        }
    }
    let mut us = Session::new(Config::default());
    let mut them = Session::new(Config::default());
    let hello = node.step(&mut us, |s, host| s.start(host).unwrap());
    let mut highs = Vec::new();
    for f in &hello {
        for r in decode_frame(f).unwrap().records {
            if let Record::Hello { feed_high, .. } = r {
                highs.push(feed_high);
            }
        }
    }
    assert_eq!(
        highs,
        vec![3],
        "50 replies to zeta left bolt's feed where it was"
    );
    let theirs = them.start(&mut h).unwrap();
    for f in theirs {
        node.step(&mut us, |s, host| s.receive(&f, host).unwrap());
    }
    let after_local = node.step(&mut us, |s, host| s.local_changed(host).unwrap());
    for f in after_local {
        for r in decode_frame(&f).unwrap().records {
            if let Record::Feed { entries, .. } = r {
                assert!(entries.is_empty(), "announced {} entries", entries.len());
            }
        }
    }
    // The heads the partner holds are ours: nothing else was ever sent.
    let _: Vec<ChangeHash> = Vec::new();
}

#[test]
fn a_damaged_conversation_does_not_stop_the_others_from_syncing() {
    let node = ours();
    let victim = node.create_with("bolt", "Dented kettles");
    node.reply(victim, "VICTIM-MARKER-0123456789 photos attached");
    let healthy = node.create_with("bolt", "Order PO-1001 is late");
    let mut h = Hostile::default();
    node.exchange(&mut h);
    assert!(h.get(victim).is_some() && h.get(healthy).is_some());
    let node = node.restart(|db| {
        assert!(
            common::bin::flip(db, "VICTIM-MARKER-0123456789") > 0,
            "marker found"
        );
    });
    // The partner replies to both; the healthy one arrives, the damaged one is left alone,
    // and the exchange runs to its end.
    let mut h2 = Hostile::default();
    for id in [victim, healthy] {
        let mut d = AutoCommit::load(&h.get(id).unwrap().save())
            .unwrap()
            .with_actor(automerge::ActorId::random());
        let v = doc::read(&d).unwrap();
        commands::apply(
            &mut d,
            &v,
            &commands::Command::Reply {
                id: new_id(),
                body: "replied at bolt".into(),
                attachments: Vec::new(),
            },
            &by("bolt"),
            Utc::now(),
        )
        .unwrap();
        d.commit();
        h2.put(Automerge::load(&d.save()).unwrap());
    }
    let out = node.exchange(&mut h2);
    let healthy_now = node.view(healthy);
    assert!(
        healthy_now
            .messages
            .iter()
            .any(|m| m.body == "replied at bolt"),
        "the healthy conversation's reply arrived"
    );
    // Damaged here, it is not asked for (nothing could be stored into it) and nothing fails.
    assert!(
        out.rejected.iter().all(|(d, _)| *d != healthy),
        "{:?}",
        out.rejected
    );
    let p = admin();
    assert!(
        node.rt.block_on(node.svc.get(&p, victim)).is_err(),
        "still damaged, never served"
    );
}

/// The first-sync fast path takes a whole document as sent, with one load: whatever bytes a
/// partner sends as a conversation's stored copy are judged by the same write rules, checked
/// to be one verified document, and refused whole (nothing stored) otherwise.
#[test]
fn stored_bytes_sent_as_a_first_sync_are_judged_whole() {
    let node = ours();
    let mut h = Hostile::default();
    let snap = |d: &Automerge| parley_sync::Snapshot {
        bytes: d.save(),
        heads: d.get_heads(),
    };
    // 1. A rule broken inside honest-looking stored bytes: written in our name.
    let in_our_name = forged(Kind::Message, |d| {
        let m = msg(
            by("acme"),
            "acme agrees to pay double",
            &Utc::now().to_rfc3339(),
        );
        doc::add_message(d, &m).unwrap();
    });
    let forged_id = h.put(in_our_name.clone());
    h.snapshots
        .insert(*forged_id.as_bytes(), snap(&in_our_name));
    // 2. Another conversation's bytes sent under this one's id.
    let honest_other = forged(Kind::Message, |_| {});
    let decoy = forged(Kind::Message, |_| {});
    let swapped_id = h.put(decoy.clone());
    h.snapshots
        .insert(*swapped_id.as_bytes(), snap(&honest_other));
    // 3. Its own bytes with one byte flipped.
    let flipped_doc = forged(Kind::Task, |_| {});
    let flipped_id = h.put(flipped_doc.clone());
    let mut bad = snap(&flipped_doc);
    let at = bad.bytes.len() - 5;
    bad.bytes[at] ^= 0x10;
    h.snapshots.insert(*flipped_id.as_bytes(), bad);
    // 4. A whole document followed by bytes that are no chunk, and one followed by another
    //    conversation's genesis change: not one document, so not taken as sent.
    let junk_doc = forged(Kind::Message, |_| {});
    let junk_id = h.put(junk_doc.clone());
    let mut junk = snap(&junk_doc);
    junk.bytes.extend_from_slice(b"\x85\x6f\x4a\x83garbage");
    h.snapshots.insert(*junk_id.as_bytes(), junk);
    let trailing_doc = forged(Kind::Message, |_| {});
    let trailing_id = h.put(trailing_doc.clone());
    let mut tail = snap(&trailing_doc);
    let extra = forged(Kind::Message, |_| {});
    tail.bytes
        .extend_from_slice(extra.get_changes(&[]).last().unwrap().raw_bytes());
    h.snapshots.insert(*trailing_id.as_bytes(), tail);
    // 5. The honest control: its own stored bytes.
    let honest = forged(Kind::Message, |_| {});
    let honest_id = h.put(honest.clone());
    h.snapshots.insert(*honest_id.as_bytes(), snap(&honest));

    let out = node.exchange(&mut h);
    for id in [forged_id, swapped_id, flipped_id] {
        assert!(!node.stored(id), "{id} must not be stored");
        assert!(
            out.rejected.iter().any(|(d, _)| *d == id),
            "{id} refused: {:?}",
            out.rejected
        );
    }
    assert!(
        out.rejected
            .iter()
            .any(|(d, r)| *d == forged_id && r.contains("acme")),
        "{:?}",
        out.rejected
    );
    assert!(
        out.rejected
            .iter()
            .any(|(d, r)| *d == swapped_id && r.contains("id")),
        "{:?}",
        out.rejected
    );
    // Neither is stored as sent: what is stored is what the rules judged, saved afresh, and
    // it loads strictly (the bytes as sent would not).
    let rtx = node.store.begin_read().unwrap();
    for id in [junk_id, trailing_id] {
        if node.stored(id) {
            let loaded = docs::load_automerge(&rtx, id.as_u128()).unwrap().unwrap();
            let (stored, _) = docs::snapshot(&rtx, id.as_u128()).unwrap().unwrap();
            assert_eq!(stored, loaded.save(), "{id} saved afresh, not as sent");
            let _ = node.view(id);
        }
    }
    drop(rtx);
    assert!(node.stored(honest_id), "the honest one arrives");
    assert_eq!(node.view(honest_id).subject, "Order PO-1001 is late");
}

/// A partner knows a conversation's id, so it can compute the id of its team document (and
/// even its genesis change). Whatever it does over the protocol, it gets nothing of it and
/// writes nothing into it: every read and write path of the sync host refuses a team id to a
/// partner, and the real protocol answers its request with UNAVAILABLE.
#[test]
fn a_partner_gets_no_team_document_and_may_not_write_one() {
    use parley::domain::team::{self, team_id};
    let node = ours();
    let conv = node.create_with("bolt", "Thin description on SKU 4411");
    let marker = format!("ZZ-INT-{}", Uuid::new_v4().simple());
    let p = admin();
    node.rt
        .block_on(node.svc.add_note(&p, conv, format!("{marker} chase them")))
        .unwrap();
    node.rt
        .block_on(node.svc.add_user(
            &Principal::operator(),
            "ann",
            Some("a long password".into()),
            false,
        ))
        .unwrap();
    node.rt
        .block_on(node.svc.assign(&p, conv, Some("ann".into())))
        .unwrap();
    let tid = DocId(team_id(conv).to_be_bytes());
    // A team document the partner forges, starting from the public genesis.
    let mut forged = parley::store::team::genesis(conv).unwrap();
    forged.set_actor(automerge::ActorId::random());
    team::put_note(
        &mut forged,
        &team::Note {
            id: Uuid::new_v4(),
            author: "admin".into(),
            body: "FORGED by the partner".into(),
            created_at: Utc::now(),
            edited_at: None,
        },
    )
    .unwrap();
    let forged = forged.document().clone();

    // The host, asked directly as the partner's session would ask it.
    let now = Utc::now();
    let mut host = SyncHost::new(&node.store, &node.scope, now).unwrap();
    assert!(!host.is_shared(tid).unwrap());
    assert!(host.load_doc(tid).unwrap().is_none());
    assert!(host.heads(tid).unwrap().is_none());
    assert_eq!(
        host.has_heads(tid, &forged.get_heads()).unwrap(),
        parley_sync::Presence::Has,
        "nothing to ask a partner for"
    );
    let page = host.feed_since(0, 10_000).unwrap();
    assert!(page.entries.iter().all(|e| e.doc != tid));
    let refused = host.store_doc(DocUpdate {
        doc: tid,
        before: None,
        after: &forged,
        received: Some(&forged.save()),
        prepared: None,
    });
    assert!(
        matches!(refused, Err(StoreError::Rejected(_))),
        "{refused:?}"
    );
    assert!(host.into_pending().is_empty());
    // The same host for another site of ours sees it: the checks above are not vacuous.
    let own = PeerScope {
        peer: peer_of("acme", Role::Retailer),
        me: org("acme"),
    };
    let mut host = SyncHost::new(&node.store, &own, now).unwrap();
    assert!(host.is_shared(tid).unwrap());
    let ours_doc = host.load_doc(tid).unwrap().unwrap();
    assert!(
        serde_json::to_string(
            &ours_doc
                .get_changes(&[])
                .iter()
                .map(|c| c.decode())
                .collect::<Vec<_>>()
        )
        .unwrap()
        .contains(&marker)
    );
    drop(host);

    // Over the real protocol: the partner announces its forgery and asks for ours by id.
    let mut h = Hostile::default();
    h.high += 1;
    h.feed.push((h.high, tid));
    h.docs.insert(tid.0, forged.clone());
    let mut us = Session::new(Config::default());
    let mut them = Session::new(Config::default());
    let mut to_them = node.step(&mut us, |s, host| s.start(host).unwrap());
    let mut to_us = them.start(&mut h).unwrap();
    let mut seen_by_them = Vec::new();
    for _ in 0..1000 {
        if to_them.is_empty() && to_us.is_empty() {
            break;
        }
        seen_by_them.extend(to_them.iter().cloned());
        let mut next = Vec::new();
        for f in std::mem::take(&mut to_them) {
            next.extend(them.receive(&f, &mut h).unwrap());
        }
        for f in std::mem::take(&mut to_us) {
            to_them.extend(node.step(&mut us, |s, host| s.receive(&f, host).unwrap()));
        }
        to_us = next;
    }
    // Then, on a new connection, the partner asks for our team document by id.
    let mut us2 = Session::new(Config::default());
    seen_by_them.extend(node.step(&mut us2, |s, host| s.start(host).unwrap()));
    let mut h2 = Hostile::default();
    let mut them2 = Session::new(Config::default());
    let theirs = them2.start(&mut h2).unwrap();
    let mut answered = Vec::new();
    for f in &theirs {
        answered.extend(node.step(&mut us2, |s, host| s.receive(f, host).unwrap()));
    }
    let mut st = automerge::sync::State::new();
    let ask = {
        use automerge::sync::SyncDoc;
        Automerge::new()
            .generate_sync_message(&mut st)
            .expect("a first sync message")
            .encode()
    };
    let frame = parley_sync::encode_frame(&parley_sync::Frame {
        seq: theirs.len() as u64,
        records: vec![Record::Sync {
            doc: tid,
            message: ask,
        }],
    });
    answered.extend(node.step(&mut us2, |s, host| s.receive(&frame, host).unwrap()));
    for f in seen_by_them.iter().chain(answered.iter()) {
        for r in decode_frame(f).unwrap().records {
            match r {
                Record::Sync { doc, message } => {
                    assert_ne!(
                        doc, tid,
                        "a SYNC record for the team document reached the partner"
                    );
                    let m = automerge::sync::Message::decode(&message).unwrap();
                    assert!(m.changes.is_empty() || doc != tid);
                }
                Record::Feed { entries, .. } => {
                    assert!(
                        entries.iter().all(|e| e.doc != tid),
                        "the team document was announced"
                    )
                }
                _ => {}
            }
        }
    }
    assert!(
        answered.iter().any(|f| decode_frame(f)
            .unwrap()
            .records
            .iter()
            .any(|r| matches!(r, Record::Unavailable { doc } if *doc == tid))),
        "a request for the team document is answered UNAVAILABLE"
    );
    // Nothing of the forgery landed; our notes and assignment are as we wrote them.
    let t = node.rt.block_on(node.svc.team(conv)).unwrap();
    assert_eq!(t.notes.len(), 1);
    assert!(t.notes[0].body.contains(&marker));
    assert_eq!(t.assignee.as_deref(), Some("ann"));
    assert_eq!(
        h.docs[&tid.0].get_heads(),
        forged.get_heads(),
        "we sent the partner nothing of it"
    );
}

fn files_config() -> Config {
    Config {
        blobs: true,
        ..Config::default()
    }
}

fn sha(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// `n` random bytes behind a PDF header.
fn random_pdf(n: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    while v.len() < n {
        v.extend_from_slice(Uuid::new_v4().as_bytes());
    }
    v.truncate(n);
    v
}

impl Ours {
    fn upload(&self, name: &str, bytes: &[u8]) -> String {
        let p = admin();
        self.rt
            .block_on(self.svc.upload(&p, Some(name.into()), bytes))
            .unwrap()
            .sha256
    }

    fn create_with_file(&self, partner: &str, file: &str) -> Uuid {
        let p = admin();
        let input = CreateInput {
            id: None,
            kind: Kind::Message,
            partner: partner.into(),
            subject: format!("for {partner}"),
            topic: None,
            reference_id: None,
            due_date: None,
            body: Some("attached".into()),
            idempotency_key: None,
        };
        self.rt
            .block_on(self.svc.create_with_files(&p, input, &[file.to_string()]))
            .unwrap()
            .0
            .id
    }

    fn file_meta(&self, file: &[u8; 32]) -> Option<parley::store::blobs::BlobMeta> {
        parley::store::blobs::meta(&self.store.begin_read().unwrap(), file).unwrap()
    }

    fn chunks_stored(&self) -> u64 {
        use redb::ReadableTableMetadata;
        let tx = self.store.begin_read().unwrap();
        tx.open_table(parley::store::blobs::BLOB_CHUNKS)
            .unwrap()
            .len()
            .unwrap()
    }
}

#[test]
fn a_partner_gets_only_the_files_we_attached_for_it() {
    let node = ours();
    let (for_zeta, for_bolt) = (random_pdf(600_000), random_pdf(300_000));
    let zeta_file = node.upload("zeta-price-list.pdf", &for_zeta);
    let bolt_file = node.upload("bolt-order.pdf", &for_bolt);
    node.create_with_file("zeta", &zeta_file);
    node.create_with_file("bolt", &bolt_file);
    let (zf, bf) = (sha(&for_zeta), sha(&for_bolt));

    // bolt asks for its own file and for zeta's, whose hash it learnt somehow.
    let mut h = Hostile {
        wants: vec![(zf, for_zeta.len() as u64), (bf, for_bolt.len() as u64)],
        ..Hostile::default()
    };
    let out = node.exchange_with(&mut h, files_config());
    let sent_of =
        |o: &Outcome, f: [u8; 32]| o.chunks_to_them.iter().filter(|(x, _)| *x == f).count();
    assert_eq!(
        sent_of(&out, bf),
        2,
        "bolt gets the file on its own conversation"
    );
    assert_eq!(sent_of(&out, zf), 0, "nothing of zeta's file reaches bolt");
    assert!(out.none_to_them.contains(&zf));

    // bolt writes a message of its own that refers to zeta's file, and asks again: a partner
    // cannot make a file its own by naming it.
    let stolen = forged(Kind::Message, |d| {
        let f = file_ref(
            &zeta_file,
            for_zeta.len() as u64,
            "mine.pdf",
            "application/pdf",
        );
        doc::add_message(d, &msg_with(vec![f])).unwrap();
    });
    let mut h = Hostile {
        wants: vec![(zf, for_zeta.len() as u64)],
        ..Hostile::default()
    };
    let id = h.put(stolen);
    let out = node.exchange_with(&mut h, files_config());
    assert!(
        node.stored(id),
        "the message itself is a partner's right to write"
    );
    assert_eq!(sent_of(&out, zf), 0, "still nothing of zeta's file");
    assert!(out.none_to_them.contains(&zf));
    assert!(h.got.iter().all(|(f, _)| *f != zf));

    // The same asks on a link opened without files are a protocol error, not an answer.
    let mut h = Hostile {
        wants: vec![(bf, for_bolt.len() as u64)],
        ..Hostile::default()
    };
    let mut us = Session::new(Config::default());
    let mut them = Session::new(files_config());
    let our_hello = node.step(&mut us, |s, host| s.start(host).unwrap());
    let mut to_us = them.start(&mut h).unwrap();
    for f in &our_hello {
        to_us.extend(them.receive(f, &mut h).unwrap());
    }
    let mut host = SyncHost::new(&node.store, &node.scope, Utc::now()).unwrap();
    let mut refused = None;
    for f in &to_us {
        if let Err(e) = us.receive(f, &mut host) {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("file records on a link without files end the session");
    assert!(refused.contains("file record"), "{refused}");
}

#[test]
fn a_wrong_file_from_a_partner_is_not_kept() {
    let node = ours();
    // bolt's message names a file by the hash of `real`, and sends `other` for it.
    let real = random_pdf(700_000);
    let other = random_pdf(700_000);
    let named = sha(&real);
    // bolt's message names a file whose bytes do hash right but are an executable.
    let exe = [b"\x7fELF\x02\x01\x01\0".as_slice(), &random_pdf(300_000)].concat();
    let exe_hash = sha(&exe);
    let d = forged(Kind::Message, |d| {
        let f = file_ref(
            &hex::encode(named),
            real.len() as u64,
            "pod.pdf",
            "application/pdf",
        );
        let g = file_ref(
            &hex::encode(exe_hash),
            exe.len() as u64,
            "pod2.pdf",
            "application/pdf",
        );
        doc::add_message(d, &msg_with(vec![f, g])).unwrap();
    });
    let mut h = Hostile::default();
    h.serves.insert(named, other);
    h.serves.insert(exe_hash, exe);
    let id = h.put(d);
    let out = node.exchange_with(&mut h, files_config());
    assert!(node.stored(id));
    let why = |f: [u8; 32]| {
        out.files_refused
            .iter()
            .find(|(x, _)| *x == f)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("no refusal for {}", hex::encode(f)))
    };
    assert!(why(named).contains("hash"), "{}", why(named));
    assert!(why(exe_hash).contains("executable"), "{}", why(exe_hash));
    assert!(
        node.file_meta(&named).is_none(),
        "nothing of the wrong file is kept"
    );
    let refused = node
        .file_meta(&exe_hash)
        .expect("the refusal is remembered");
    assert!(
        refused.refused && !refused.complete && refused.next == 0,
        "{refused:?}"
    );
    assert_eq!(node.chunks_stored(), 0, "no chunk of either is left");
    let d = node.rt.block_on(node.svc.detail(id)).unwrap();
    use parley::service::FileState;
    assert_eq!(
        d.files[&hex::encode(named)],
        FileState::Arriving,
        "wrong bytes: still arriving (another peer may give it right), never shown broken"
    );
    assert_eq!(
        d.files[&hex::encode(exe_hash)],
        FileState::Refused,
        "a kind this node does not take is said so"
    );
    // The next exchange asks again for the one with wrong bytes, never for the refused one.
    let again = node.exchange_with(&mut h, files_config());
    assert!(again.wants_to_them.contains(&named));
    assert!(
        !again.wants_to_them.contains(&exe_hash),
        "a refused file is not fetched again"
    );
}

#[test]
fn a_flood_of_references_to_files_nobody_has_does_not_starve_real_ones() {
    let node = ours();
    // bolt names 1,100 files it never gives, each claimed at 1 GiB and sorting first, and
    // then one real file.
    let real = random_pdf(300_000);
    let real_hash = sha(&real);
    let flood = forged(Kind::Message, |d| {
        for m in 0..55 {
            let files = (0..20)
                .map(|i| {
                    let n = m * 20 + i + 1;
                    file_ref(&format!("{n:064x}"), 1 << 30, "huge.pdf", "application/pdf")
                })
                .collect();
            doc::add_message(d, &msg_with(files)).unwrap();
        }
    });
    let honest = forged(Kind::Message, |d| {
        let f = file_ref(
            &hex::encode(real_hash),
            real.len() as u64,
            "pod.pdf",
            "application/pdf",
        );
        doc::add_message(d, &msg_with(vec![f])).unwrap();
    });
    let mut h = Hostile::default();
    h.serves.insert(real_hash, real.clone());
    let (a, b) = (h.put(flood), h.put(honest));
    node.exchange_with(&mut h, files_config());
    assert!(node.stored(a) && node.stored(b));
    // Each look at the wanted files goes on from where the last stopped: within a few more
    // exchanges (each a poke of the link) the real file is fetched.
    for _ in 0..5 {
        if node.file_meta(&real_hash).is_some_and(|m| m.complete) {
            break;
        }
        node.exchange_with(&mut h, files_config());
    }
    let m = node
        .file_meta(&real_hash)
        .expect("the real file was fetched");
    assert!(m.complete, "{m:?}");
}

#[test]
fn a_fetch_cut_by_one_peer_is_not_finished_with_another_peers_bytes() {
    let mut node = ours();
    let real = random_pdf(700_000);
    let file = sha(&real);
    let d = forged(Kind::Message, |d| {
        let f = file_ref(
            &hex::encode(file),
            real.len() as u64,
            "pod.pdf",
            "application/pdf",
        );
        doc::add_message(d, &msg_with(vec![f])).unwrap();
    });
    // One bolt site sends the first two chunks of something else (each with a right digest),
    // then has nothing more to give.
    let mut liar = Hostile {
        stop_at: Some(2),
        ..Hostile::default()
    };
    liar.serves.insert(file, random_pdf(700_000));
    liar.put(d.clone());
    node.exchange_with(&mut liar, files_config());
    let part = node.file_meta(&file).expect("a partial fetch");
    assert!(!part.complete && part.next == 2, "{part:?}");
    // Another bolt site has the real file: its fetch starts afresh instead of finishing the
    // liar's, and the file is complete and right.
    node.scope.peer = peer_of("bolt", Role::Supplier);
    let mut honest = Hostile::default();
    honest.serves.insert(file, real.clone());
    honest.put(d);
    node.exchange_with(&mut honest, files_config());
    let m = node.file_meta(&file).expect("the file");
    assert!(m.complete, "{m:?}");
    let p = admin();
    let f = node
        .rt
        .block_on(node.svc.file(&hex::encode(file), None))
        .unwrap();
    let mut got = Vec::new();
    for i in 0.. {
        match node.rt.block_on(node.svc.file_chunk(f.sha256, i)).unwrap() {
            Some(c) => got.extend(c),
            None => break,
        }
    }
    assert!(got == real, "byte-identical to the real file");
    let _ = p;
}

/// A conversation of `creator` with `partner`, as its node would have written it at `at`, with
/// one more message by `creator` (carrying `files`) after the first.
fn written_by(
    creator: (&str, Role),
    partner: (&str, Role),
    subject: &str,
    at: chrono::DateTime<Utc>,
    files: Vec<AttachmentRef>,
) -> Automerge {
    let n = NewConversation {
        id: new_id(),
        kind: Kind::Message,
        subject: subject.into(),
        topic: None,
        reference_id: None,
        due_date: None,
        body: Some("first".into()),
        attachments: Vec::new(),
        message_id: new_id(),
    };
    let c = commands::new_conversation(n, by(creator.0), creator.1, &org(partner.0), partner.1, at)
        .unwrap();
    let mut d = AutoCommit::new();
    doc::create(&mut d, &c).unwrap();
    d.commit();
    let m = Message {
        attachments: files,
        ..msg(
            by(creator.0),
            "second",
            &(at + chrono::Duration::seconds(1)).to_rfc3339(),
        )
    };
    doc::add_message(&mut d, &m).unwrap();
    d.commit();
    Automerge::load(&d.save()).unwrap()
}

fn rejected_for(out: &Outcome, id: Uuid, want: &str) -> bool {
    out.rejected
        .iter()
        .any(|(d, r)| *d == id && r.contains(want))
}

/// The recovery window (`peer add --recover`, or the first exchange after a restore) lets
/// the partner give back our own org's past, but only on conversations between us and it,
/// only what is dated before the window opened, never a team document or a file we hold,
/// and only until it is closed (or 14 days pass); then the normal rules hold again.
#[test]
fn a_recovery_window_takes_our_own_past_only_from_that_partner_and_only_once() {
    let node = ours();
    let opened = Utc::now();
    let past = opened - chrono::Duration::hours(3);
    let mut recovering = node.scope.peer.clone();
    recovering.recover_since = Some(opened);
    let put = |p: Peer| {
        node.store
            .write_blocking(move |ctx| parley::store::peers::put_peer(ctx.tx(), &p))
            .unwrap();
    };
    let acme = ("acme", Role::Retailer);
    let bolt = ("bolt", Role::Supplier);
    let ours_with_bolt = || written_by(acme, bolt, "PO 7781", past, Vec::new());

    // No window: a conversation written as acme, from bolt, is refused.
    put(node.scope.peer.clone());
    let mut h = Hostile::default();
    let refused = h.put(ours_with_bolt());
    let out = node.exchange(&mut h);
    assert!(
        rejected_for(&out, refused, "written as acme"),
        "{:?}",
        out.rejected
    );
    assert!(!node.stored(refused));

    // Window open: our past with bolt comes back. Not: our conversation with zeta; one dated
    // after the window opened; one naming, in our name, a file this node holds (from zeta's
    // conversation), which would make us serve it to bolt; a team document.
    put(recovering.clone());
    let held = random_pdf(300_000);
    let zeta_file = node.upload("zeta-price-list.pdf", &held);
    node.create_with_file("zeta", &zeta_file);
    let mut h = Hostile::default();
    let back = h.put(ours_with_bolt());
    let with_zeta = h.put(written_by(
        acme,
        ("zeta", Role::Supplier),
        "Zeta order",
        past,
        Vec::new(),
    ));
    let new_in_our_name = h.put(written_by(
        acme,
        bolt,
        "Written today",
        opened + chrono::Duration::seconds(1),
        Vec::new(),
    ));
    let f = file_ref(
        &zeta_file,
        held.len() as u64,
        "price-list.pdf",
        "application/pdf",
    );
    let naming_held = h.put(written_by(acme, bolt, "With zeta's file", past, vec![f]));
    let lost_file = sha(&random_pdf(1000));
    let f = file_ref(&hex::encode(lost_file), 1000, "lost.pdf", "application/pdf");
    let naming_lost = h.put(written_by(
        acme,
        bolt,
        "With a file lost here",
        past,
        vec![f],
    ));
    let out = node.exchange(&mut h);
    assert!(
        node.stored(back),
        "our own past with bolt is taken: {:?}",
        out.rejected
    );
    assert_eq!(node.view(back).messages.len(), 2);
    assert!(
        !node.stored(with_zeta),
        "bolt may not give us a conversation with zeta"
    );
    assert!(
        rejected_for(&out, new_in_our_name, "gives back only the past"),
        "{:?}",
        out.rejected
    );
    assert!(!node.stored(new_in_our_name));
    assert!(
        rejected_for(&out, naming_held, "which this node holds"),
        "{:?}",
        out.rejected
    );
    assert!(!node.stored(naming_held));
    assert!(
        node.stored(naming_lost),
        "a file we lost may come back: {:?}",
        out.rejected
    );
    let tid = DocId(parley::domain::team::team_id(back).to_be_bytes());
    let mut forged = parley::store::team::genesis(back).unwrap();
    forged.set_actor(automerge::ActorId::random());
    parley::domain::team::put_note(
        &mut forged,
        &parley::domain::team::Note {
            id: Uuid::new_v4(),
            author: "admin".into(),
            body: "FORGED during recovery".into(),
            created_at: Utc::now(),
            edited_at: None,
        },
    )
    .unwrap();
    let forged = forged.document().clone();
    let mut host = SyncHost::new(&node.store, &node.scope, Utc::now()).unwrap();
    let refused_team = host.store_doc(DocUpdate {
        doc: tid,
        before: None,
        after: &forged,
        received: Some(&forged.save()),
        prepared: None,
    });
    assert!(
        matches!(refused_team, Err(StoreError::Rejected(_))),
        "a team document is never taken from a partner: {refused_team:?}"
    );
    assert!(host.into_pending().is_empty());

    // Past the longest a window stays open, it is closed whatever the partner does.
    let mut stale = recovering.clone();
    stale.recover_since = Some(opened - chrono::Duration::days(15));
    put(stale);
    let mut h = Hostile::default();
    let too_late = h.put(ours_with_bolt());
    let out = node.exchange(&mut h);
    assert!(
        rejected_for(&out, too_late, "written as acme"),
        "{:?}",
        out.rejected
    );
    put(recovering);

    // Closed: the same kind of change is refused again.
    let ended = node
        .rt
        .block_on(node.store.end_recovery(node.scope.peer.node_id))
        .unwrap();
    assert!(ended);
    let mut h = Hostile::default();
    let late = h.put(ours_with_bolt());
    let out = node.exchange(&mut h);
    assert!(
        out.rejected
            .iter()
            .any(|(d, r)| *d == late && r.contains("written as acme")),
        "{:?}",
        out.rejected
    );
    assert!(!node.stored(late));
    // And a second end finds nothing open.
    assert!(
        !node
            .rt
            .block_on(node.store.end_recovery(node.scope.peer.node_id))
            .unwrap()
    );
}
