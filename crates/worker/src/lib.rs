//! `tempora-worker`: claims runs, executes them, captures output and reports results.
//!
//! - [`process`]: runs one attempt as an OS process in its own process group (timeout, cancel,
//!   combined output, no descendant left behind).
//! - [`http`]: runs one attempt of an HTTP job as one request (status, headers and body as its
//!   output).
//! - [`docker`]: runs one attempt of a container job through the Docker Engine API (output,
//!   exit code, timeout and cancel; the container removed whatever happens).
//! - [`artifacts`]: the cache of uploaded scripts and binaries runs name (fetched once, hash
//!   checked, least recently used ones evicted).
//! - [`contain`]: every process a run starts ends with it (a cgroup v2 per run, or an
//!   environment sweep).
//! - `start`: what a job's process is started with, and on which path.
//! - [`spawn`]: starts a job's process straight inside its run's cgroup (`clone3`).
//! - [`source`]: the [`source::RunSource`] seam through which a worker claims work and reports
//!   back. The server's local pool uses the store directly ([`source::StoreSource`]); a remote
//!   `tempora worker` implements the same trait over HTTP.
//! - [`pool`]: the worker pool: claim loop, heartbeats, output shipping, batched results,
//!   graceful shutdown.

pub mod artifacts;
pub mod contain;
pub mod docker;
pub mod http;
pub mod pool;
pub mod process;
pub mod source;
pub mod spawn;
mod start;
