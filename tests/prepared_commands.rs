//! Local commands worked out off the writer thread (`store::warm`): a change prepared on a
//! document that changed meanwhile is never stored over the newer one, a change whose commit
//! failed is never stored later (the kept document is dropped, and would not match the stored
//! heads anyway), a refused command leaves nothing behind, and many writers racing on the same
//! conversations by both paths lose nothing.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use parley::domain::commands::{self, Command, Outcome};
use parley::domain::{Author, Kind, Role, limits};
use parley::service::{Clock, CreateInput, Principal, Service, ServiceError};
use parley::store::{Change, Prepared, Store, StoreError, StoreOptions, index, tables};
use uuid::Uuid;

fn admin() -> Principal {
    Principal {
        user: "admin".into(),
        admin: true,
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap()
}

async fn node(dir: &std::path::Path) -> (Arc<Store>, Arc<Service>) {
    let d = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || {
        Store::open(
            &d,
            StoreOptions {
                doc_cache: 4,
                ..Default::default()
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    let svc = Service::new(store.clone(), Clock::Fixed(now()));
    svc.init_identity("acme", "Acme Retail", Role::Retailer)
        .await
        .unwrap();
    let op = Principal::operator();
    svc.add_user(&op, "admin", Some("password123".into()), true)
        .await
        .unwrap();
    svc.add_partner(&op, "bolt", "Bolt Supplies", Role::Supplier)
        .await
        .unwrap();
    (store, svc)
}

async fn conversation(svc: &Service, subject: &str) -> Uuid {
    let (c, _) = svc
        .create(
            &admin(),
            CreateInput {
                id: None,
                kind: Kind::Task,
                partner: "bolt".into(),
                subject: subject.into(),
                topic: None,
                reference_id: None,
                due_date: None,
                body: Some("Please add the dimensions.".into()),
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
    c.id
}

async fn bodies(svc: &Service, id: Uuid) -> Vec<String> {
    let c = svc.get(&admin(), id).await.unwrap();
    c.messages.into_iter().map(|m| m.body).collect()
}

async fn clean(store: &Store) {
    let r = store.check().await.unwrap();
    assert!(r.damaged.is_empty(), "damaged: {:?}", r.damaged);
    assert!(r.mismatched.is_empty(), "mismatched: {:?}", r.mismatched);
    assert!(r.bad_counts.is_empty(), "bad counts: {:?}", r.bad_counts);
    assert_eq!(r.strays, 0);
}

/// A reply prepared against the document as it was, with a change written meanwhile.
fn reply_as_admin(
    body: &str,
) -> impl FnOnce(
    &mut automerge::AutoCommit,
    &parley::domain::Conversation,
    &mut parley::domain::Conversation,
    &parley::store::Identity,
) -> Change<ServiceError>
+ Send
+ 'static {
    let body = body.to_string();
    move |d, _before, view, ident| {
        let by = Author {
            org: ident.org_id.clone(),
            user: "admin".into(),
        };
        let cmd = Command::Reply {
            id: Uuid::new_v4(),
            body,
            attachments: Vec::new(),
        };
        match commands::apply_to(d, view, &cmd, &by, now()) {
            Ok(Outcome::Changed) => Change::Changed,
            Ok(Outcome::Unchanged) => Change::Unchanged,
            Err(e) => Change::Refused(e.into()),
        }
    }
}

/// The derived rows of a prepared reply, as the service writes them.
fn rows(
    ctx: &mut parley::store::WriteCtx<'_>,
    before: &parley::domain::Conversation,
    after: &parley::domain::Conversation,
    heads: &[automerge::ChangeHash],
) -> Result<u64, ServiceError> {
    let me = ctx.identity()?.org_id.clone();
    Ok(index::index_view(
        ctx.tx(),
        &me,
        Some(before),
        after,
        heads,
        Some("admin"),
        now(),
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_prepared_on_a_document_that_changed_meanwhile_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, svc) = node(dir.path()).await;
    let id = conversation(&svc, "the listing").await;
    // Warm the conversation: the next preparation starts from the kept document.
    svc.reply(&admin(), id, "first".into(), None, None)
        .await
        .unwrap();

    let other = svc.clone();
    let prepare = reply_as_admin("prepared on the old heads");
    let r = store
        .change_prepared(
            id,
            move |d, before, view, ident| {
                // While this runs, a write that takes the writer's own path lands on the same
                // conversation (a keyed reply; a partner's change would do the same).
                tokio::runtime::Handle::current()
                    .block_on(other.reply(
                        &admin(),
                        id,
                        "landed meanwhile".into(),
                        None,
                        Some("k-1".into()),
                    ))
                    .unwrap();
                prepare(d, before, view, ident)
            },
            rows,
        )
        .await
        .unwrap();
    assert!(
        matches!(r, Some(Prepared::Stale)),
        "the writer must refuse it"
    );
    assert_eq!(
        bodies(&svc, id).await,
        ["Please add the dimensions.", "first", "landed meanwhile"],
        "nothing of the stale preparation is stored"
    );
    // The next command starts from what is stored, not from the refused preparation.
    svc.reply(&admin(), id, "after".into(), None, None)
        .await
        .unwrap();
    assert_eq!(
        bodies(&svc, id).await,
        [
            "Please add the dimensions.",
            "first",
            "landed meanwhile",
            "after"
        ]
    );
    clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_commit_failed_is_never_stored_later() {
    let dir = tempfile::tempdir().unwrap();
    let (store, svc) = node(dir.path()).await;
    let id = conversation(&svc, "the order").await;
    svc.reply(&admin(), id, "first".into(), None, None)
        .await
        .unwrap();
    // The write function fails after writing: the whole commit is aborted.
    let r = store
        .change_prepared(
            id,
            reply_as_admin("never committed"),
            |ctx, before, after, heads| -> Result<u64, ServiceError> {
                rows(ctx, before, after, heads)?;
                Err(StoreError::Record("test".into(), "fails after writing".into()).into())
            },
        )
        .await;
    assert!(r.is_err());
    assert_eq!(
        bodies(&svc, id).await,
        ["Please add the dimensions.", "first"]
    );
    svc.reply(&admin(), id, "second".into(), None, None)
        .await
        .unwrap();
    assert_eq!(
        bodies(&svc, id).await,
        ["Please add the dimensions.", "first", "second"],
        "the aborted change was kept in memory and written with the next one"
    );
    clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (store, svc) = node(dir.path()).await;
    let id = conversation(&svc, "the return").await;
    svc.reply(&admin(), id, "first".into(), None, None)
        .await
        .unwrap();
    let too_long = "x".repeat(limits::BODY_BYTES + 1);
    let e = svc
        .reply(&admin(), id, too_long, None, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("body"), "{e}");
    // Resolving twice: the second is already as asked and writes nothing.
    let (_, changed) = svc
        .command_outcome(&admin(), id, Command::Resolve)
        .await
        .unwrap();
    assert!(changed);
    let (_, changed) = svc
        .command_outcome(&admin(), id, Command::Resolve)
        .await
        .unwrap();
    assert!(!changed);
    // A reply to the resolved conversation: the refused body above must not appear with it.
    svc.reply(&admin(), id, "after".into(), None, None)
        .await
        .unwrap();
    let b = bodies(&svc, id).await;
    assert_eq!(b, ["Please add the dimensions.", "first", "after"]);
    // A conversation that does not exist, and a team document's id, are refused.
    let missing = Uuid::new_v4();
    assert!(matches!(
        svc.reply(&admin(), missing, "x".into(), None, None).await,
        Err(ServiceError::NotFound(_))
    ));
    let team = Uuid::from_u128(parley::domain::team::team_id(id));
    assert!(
        svc.reply(&admin(), team, "x".into(), None, None)
            .await
            .is_err(),
        "a team document is not a conversation"
    );
    assert_eq!(b.len(), bodies(&svc, id).await.len());
    clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_writers_on_both_paths_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, svc) = node(dir.path()).await;
    let mut ids = Vec::new();
    // Fewer conversations than writers, so commands to one conversation often meet: those
    // that find it busy go to the writer at once.
    for i in 0..16 {
        ids.push(conversation(&svc, &format!("c{i}")).await);
    }
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for w in 0..24usize {
        let (svc, ids) = (svc.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in 0..25usize {
                let id = ids[(w * 7 + n * 3) % ids.len()];
                let body = format!("w{w} n{n}");
                // Every third one keyed: it runs inside the writer and makes any preparation
                // of the same conversation stale.
                let key = (n % 3 == 0).then(|| format!("w{w}-n{n}"));
                svc.reply(&admin(), id, body.clone(), None, key)
                    .await
                    .unwrap();
                sent.push((id, body));
            }
            sent
        }));
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.extend(t.await.unwrap());
    }
    for id in ids.iter() {
        let b = bodies(&svc, *id).await;
        let got: HashSet<&String> = b.iter().collect();
        assert_eq!(got.len(), b.len(), "a reply stored twice in {id}");
        for (_, body) in sent.iter().filter(|(c, _)| c == id) {
            assert!(got.contains(body), "lost {body:?} in {id}");
        }
        assert_eq!(b.len(), 1 + sent.iter().filter(|(c, _)| c == id).count());
    }
    let (prepared, sent_on) = store.command_paths();
    assert!(
        prepared > 20 && sent_on > 0,
        "both paths taken: {prepared} stored by the prepared way, {sent_on} sent to the writer"
    );
    eprintln!("prepared {prepared}, sent to the writer {sent_on}");
    // The chunks written off the writer never grow past the bound that forces a full save.
    let rtx = store.begin_read().unwrap();
    let chunks = rtx.open_table(tables::CHUNKS).unwrap();
    for id in ids.iter() {
        let k = id.as_u128();
        let n = chunks.range((k, 0)..=(k, u32::MAX)).unwrap().count();
        assert!(n <= 32, "{n} chunks stored for {id}");
    }
    drop((chunks, rtx));
    clean(&store).await;

    // What was stored reads back the same after a reopen.
    let before: Vec<_> = {
        let mut v = Vec::new();
        for id in ids.iter() {
            v.push(bodies(&svc, *id).await);
        }
        v
    };
    drop(svc);
    store.shutdown();
    drop(store);
    let d = dir.path().to_path_buf();
    let store = tokio::task::spawn_blocking(move || Store::open(&d, StoreOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let svc = Service::new(store.clone(), Clock::Fixed(now()));
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(bodies(&svc, *id).await, before[i]);
    }
    clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_due_a_full_save_gets_it_from_the_preparation() {
    let dir = tempfile::tempdir().unwrap();
    let (store, svc) = node(dir.path()).await;
    let id = conversation(&svc, "a long thread").await;
    let mut sent = vec!["Please add the dimensions.".to_string()];
    for n in 0..80 {
        let body = format!("reply {n}");
        svc.reply(&admin(), id, body.clone(), None, None)
            .await
            .unwrap();
        sent.push(body);
    }
    assert_eq!(bodies(&svc, id).await, sent);
    assert_eq!(
        store.command_paths(),
        (80, 0),
        "every reply, including those that folded the document, went the prepared way"
    );
    let rtx = store.begin_read().unwrap();
    let chunks = rtx.open_table(tables::CHUNKS).unwrap();
    let k = id.as_u128();
    let n = chunks.range((k, 0)..=(k, u32::MAX)).unwrap().count();
    assert!(n < 32, "{n} chunks: the full save did not happen");
    drop((chunks, rtx));
    clean(&store).await;
}
