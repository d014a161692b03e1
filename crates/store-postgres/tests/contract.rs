//! The store contract suite against a real, throwaway PostgreSQL server (see `support`).

mod support;

tempora_store::store_contract_tests!(support::fresh_store);
