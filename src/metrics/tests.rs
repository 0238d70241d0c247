use super::*;

fn sample() -> Snapshot {
    Snapshot {
        writer_queue_depth: 3,
        store_file_bytes: Some(4096),
        peers: vec![PeerGauges {
            peer: "p1".into(),
            connected: true,
            last_sync: Some(1_700_000_000.5),
            pending: Some(7),
        }],
        outbox: vec![(Channel::Email, 2), (Channel::Webhook, 0)],
        conversations: vec![("task", "open", 5)],
        tasks_overdue: Some(1),
        resident_memory_bytes: Some(1 << 20),
    }
}

#[test]
fn names_follow_the_conventions_and_openmetrics_ends_with_eof() {
    let m = Metrics::new(StoreMetrics::default());
    m.http.observe("listConversations", "GET", 200, 0.003);
    m.store.commit(0.002, 4, 10);
    m.sync.sent("p1", 100);
    m.notify.failed(Channel::Webhook);
    let out = m.render(sample(), Format::OpenMetrics).unwrap();
    for line in [
        "parley_build_info{version=\"",
        "parley_http_requests_total{operation=\"listConversations\",method=\"GET\",status=\"200\"} 1",
        "parley_http_request_duration_seconds_bucket{le=\"0.005\",operation=\"listConversations\"} 1",
        "parley_store_commit_duration_seconds_count 1",
        "parley_store_commit_batch_jobs_sum 4.0",
        "parley_store_documents_cached 10",
        "parley_store_writer_queue_depth 3",
        "parley_store_file_bytes 4096",
        "parley_peer_connected{peer=\"p1\"} 1",
        "parley_peer_last_sync_timestamp_seconds{peer=\"p1\"} 1700000000.5",
        "parley_peer_pending_changes{peer=\"p1\"} 7",
        "parley_sync_bytes_total{peer=\"p1\",direction=\"sent\"} 100",
        "parley_sync_bytes_total{peer=\"p1\",direction=\"received\"} 0",
        "parley_sync_rejected_changes_total{peer=\"p1\"} 0",
        "parley_outbox_pending{channel=\"email\"} 2",
        "parley_notification_delivery_failures_total{channel=\"webhook\"} 1",
        "parley_notifications_sent_total{channel=\"email\"} 0",
        "parley_conversations{kind=\"task\",state=\"open\"} 5",
        "parley_tasks_overdue 1",
        "process_resident_memory_bytes 1048576",
    ] {
        assert!(out.contains(line), "missing {line} in\n{out}");
    }
    assert!(out.ends_with("# EOF\n"));
    let text = m.render(sample(), Format::Text).unwrap();
    assert!(!text.contains("# EOF"));
    assert!(text.contains("# TYPE parley_http_requests_total counter"));
}

#[test]
fn a_peer_no_longer_paired_is_no_longer_reported() {
    let m = Metrics::new(StoreMetrics::default());
    m.sync.received("gone", 5);
    m.sync.rejected("gone", 1);
    let out = m.render(sample(), Format::OpenMetrics).unwrap();
    assert!(!out.contains("gone"), "{out}");
}

#[test]
fn methods_outside_the_standard_set_share_one_label() {
    assert_eq!(method_label("GET"), "GET");
    assert_eq!(method_label("BREW"), "other");
    assert_eq!(method_label("get"), "other");
}

#[test]
fn accept_picks_the_format() {
    assert_eq!(Format::from_accept(None), Format::OpenMetrics);
    assert_eq!(Format::from_accept(Some("*/*")), Format::OpenMetrics);
    assert_eq!(
        Format::from_accept(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_accept(Some("text/plain;version=0.0.4")),
        Format::Text
    );
}
