//! What a shared database adds over the contract suite: several stores (nodes) on one
//! database, racing. Fires are exactly once, claims never hand a run to two workers, the
//! migrations are idempotent.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tempora_core::job::JobSpec;
use tempora_core::policy::{Disposition, PlannedOccurrence};
use tempora_core::run::RunOverrides;
use tempora_store::{FireOutcome, FireRequest, PutMode, Store, StoreError, StoreOptions};
use tempora_store_postgres::PostgresStore;

fn job(name: &str, extra: &str) -> JobSpec {
    serde_json::from_str(&format!(r#"{{"name":"{name}","command":"true",{extra}}}"#))
        .expect("job spec")
}

async fn nodes(n: usize) -> (String, Vec<Arc<PostgresStore>>) {
    let url = support::fresh_database().await;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Arc::new(
            PostgresStore::connect(&url, StoreOptions::default())
                .await
                .expect("connect"),
        ));
    }
    (url, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_fires_of_one_occurrence_create_one_run() {
    let (_, stores) = nodes(4).await;
    let now = Timestamp::from_second(1_700_000_000).expect("ts");
    let rec = stores[0]
        .put_job(
            job("j", r#""schedule":"@every 10s","concurrency":"allow""#),
            PutMode::Create,
            now,
        )
        .await
        .expect("put")
        .record;
    let at = rec.next_fire_at.expect("cursor");
    let req = FireRequest {
        job: "j".into(),
        version: rec.version,
        expected_cursor: at,
        occurrences: vec![PlannedOccurrence {
            at,
            disposition: Disposition::Run,
        }],
        skipped_note: None,
        next_cursor: Some(at + Duration::from_secs(10)),
    };
    let mut tasks = Vec::new();
    for s in &stores {
        let s = s.clone();
        let req = req.clone();
        tasks.push(tokio::spawn(
            async move { s.fire(vec![req], at, None).await },
        ));
    }
    let mut fired = 0;
    for t in tasks {
        match t.await.expect("task").expect("fire").remove(0) {
            FireOutcome::Fired { queued, .. } => fired += queued.len(),
            FireOutcome::Stale { .. } => {}
        }
    }
    assert_eq!(fired, 1);
    assert_eq!(
        stores[1]
            .list_runs("j", None, 10)
            .await
            .expect("runs")
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_share_a_run() {
    let (_, stores) = nodes(4).await;
    let t0 = Timestamp::from_second(1_700_000_000).expect("ts");
    stores[0]
        .put_job(job("j", r#""concurrency":"allow""#), PutMode::Create, t0)
        .await
        .expect("put");
    let mut ids = HashSet::new();
    for _ in 0..60 {
        let run = stores[0]
            .trigger_run("j", RunOverrides::default(), false, t0)
            .await
            .expect("trigger");
        ids.insert(run.id);
    }
    let mut tasks = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = s
                    .claim_runs(
                        &format!("w{i}"),
                        3,
                        Timestamp::now(),
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("claim");
                if c.is_empty() {
                    return mine;
                }
                mine.extend(c.into_iter().map(|c| c.run.id));
            }
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.expect("task"));
    }
    let unique: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(unique.len(), claimed.len(), "a run was claimed twice");
    assert_eq!(unique, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_job_succeed_once() {
    let (_, stores) = nodes(4).await;
    let now = Timestamp::from_second(1_700_000_000).expect("ts");
    let mut tasks = Vec::new();
    for s in &stores {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.put_job(job("x", r#""description":"d""#), PutMode::Create, now)
                .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => created += 1,
            Err(StoreError::JobExists(_)) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(created, 1);
}

/// Nodes starting together, each with the same admin token file, store it once and leave it
/// working (a node's "revoke the old `admin` token" once revoked the token another node had just
/// stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_ensuring_one_token_together_leave_it_active() {
    use tempora_core::auth::{Role, token_hash};
    for round in 0..10 {
        let (_, stores) = nodes(4).await;
        let now = Timestamp::from_second(1_700_000_000).expect("ts");
        let secret = format!("the-admin-token-of-round-{round}");
        let mut tasks = Vec::new();
        for (i, s) in stores.iter().enumerate() {
            let s = s.clone();
            let token = tempora_store::NewToken {
                id: format!("tok_node{i}"),
                name: "admin".into(),
                role: Role::Admin,
                hash: token_hash(&secret),
                created_at: now,
                expires_at: None,
                created_by: None,
            };
            tasks.push(tokio::spawn(async move { s.ensure_token(token).await }));
        }
        let mut stored = 0;
        for t in tasks {
            stored += usize::from(t.await.expect("task").expect("ensure"));
        }
        assert_eq!(stored, 1, "round {round}");
        let t = stores[0]
            .token_by_hash(&token_hash(&secret))
            .await
            .expect("read")
            .expect("stored");
        assert!(
            t.active(now),
            "round {round}: the admin token was revoked: {t:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_are_idempotent_and_safe_to_race() {
    let url = support::fresh_database().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            PostgresStore::connect(&url, StoreOptions::default()).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("connect and migrate");
    }
    let s = PostgresStore::connect(&url, StoreOptions::default())
        .await
        .expect("reconnect");
    s.ping().await.expect("ping");
}

#[tokio::test]
async fn unreachable_server_is_a_connect_error_and_timestamps_round_trip() {
    let err = PostgresStore::connect(
        "postgres://postgres@127.0.0.1:1/none?connect_timeout=2",
        StoreOptions::default(),
    )
    .await;
    assert!(err.is_err());
    let (_, stores) = nodes(1).await;
    // Microsecond precision survives the round trip.
    let now = Timestamp::from_microsecond(1_700_000_000_123_457).expect("ts");
    let rec = stores[0]
        .put_job(job("j", r#""description":"d""#), PutMode::Create, now)
        .await
        .expect("put")
        .record;
    assert_eq!(rec.created_at, now);
    let run = stores[0]
        .trigger_run("j", RunOverrides::default(), false, now)
        .await
        .expect("trigger");
    assert_eq!(run.queued_at, now);
}

#[tokio::test]
async fn killed_connections_are_unavailable_then_replaced() {
    let url = support::fresh_database().await;
    let store = PostgresStore::connect(&url, StoreOptions::default())
        .await
        .expect("connect");
    store.ping().await.expect("ping");
    let db = url.rsplit('/').next().expect("db name").to_owned();
    let (admin, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            support::server().port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("admin");
    tokio::spawn(conn);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&db],
        )
        .await
        .expect("terminate");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The pooled connection is gone: either this call sees it closed and reconnects, or it
    // fails as unavailable; the next one works on a new connection.
    match store.ping().await {
        Ok(()) | Err(StoreError::Unavailable(_)) => {}
        Err(e) => panic!("expected unavailable, got {e:?}"),
    }
    store.ping().await.expect("reconnected");
}
