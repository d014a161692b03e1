//! The store contract suite against a real SQLite file in a temporary directory.

use std::sync::Arc;

use tempora_store::{Store, StoreOptions};
use tempora_store_sqlite::SqliteStore;

async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).expect("open store");
    (Arc::new(store), dir)
}

tempora_store::store_contract_tests!(fresh);
