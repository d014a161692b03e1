//! The tests' PostgreSQL server (`tempora_testkit::pg`: one per test process, a fresh database
//! per store) and the contract suite's store factory.

#![allow(dead_code, unused_imports)]

use std::sync::Arc;

use tempora_store::{Store, StoreOptions};
use tempora_store_postgres::PostgresStore;
pub use tempora_testkit::pg::{fresh_database, server};

/// A fresh, empty store (the contract suite's factory).
pub async fn fresh_store() -> (Arc<dyn Store>, ()) {
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url, StoreOptions::default())
        .await
        .expect("connect the store");
    (Arc::new(store), ())
}
