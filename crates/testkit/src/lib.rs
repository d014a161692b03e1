//! `tempora-testkit`: the harnesses tempora's test suites share (a dev-dependency only).
//!
//! - [`pg`]: throwaway PostgreSQL 15 servers — one per test process with a fresh database per
//!   store ([`pg::fresh_database`]), or one per test that the test stops, restarts and
//!   configures ([`pg::Postgres`]).
//! - [`server`]: the real `tempora` binary as a server or a remote worker, and the typed API
//!   client (`tempora-client`) to talk to it.
//! - [`docker`]: the Docker engine's test image and the containers a test left.
//! - [`certs`]: a CA and certificates made with `openssl` at test time.
//! - [`browser`]: headless Chromium over WebDriver, for the web UI.

pub mod browser;
pub mod certs;
pub mod docker;
pub mod pg;
pub mod server;
