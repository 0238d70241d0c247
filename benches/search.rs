//! Search in message bodies at scale: `PARLEY_BENCH_N` conversations (default 100,000) of
//! `PARLEY_BENCH_MESSAGES` messages each (default 20), then the search box's query for one
//! word, p50/p99, and what the words index costs per message. Results in BENCHMARKS.md.
//!
//! The data set is written straight through the store (documents built in memory, stored and
//! indexed by the same `index::reindex_view` every write passes, 250 conversations per
//! commit): creating two million messages one request at a time would take hours and
//! measure the writer, not search. Bodies are drawn from a vocabulary of 20,000 words with a
//! Zipf-like skew (word `k` about `1/k` as often), so some words are in most conversations and
//! most words in few, as in real text.
//!
//! Run: `cargo bench --bench search`. `PARLEY_BENCH_QUERIES` timed queries per case (default
//! 300), `PARLEY_BENCH_DIR` where the data directory goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::AutoCommit;
use chrono::Utc;
use parley::domain::commands::{self, NewConversation};
use parley::domain::{Author, Kind, Message, OrgId, Role, doc, new_id};
use parley::service::{Clock, InboxFilter, InboxView, Principal, Service};
use parley::store::{Store, StoreOptions, index};
use redb::{ReadableTableMetadata, TableDefinition};

const VOCAB: usize = 20_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift), so every run builds the same data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A word index with P(k) about 1/k (inverse transform of the harmonic CDF).
    fn zipf(&mut self) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        let k = ((VOCAB as f64).ln() * u).exp() as usize;
        k.clamp(1, VOCAB) - 1
    }
}

fn word(k: usize) -> String {
    // Pronounceable, distinct, 6-9 letters: "w" + base-20 syllables.
    const S: [&str; 20] = [
        "ba", "ke", "lo", "mi", "nu", "pa", "re", "si", "to", "vu", "da", "fe", "go", "hi", "ju",
        "ka", "le", "mo", "ni", "po",
    ];
    let mut s = String::from("w");
    let mut k = k + 8000;
    while k > 0 {
        s.push_str(S[k % 20]);
        k /= 20;
    }
    s
}

fn body(r: &mut Rng, words: usize) -> String {
    (0..words)
        .map(|_| word(r.zipf()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn main() {
    let n = env_usize("PARLEY_BENCH_N", 100_000);
    let per = env_usize("PARLEY_BENCH_MESSAGES", 20);
    let queries = env_usize("PARLEY_BENCH_QUERIES", 300);
    let base = std::env::var("PARLEY_BENCH_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let dir = tempfile::tempdir_in(base).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let svc = {
        let _in = rt.enter();
        Service::new(store.clone(), Clock::System)
    };
    let admin = Principal {
        user: "admin".into(),
        admin: true,
    };
    rt.block_on(async {
        svc.init_identity("acme", "Acme Retail", Role::Retailer)
            .await
            .unwrap();
        svc.add_partner(
            &Principal::operator(),
            "bolt",
            "Bolt Supplies",
            Role::Supplier,
        )
        .await
        .unwrap();
        svc.add_user(
            &Principal::operator(),
            "admin",
            Some("correct-horse".into()),
            true,
        )
        .await
        .unwrap();
    });
    let me = OrgId::parse("acme").unwrap();
    let bolt = OrgId::parse("bolt").unwrap();
    println!("loading {n} conversations x {per} messages");
    let load = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut body_bytes = 0usize;
    let batch = 250;
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let mut docs = Vec::with_capacity(end - i);
        for k in i..end {
            // Whole milliseconds: what the document stores, so the view matches it.
            let now =
                chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
            let by = Author {
                org: me.clone(),
                user: "admin".into(),
            };
            let mut c = commands::new_conversation(
                NewConversation {
                    id: new_id(),
                    kind: if k % 3 == 0 {
                        Kind::Task
                    } else {
                        Kind::Message
                    },
                    subject: format!("Conversation {k} about {}", word(rng.zipf())),
                    topic: None,
                    reference_id: Some(format!("PO-{k}")),
                    due_date: None,
                    body: Some(body(&mut rng, 25)),
                    message_id: new_id(),
                    attachments: Vec::new(),
                },
                by.clone(),
                Role::Retailer,
                &bolt,
                Role::Supplier,
                now,
            )
            .unwrap();
            for m in 1..per {
                let author = if m % 2 == 1 {
                    Author {
                        org: bolt.clone(),
                        user: "sam".into(),
                    }
                } else {
                    by.clone()
                };
                c.messages.push(Message {
                    id: new_id(),
                    author,
                    body: body(&mut rng, 25),
                    sent_at: now + chrono::Duration::milliseconds(m as i64),
                    attachments: Vec::new(),
                });
            }
            body_bytes += c.messages.iter().map(|m| m.body.len()).sum::<usize>();
            let mut d = AutoCommit::new();
            doc::create(&mut d, &c).unwrap();
            docs.push((c, d));
        }
        store
            .write_blocking(move |ctx| -> Result<(), parley::store::StoreError> {
                let now = Utc::now();
                for (c, d) in docs {
                    ctx.insert_doc(c.id.as_u128(), d)?;
                    ctx.set_view(c.id.as_u128(), &c);
                    index::reindex_view(ctx, None, &c, Some("admin"), now)?;
                }
                Ok(())
            })
            .unwrap();
        i = end;
        if i % 10_000 == 0 {
            println!("  {i} stored ({:.0} s)", load.elapsed().as_secs_f64());
        }
    }
    let loaded = load.elapsed();
    let messages = n * per;
    let file = std::fs::metadata(dir.path().join("parley.redb"))
        .map(|m| m.len())
        .unwrap_or(0);

    // What the words of bodies take: entries and stored bytes of their table.
    let words_def: TableDefinition<(&str, u128), u32> = TableDefinition::new("text_words");
    let (entries, stored) = {
        let tx = store.begin_read().unwrap();
        let t = tx.open_table(words_def).unwrap();
        (
            t.len().unwrap(),
            t.stats().map(|s| s.stored_bytes()).unwrap_or(0),
        )
    };

    // Which words to ask for: one common, one middling, one rare (by how many conversations
    // hold them), and a prefix.
    let count_of = |w: &str| -> u64 {
        let tx = store.begin_read().unwrap();
        let t = tx.open_table(words_def).unwrap();
        t.range((w, 0u128)..=(w, u128::MAX)).unwrap().count() as u64
    };
    let mut cases = Vec::new();
    for k in [0usize, 30, 300, 3000, 15_000] {
        let w = word(k);
        cases.push((
            format!("`{w}` (word rank {})", k + 1),
            w.clone(),
            count_of(&w),
        ));
    }
    let pre = word(3000);
    let pre = pre[..pre.len() - 1].to_string();
    cases.push((format!("prefix `{pre}`"), pre.clone(), 0));

    println!();
    println!(
        "{n} conversations, {messages} messages ({} MB of body text), loaded in {:.0} s",
        body_bytes / 1_000_000,
        loaded.as_secs_f64()
    );
    println!(
        "file {:.0} MB; text_words: {entries} entries, {:.0} MB stored = {:.1} entries and {:.0} bytes per message",
        file as f64 / 1e6,
        stored as f64 / 1e6,
        entries as f64 / messages as f64,
        stored as f64 / messages as f64
    );
    println!();
    println!(
        "| query (folder=all, page of 50) | conversations with the word | total answered | p50 | p99 |"
    );
    println!("|---|---|---|---|---|");
    let svc = Arc::new(svc);
    for (label, q, holding) in cases {
        let mut times = Vec::with_capacity(queries);
        let mut total = 0;
        for _ in 0..queries {
            let f = InboxFilter {
                q: Some(q.clone()),
                limit: 50,
                ..Default::default()
            };
            let view = InboxView {
                folder: Some(parley::domain::summary::Folder::All),
                sort: Default::default(),
            };
            let t = Instant::now();
            let page = rt.block_on(svc.inbox_view(&admin, f, view)).unwrap();
            times.push(t.elapsed());
            total = page.total;
        }
        let p50 = percentile(&mut times, 0.50);
        let p99 = percentile(&mut times, 0.99);
        println!(
            "| {label} | {} | {total} | {:.2} ms | {:.2} ms |",
            if holding > 0 {
                holding.to_string()
            } else {
                "-".into()
            },
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}
