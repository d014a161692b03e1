//! Artifacts: stored once per digest in chunks, read back whole, listed, and not deleted while a
//! job runs them.

use super::*;

/// Put, read (more than one chunk), list, idempotent put, delete refused while a job names it.
pub async fn artifacts_round_trip_and_are_kept_while_used(s: Arc<dyn Store>) {
    let big: Vec<u8> = (0..(crate::artifacts::CHUNK * 2 + 17))
        .map(|i| (i % 251) as u8)
        .collect();
    let sha = "ab".repeat(32);
    assert!(s.artifact_info(&sha).await.unwrap().is_none());
    assert!(s.read_artifact(&sha).await.unwrap().is_none());
    let info = s.put_artifact(&sha, big.clone(), t(1)).await.unwrap();
    assert_eq!(info.size, big.len() as u64);
    assert_eq!(info.created_at, t(1));
    // Again: nothing changes (the first upload's time stays).
    let again = s.put_artifact(&sha, big.clone(), t(5)).await.unwrap();
    assert_eq!(again, info);
    assert_eq!(s.read_artifact(&sha).await.unwrap().unwrap(), big);
    let small = "cd".repeat(32);
    s.put_artifact(&small, b"#!/bin/sh\necho hi\n".to_vec(), t(2))
        .await
        .unwrap();
    let listed = s.list_artifacts(10).await.unwrap();
    assert_eq!(
        listed.iter().map(|a| a.sha256.as_str()).collect::<Vec<_>>(),
        vec![small.as_str(), sha.as_str()],
        "newest first"
    );
    let mut spec = job("uses", "");
    spec.command = String::new();
    spec.artifact = Some(format!("sha256:{sha}"));
    s.put_job(spec, PutMode::Create, t(3)).await.unwrap();
    match s.delete_artifact(&sha).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("uses"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(s.read_artifact(&sha).await.unwrap().is_some());
    s.delete_job("uses", false).await.unwrap();
    assert!(s.delete_artifact(&sha).await.unwrap());
    assert!(!s.delete_artifact(&sha).await.unwrap());
    assert!(s.read_artifact(&sha).await.unwrap().is_none());
    assert_eq!(s.list_artifacts(10).await.unwrap().len(), 1);
}
