//! The end-to-end harness of these tests is `tempora_testkit::server` (the real binary as a
//! server or worker, the typed API client to talk to it) and `tempora_testkit::pg`
//! (throwaway PostgreSQL servers, as `common::postgres`).
#![allow(dead_code, unused_imports)]

pub use tempora_testkit::pg as postgres;
pub use tempora_testkit::server::*;
