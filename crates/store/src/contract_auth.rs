//! The store contract for access control: tokens, worker bindings and the audit log. Run by
//! [`store_contract_tests!`](crate::store_contract_tests) with the rest of the contract.

use std::sync::Arc;

use jiff::{Timestamp, ToSpan};
use tempora_core::auth::{Role, token_hash};

use crate::{AuditQuery, NewAudit, NewToken, Store, StoreError};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_699_999_200 + s).unwrap()
}

fn token(id: &str, name: &str, role: Role, at: Timestamp) -> NewToken {
    NewToken {
        id: id.into(),
        name: name.into(),
        role,
        hash: token_hash(&format!("secret-of-{id}")),
        created_at: at,
        expires_at: None,
        created_by: Some("admin".into()),
    }
}

/// Tokens: create, find by hash, unique active names, revoke by id or name, expiry frees a
/// name, last use recorded.
pub async fn tokens_create_find_revoke(s: Arc<dyn Store>) {
    let ci = s
        .create_token(token("tok_1", "ci", Role::Editor, t(0)))
        .await
        .unwrap();
    assert_eq!((ci.name.as_str(), ci.role), ("ci", Role::Editor));
    assert!(ci.active(t(1)));
    let found = s
        .token_by_hash(&token_hash("secret-of-tok_1"))
        .await
        .unwrap()
        .expect("found by hash");
    assert_eq!(found.id, "tok_1");
    assert!(
        s.token_by_hash(&token_hash("nope"))
            .await
            .unwrap()
            .is_none()
    );
    // The name is taken while the token works.
    let dup = s
        .create_token(token("tok_2", "ci", Role::Viewer, t(1)))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    // Last use.
    s.touch_token("tok_1", t(5)).await.unwrap();
    s.touch_token("tok_1", t(3)).await.unwrap();
    let listed = s.list_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(t(5)), "never moves back");
    // Revoke by name; then the name is free, and revoking again finds nothing.
    let revoked = s.revoke_token("ci", t(10)).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(t(10)));
    assert!(!revoked.active(t(11)));
    let again = s.revoke_token("ci", t(11)).await;
    assert!(
        matches!(again, Err(StoreError::TokenNotFound(_))),
        "{again:?}"
    );
    s.create_token(token("tok_3", "ci", Role::Viewer, t(12)))
        .await
        .unwrap();
    // Revoke by id.
    s.revoke_token("tok_3", t(13)).await.unwrap();
    // An expired token gives its name up to a new one.
    let mut short = token("tok_4", "short", Role::Viewer, t(20));
    short.expires_at = Some(t(30));
    let short = s.create_token(short).await.unwrap();
    assert!(short.active(t(29)) && !short.active(t(30)));
    s.create_token(token("tok_5", "short", Role::Viewer, t(31)))
        .await
        .unwrap();
    let all = s.list_tokens().await.unwrap();
    assert_eq!(
        all.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["tok_1", "tok_3", "tok_4", "tok_5"]
    );
    assert!(all[2].revoked_at.is_some(), "the expired one was retired");
}

/// Bootstrap stores the first token only; `ensure_token` adds an operator's token once,
/// replacing an active token of the same name, and never brings a revoked one back.
pub async fn token_bootstrap_and_ensure(s: Arc<dyn Store>) {
    assert!(
        s.bootstrap_token(token("tok_a", "admin", Role::Admin, t(0)))
            .await
            .unwrap()
    );
    assert!(
        !s.bootstrap_token(token("tok_b", "admin", Role::Admin, t(1)))
            .await
            .unwrap(),
        "only into an empty store"
    );
    // The same file again: nothing to do.
    assert!(
        !s.ensure_token(token("tok_a", "admin", Role::Admin, t(2)))
            .await
            .unwrap()
    );
    // A new token in the file replaces the active one of that name.
    assert!(
        s.ensure_token(token("tok_c", "admin", Role::Admin, t(3)))
            .await
            .unwrap()
    );
    let all = s.list_tokens().await.unwrap();
    let a = all.iter().find(|t| t.id == "tok_a").unwrap();
    let c = all.iter().find(|t| t.id == "tok_c").unwrap();
    assert_eq!(a.revoked_at, Some(t(3)));
    assert!(c.active(t(4)));
    // A revoked token stays revoked when its file is read again.
    s.revoke_token("tok_c", t(5)).await.unwrap();
    assert!(
        !s.ensure_token(token("tok_c", "admin", Role::Admin, t(6)))
            .await
            .unwrap()
    );
    let c = s
        .token_by_hash(&token_hash("secret-of-tok_c"))
        .await
        .unwrap()
        .unwrap();
    assert!(!c.active(t(7)));
}

/// A worker id belongs to the token that registered it until that token stops working.
pub async fn worker_ids_are_bound_to_their_token(s: Arc<dyn Store>) {
    for (id, name) in [("tok_w1", "w1"), ("tok_w2", "w2")] {
        s.create_token(token(id, name, Role::Worker, t(0)))
            .await
            .unwrap();
    }
    assert_eq!(s.worker_token("host-a").await.unwrap(), None);
    assert!(s.bind_worker("host-a", "tok_w1", t(1)).await.unwrap());
    assert!(
        s.bind_worker("host-a", "tok_w1", t(2)).await.unwrap(),
        "again"
    );
    assert!(
        !s.bind_worker("host-a", "tok_w2", t(3)).await.unwrap(),
        "taken"
    );
    assert_eq!(
        s.worker_token("host-a").await.unwrap().as_deref(),
        Some("tok_w1")
    );
    // Once w1's token is revoked, another may take the id over.
    s.revoke_token("w1", t(4)).await.unwrap();
    assert!(s.bind_worker("host-a", "tok_w2", t(5)).await.unwrap());
    assert_eq!(
        s.worker_token("host-a").await.unwrap().as_deref(),
        Some("tok_w2")
    );
}

/// The audit log: appended, read newest first, paged, filtered by job, pruned by age.
pub async fn audit_log_appends_pages_filters_and_prunes(s: Arc<dyn Store>) {
    for i in 0..5i64 {
        s.append_audit(NewAudit {
            at: t(0) + (i * 10).seconds(),
            token_id: "tok_1".into(),
            token_name: "ci".into(),
            role: Role::Editor,
            remote: "127.0.0.1:5000".into(),
            action: "job.put".into(),
            target: format!("/api/v1/jobs/j{}", i % 2),
            job: Some(format!("j{}", i % 2)),
            spec_hash: Some(format!("hash{i}")),
            detail: (i == 4).then(|| "env: A".to_owned()),
            status: 200,
        })
        .await
        .unwrap();
    }
    let q = |limit, before, job: Option<&str>| AuditQuery {
        limit,
        before,
        job: job.map(str::to_owned),
    };
    let all = s.list_audit(q(100, None, None)).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(all[0].entry.spec_hash.as_deref(), Some("hash4"));
    assert_eq!(all[0].entry.detail.as_deref(), Some("env: A"));
    assert_eq!(all[1].entry.detail, None);
    let page = s.list_audit(q(2, Some(all[1].id), None)).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        [all[2].id, all[3].id]
    );
    let j1 = s.list_audit(q(100, None, Some("j1"))).await.unwrap();
    assert_eq!(j1.len(), 2);
    assert!(j1.iter().all(|e| e.entry.job.as_deref() == Some("j1")));
    // Entries before t(25): 0, 10, 20 — at most 2 per call.
    assert_eq!(s.prune_audit(t(25), 2).await.unwrap(), 2);
    assert_eq!(s.prune_audit(t(25), 2).await.unwrap(), 1);
    assert_eq!(s.prune_audit(t(25), 2).await.unwrap(), 0);
    assert_eq!(s.list_audit(q(100, None, None)).await.unwrap().len(), 2);
}
