//! Leadership lease and fencing.

use super::*;

/// One leader at a time: the holder renews with the same epoch, another node takes a lapsed
/// lease with the next epoch, and a write fenced with a stale epoch changes nothing.
pub async fn leadership_lease_and_fencing(s: Arc<dyn Store>) {
    let ttl = Duration::from_millis(400);
    let now = Timestamp::now();
    let a = s.acquire_leadership("a", "a:1", ttl, now).await.unwrap();
    assert_eq!(
        (a.node.as_str(), a.address.as_str(), a.epoch),
        ("a", "a:1", 1)
    );
    let b = s.acquire_leadership("b", "b:1", ttl, now).await.unwrap();
    assert_eq!(
        (b.node.as_str(), b.epoch),
        ("a", 1),
        "b cannot take a live lease"
    );
    let again = s.acquire_leadership("a", "a:1", ttl, now).await.unwrap();
    assert_eq!(
        (again.node.as_str(), again.epoch),
        ("a", 1),
        "renewal keeps the epoch"
    );
    // The lease lapses (store clock: wait for real).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let b = s
        .acquire_leadership("b", "b:1", ttl, Timestamp::now())
        .await
        .unwrap();
    assert_eq!((b.node.as_str(), b.epoch), ("b", 2));
    // a's writes are fenced; b's pass.
    s.put_job(job("j", r#""schedule":"@every 1s""#), PutMode::Create, t(0))
        .await
        .unwrap();
    let rec = s.get_job("j").await.unwrap().unwrap();
    let c = rec.next_fire_at.unwrap();
    let req = FireRequest {
        job: "j".into(),
        version: rec.version,
        expected_cursor: c,
        occurrences: plan(&[c]),
        skipped_note: None,
        next_cursor: Some(c + Duration::from_secs(1)),
    };
    let stale = Fence {
        node: "a".into(),
        epoch: 1,
    };
    let r = s.fire(vec![req.clone()], c, Some(&stale)).await;
    assert!(matches!(r, Err(StoreError::Fenced(_))), "{r:?}");
    let r = s.reap_expired(c, Some(&stale)).await;
    assert!(matches!(r, Err(StoreError::Fenced(_))), "{r:?}");
    assert!(s.list_runs("j", None, 10).await.unwrap().is_empty());
    let current = Fence {
        node: "b".into(),
        epoch: 2,
    };
    let out = s.fire(vec![req], c, Some(&current)).await.unwrap();
    assert!(matches!(out[0], FireOutcome::Fired { .. }));
    assert_eq!(s.list_runs("j", None, 10).await.unwrap().len(), 1);
    // Released: taken at once with the next epoch.
    s.release_leadership("b", 2).await.unwrap();
    let a = s
        .acquire_leadership("a", "a:1", ttl, Timestamp::now())
        .await
        .unwrap();
    assert_eq!((a.node.as_str(), a.epoch), ("a", 3));
    let skew = SignedDuration::from_micros(-20_000_125);
    s.node_heartbeat("a", "a:1", Some(skew), Timestamp::now())
        .await
        .unwrap();
    s.node_heartbeat("b", "b:2", None, Timestamp::now())
        .await
        .unwrap();
    let view = s.cluster_view(Timestamp::now()).await.unwrap();
    assert_eq!(view.lease.map(|l| l.epoch), Some(3));
    let nodes: Vec<(String, String, Option<SignedDuration>)> = view
        .nodes
        .into_iter()
        .map(|n| (n.id, n.address, n.clock_offset))
        .collect();
    assert_eq!(
        nodes,
        [
            ("a".to_owned(), "a:1".to_owned(), Some(skew)),
            ("b".to_owned(), "b:2".to_owned(), None)
        ]
    );
    // The next heartbeat replaces the offset.
    s.node_heartbeat("a", "a:1", None, Timestamp::now())
        .await
        .unwrap();
    let view = s.cluster_view(Timestamp::now()).await.unwrap();
    assert_eq!(view.nodes[0].clock_offset, None);
}

/// The store's own clock, where it has one, is the time now (it is what every node follows).
pub async fn reference_clock_is_now(s: Arc<dyn Store>) {
    let before = Timestamp::now();
    let reading = s.reference_time().await.unwrap();
    let after = Timestamp::now();
    if let Some(t) = reading {
        let slack = SignedDuration::from_secs(1);
        assert!(
            t >= before - slack && t <= after + slack,
            "{before} ≤ {t} ≤ {after}"
        );
    }
}
