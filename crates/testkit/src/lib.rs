//! `tempora-testkit`: the harnesses tempora's test suites share (a dev-dependency only).
//!
//! [`pg`]: throwaway PostgreSQL 15 servers — one per test process with a fresh database per
//! store ([`pg::fresh_database`]), or one per test that the test stops, restarts and configures
//! ([`pg::Postgres`]).

pub mod pg;
