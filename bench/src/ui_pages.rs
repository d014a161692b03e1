//! The web UI's pages on a large store (part of `--scale N`): signed in as a browser is (a
//! session cookie), each page is asked for 20 times one after another and timed from request to
//! last byte — the server's time plus a loopback round trip.

use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

/// How often each page is asked for.
const TIMES: usize = 20;

/// Sign in at `base` and time the UI's pages; `job` names a stored job. Prints one line per
/// page and answers `{page: {p50, p99, max}}` in ms.
pub async fn measure(base: &str, job: &str) -> anyhow::Result<Value> {
    let token: String = crate::auth::token()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    // The UI reads the session cookie only (the client's bearer token is ignored there); no
    // redirect is followed, so a refused session is a failure, not the sign-in page.
    let browser = crate::auth::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let signed_in = browser
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&next=/"))
        .send()
        .await?;
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("signing in to the web UI gave no session cookie")?
        .to_owned();
    let pages = [
        ("jobs overview", "/".to_owned()),
        (
            "overview, search by name",
            "/ui/jobs/rows?q=scale-00000&state=&label=&owner=".to_owned(),
        ),
        (
            "overview, paused only (none: scans)",
            "/ui/jobs/rows?q=&state=paused&label=&owner=".to_owned(),
        ),
        ("a job's page", format!("/ui/jobs/{job}")),
        ("the job form (edit)", format!("/ui/jobs/{job}/edit")),
        ("graph", "/ui/graph".to_owned()),
        ("cluster", "/ui/cluster".to_owned()),
        ("audit log", "/ui/audit".to_owned()),
    ];
    let mut out = Map::new();
    println!("web UI pages, {TIMES} requests each (request to last byte):");
    for (name, path) in pages {
        let mut ms = Vec::with_capacity(TIMES);
        for _ in 0..TIMES {
            let t = Instant::now();
            let r = browser
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            let status = r.status();
            let _ = r.bytes().await?;
            if !status.is_success() {
                bail!("GET {path}: {status}");
            }
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99, max) = (ms[TIMES / 2], ms[(TIMES * 99) / 100], ms[TIMES - 1]);
        println!("  {name:<38} p50 {p50:7.2} ms  p99 {p99:7.2}  max {max:7.2}   {path}");
        out.insert(name.to_owned(), json!({"p50": p50, "p99": p99, "max": max}));
    }
    Ok(Value::Object(out))
}
