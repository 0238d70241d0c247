//! What the write gate costs per received conversation, against what receiving it costs.
//!
//! A first sync stores each new conversation after one read of the peer's document. With the
//! gate that read is strict (`doc::read_strict`: unknown keys, schema version) and followed by
//! `Gate::admit` (every field, every message). This times both on conversations shaped like
//! the first-sync benchmark's (`benches/sync.rs`: 20 messages each) and prints the gate's
//! extra time per conversation; BENCHMARKS.md relates it to the first sync's time per
//! conversation.
//!
//! Run: `cargo bench --bench gate` (`PARLEY_BENCH_N` conversations, default 10000).

use std::time::Instant;

use automerge::{AutoCommit, Automerge};
use chrono::{Duration, Utc};
use parley::domain::commands::{self, Command, NewConversation};
use parley::domain::policy::{Authority, Gate};
use parley::domain::{Author, Kind, OrgId, Role, doc, new_id};

fn org(s: &str) -> OrgId {
    OrgId::parse(s).expect("org id")
}

fn conversation(n: usize) -> Automerge {
    let start = Utc::now() - Duration::days(30);
    let bolt = Author {
        org: org("bolt"),
        user: "bob".into(),
    };
    let c = commands::new_conversation(
        NewConversation {
            id: new_id(),
            kind: Kind::Task,
            subject: format!("Description too thin for SKU-{n}"),
            topic: None,
            reference_id: Some(format!("CASE-{n}")),
            due_date: None,
            body: Some("Please add materials and dimensions.".into()),
            message_id: new_id(),
            attachments: Vec::new(),
        },
        bolt.clone(),
        Role::Supplier,
        &org("acme"),
        Role::Retailer,
        start,
    )
    .expect("valid conversation");
    let mut d = AutoCommit::new();
    doc::create(&mut d, &c).expect("create");
    d.commit();
    for i in 1..20 {
        let v = doc::read(&d).expect("read");
        // A first sync from a partner brings what that partner wrote (`Authority::Org`).
        let who = &bolt;
        let body = format!("Reply {i}: the kettle's rated power is 2.2 kW, lid hinge steel.");
        commands::apply(
            &mut d,
            &v,
            &Command::Reply {
                id: new_id(),
                body,
                attachments: Vec::new(),
            },
            who,
            start + Duration::minutes(i),
        )
        .expect("reply");
        d.commit();
    }
    Automerge::load(&d.save()).expect("load")
}

fn main() {
    let n: usize = std::env::var("PARLEY_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let docs: Vec<Automerge> = (0..n).map(conversation).collect();
    let me = org("acme");
    let gate = Gate {
        me: &me,
        my_role: Role::Retailer,
        now: Utc::now(),
    };
    let authority = Authority::Org(org("bolt"));
    for round in 0..3 {
        let t = Instant::now();
        for d in &docs {
            std::hint::black_box(doc::read(d).expect("read"));
        }
        let plain = t.elapsed();
        let t = Instant::now();
        for d in &docs {
            let c = doc::read_strict(d).expect("strict read");
            gate.admit(None, &c, &authority).expect("admitted");
            std::hint::black_box(c);
        }
        let gated = t.elapsed();
        let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
        println!(
            "round {round}: {n} conversations x 20 messages: read {:.1} us each, strict read + gate {:.1} us each, gate adds {:.1} us each ({:.2} s per {n})",
            per(plain),
            per(gated),
            per(gated) - per(plain),
            gated.as_secs_f64() - plain.as_secs_f64()
        );
    }
}
