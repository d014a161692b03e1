//! `tempora-core`: the pure domain model of tempora.
//!
//! Nothing in this crate performs I/O. It holds:
//! - [`apply`]: the plan of `tempora apply` (creates, updates with their field changes, prunes,
//!   and every reason a set of job files cannot be applied);
//! - [`auth`]: roles, what each allows, token names and hashes;
//! - [`clock`]: estimating a reference clock (the database's) from timed readings;
//! - [`schedule`]: parsing of every schedule form (Unix cron, Quartz cron, macros, `@every`, `@at`,
//!   ISO 8601 repeating intervals) and the next-fire-time math with DST rules;
//! - [`chronos`]: the Chronos job JSON, task ids and zone ids, mapped to tempora's model;
//! - [`crontab`]: a crontab's entries as job definitions (`tempora import crontab`);
//! - [`dag`]: dependent jobs: cycle detection and readiness;
//! - [`duration`]: the duration syntax shared by job fields and `@every`;
//! - [`job`]: the job specification and its validation;
//! - [`kind`]: a job's kind (command, HTTP, container) and the capabilities workers advertise;
//! - [`container`]: what a container job's container may be;
//! - [`notify`]: a job's notification rules and the events a run's end is;
//! - [`run`]: the run model and its state machine;
//! - [`policy`]: retry/backoff, misfire and concurrency decisions;
//! - [`secret`]: job secrets sealed at rest (AEAD) and masked in output;
//! - [`time`]: time formatting shared by the API and the CLI.

pub mod apply;
pub mod auth;
pub mod chronos;
pub mod clock;
pub mod container;
pub mod crontab;
pub mod dag;
pub mod duration;
pub mod http_job;
pub mod job;
pub mod kind;
pub mod notify;
pub mod policy;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod time;

/// An error in words followed by each of its causes (`outer: inner: root`): a library's own
/// message is often only the outer layer (`error sending request`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
