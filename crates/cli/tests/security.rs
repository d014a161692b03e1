//! The security suite, against the real binary: route by route from the one role table
//! (`tempora_http::auth::table`), a request without a token is a 401, a token below the
//! route's role a 403 naming the role, and a token at the role succeeds. Then the attacks the
//! access layer exists for: forged worker calls, JSON sent as `text/plain` or from a page of
//! another origin, CORS, malformed credentials, revoked and expired tokens on every node of a
//! cluster, and the audit log of a session (the bootstrap file: `admin_token.rs`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Server, request};
use serde_json::{Value, json};
use tempora_core::auth::Role;
use tempora_http::auth::table::{Access, BodyKind, all_routes};
use tempora_testkit::pg;

/// A request with a bearer token (or none), a JSON body when given; → (status, head, JSON).
fn call(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, Value) {
    s.request_as(method, path, token, body)
}

/// A request as the admin ([`common::admin_token`]).
fn admin(s: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, String, Value) {
    call(s, method, path, Some(common::admin_token()), body)
}

/// Make a token as the admin; returns its secret.
fn make_token(s: &Server, name: &str, role: &str) -> String {
    let (st, _, v) = admin(
        s,
        "POST",
        "/api/v1/tokens",
        Some(&json!({"name": name, "role": role})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["role"], role);
    assert!(v.get("hash").is_none(), "{v}");
    v["token"].as_str().expect("secret").to_owned()
}

/// The concrete path and body used to call `path` (a template) at its role, so that the call
/// succeeds: each route gets fixtures of its own.
fn concrete(method: &str, template: &str, fx: &Fixtures) -> (String, Option<Value>) {
    let chronos_prefix = ["/v1/scheduler", "/scheduler"]
        .into_iter()
        .find(|p| template.starts_with(&format!("{p}/")));
    let tag = if chronos_prefix == Some("/v1/scheduler") {
        "v1"
    } else {
        "v0"
    };
    let name = match (method, template) {
        ("DELETE", "/api/v1/jobs/{name}") => "sec-delete-me".to_owned(),
        ("DELETE", t) if t.ends_with("/job/{name}") => format!("sec-chronos-del-{tag}"),
        _ => "sec-job".to_owned(),
    };
    let path = template
        .replace("{name}", &name)
        .replace("{id}", &fx.id_for(template))
        .replace("{run}", &fx.remote_run.to_string())
        .replace("{token}", "sec-made")
        .replace("{task_id}", "ct:0:0:sec-job:")
        .replace("{percentile}", "99thPercentile")
        .replace(
            "{sha256}",
            if method == "DELETE" {
                &fx.deletable
            } else {
                &fx.kept
            },
        )
        .replace(
            "{file}",
            if template.starts_with("/ui/") {
                "htmx.min.js"
            } else {
                "swagger-initializer.js"
            },
        );
    let worker = json!({"id": "sec-w", "labels": {"pool": "sec"}, "slots": 1, "version": "test"});
    let body = match (method, template) {
        ("POST", "/api/v1/jobs") => Some(json!({"name": "sec-created", "command": "true"})),
        ("POST", "/api/v1/apply" | "/api/v1/apply/plan") => {
            Some(json!({"jobs": [{"name": "sec-applied", "command": "true"}]}))
        }
        ("PUT", "/api/v1/jobs/{name}") => {
            Some(json!({"command": "true", "paused": true, "schedule": "0 0 1 1 *"}))
        }
        ("POST", "/api/v1/jobs/{name}/runs") => Some(json!({})),
        ("POST", "/api/v1/jobs/{name}/backfill") => Some(json!({
            "from": "2020-01-01T00:00:00Z", "to": "2022-01-01T00:00:00Z", "dry_run": true})),
        ("POST", "/api/v1/schedules/preview") => Some(json!({"schedule": "@hourly"})),
        ("POST", "/api/v1/workers/register") => Some(worker),
        ("POST", "/api/v1/workers/{id}/claim") => {
            Some(json!({"worker": worker, "max": 1, "wait_ms": 2000}))
        }
        ("POST", "/api/v1/workers/{id}/heartbeat") => {
            Some(json!({"worker": worker, "runs": [fx.remote_run]}))
        }
        ("POST", "/api/v1/workers/{id}/finish") => Some(json!({"results": []})),
        ("POST", "/api/v1/tokens") => Some(json!({"name": "sec-made", "role": "viewer"})),
        (_, t) if t.ends_with("/iso8601") => Some(json!({
            "name": format!("sec-chronos-{tag}-{method}"), "command": "true",
            "schedule": "R/2030-01-01T00:00:00Z/P1D"})),
        (_, t) if t.ends_with("/dependency") => Some(json!({
            "name": format!("sec-chronos-dep-{tag}-{method}"), "command": "true",
            "parents": ["sec-job"]})),
        (_, t) if t.ends_with("/task/{task_id}") => Some(json!({"statusCode": 0})),
        _ => None,
    };
    (path, body)
}

struct Fixtures {
    sleeper_run: i64,
    remote_run: i64,
    /// Artifacts: one to read, one to delete.
    kept: String,
    deletable: String,
}

impl Fixtures {
    fn id_for(&self, template: &str) -> String {
        if template.starts_with("/api/v1/workers/") {
            "sec-w".to_owned()
        } else if template.ends_with("/cancel") {
            self.sleeper_run.to_string()
        } else {
            self.remote_run.to_string()
        }
    }
}

#[test]
fn every_route_needs_its_role_and_no_less() {
    let s = Server::start(&[]);
    let admin = common::admin_token();
    let mut tokens: BTreeMap<Role, String> = BTreeMap::new();
    for role in Role::ALL {
        let secret = if role == Role::Admin {
            admin.to_owned()
        } else {
            make_token(&s, &format!("sec-{role}"), role.as_str())
        };
        tokens.insert(role, secret);
    }
    // Fixtures.
    s.put_job(
        "sec-job",
        json!({"command": "true", "concurrency": "allow", "owner": "sec@example.com",
               "schedule": "0 0 1 1 *"}),
    );
    s.put_job("sec-delete-me", json!({"command": "true"}));
    for tag in ["v0", "v1"] {
        s.put_job(
            &format!("sec-chronos-del-{tag}"),
            json!({"command": "true"}),
        );
    }
    s.put_job("sec-sleep", json!({"command": "sleep 30"}));
    let sleeper_run = s.trigger("sec-sleep")["id"].as_i64().unwrap();
    s.wait_for(Duration::from_secs(10), "the sleeper to run", || {
        (s.run(sleeper_run)["state"] == "running").then_some(())
    });
    let artifact = |content: &str| {
        let (st, _, body) = request(
            "POST",
            &format!("{}/api/v1/artifacts", s.url()),
            &[
                ("Authorization", &format!("Bearer {admin}")),
                ("Content-Type", "application/octet-stream"),
            ],
            content,
        )
        .unwrap();
        assert_eq!(st, 201, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let kept = artifact("#!/bin/sh\necho kept\n");
    // The remote worker's run names an artifact: the worker may fetch that one.
    s.put_job(
        "sec-remote",
        json!({"artifact": format!("sha256:{kept}"), "selector": {"pool": "sec"}}),
    );
    let remote_run = s.trigger("sec-remote")["id"].as_i64().unwrap();
    let fx = Fixtures {
        sleeper_run,
        remote_run,
        kept,
        deletable: artifact("#!/bin/sh\necho deletable\n"),
    };

    let routes = all_routes();
    assert!(routes.len() > 50, "{} routes", routes.len());
    let mut checked = 0;
    for (template, route) in &routes {
        let (path, body) = concrete(route.method, template, &fx);
        let what = format!("{} {path}", route.method);
        let needed = match route.access {
            Access::Public => {
                let (st, _, v) = call(&s, route.method, &path, None, None);
                // `/api/docs` sends the browser to Swagger UI's page at `/api/docs/`.
                let ok = if path == "/api/docs" { 308 } else { 200 };
                assert_eq!(st, ok, "{what} is public: {v}");
                continue;
            }
            // The web UI's sign-in page and files: open; signing in is the UI tests' (ui.rs).
            Access::UiPublic => {
                let (st, _, v) = call(&s, route.method, &path, None, None);
                let ok = if route.method == "GET" { 200 } else { 400 };
                assert_eq!(st, ok, "{what} is public: {v}");
                continue;
            }
            // A UI page without a session: a page goes to sign in, a change is a 401; roles
            // and CSRF on the UI are the UI tests' (ui.rs).
            Access::Ui(_) => {
                let (st, head, _) = call(&s, route.method, &path, None, None);
                if route.method == "GET" {
                    assert_eq!(st, 303, "{what} without a session");
                    assert!(head.contains("/ui/login?next="), "{what}: {head}");
                } else {
                    assert_eq!(st, 401, "{what} without a session");
                }
                // A token is not a session: the UI takes none (a browser sends cached Basic
                // credentials by itself, which would let any page make changes).
                let (st, _, _) = call(&s, route.method, &path, Some(&tokens[&Role::Admin]), None);
                assert!(st == 303 || st == 401, "{what} with a bearer token: {st}");
                continue;
            }
            Access::Metrics => Role::Viewer,
            Access::Role(r) => r,
            Access::AnyToken => panic!("{what}: no route of the table is open to any token"),
        };
        // No credential: 401 with a challenge and the usual error body.
        let (st, head, v) = call(&s, route.method, &path, None, body.as_ref());
        assert_eq!(st, 401, "{what} without a token: {v}");
        assert!(
            head.to_ascii_lowercase().contains("www-authenticate:"),
            "{what}: {head}"
        );
        assert_eq!(v["error"]["code"], "unauthorized", "{what}");
        // Every role that does not allow it: 403 naming the role needed.
        for (role, secret) in &tokens {
            if role.allows(needed) {
                continue;
            }
            let (st, _, v) = call(&s, route.method, &path, Some(secret), body.as_ref());
            assert_eq!(st, 403, "{what} as {role}: {v}");
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains(&format!("`{needed}`")),
                "{what} as {role}: {msg}"
            );
        }
        // At the role: it works (the one exception answers a domain error, never 401/403).
        let (st, _, v) = call(
            &s,
            route.method,
            &path,
            Some(&tokens[&needed]),
            body.as_ref(),
        );
        if template.ends_with("/task/{task_id}") {
            assert_eq!(st, 400, "{what} as {needed}: {v}");
        } else {
            assert!(st < 300, "{what} as {needed}: {st} {v}");
        }
        if route.body == BodyKind::Json && body.is_some() {
            checked += 1;
        }
        checked += 1;
    }
    println!("{checked} route checks over {} routes", routes.len());
    // HEAD is a GET: it needs the GET's role (and is open where the GET is).
    let (st, _, _) = call(
        &s,
        "HEAD",
        "/api/v1/tokens",
        Some(&tokens[&Role::Viewer]),
        None,
    );
    assert_eq!(st, 403);
    assert_eq!(call(&s, "HEAD", "/api/v1/audit", None, None).0, 401);
    assert_eq!(call(&s, "HEAD", "/health", None, None).0, 200);
    // Unknown routes and methods answer 404/405 to any token, a worker's included.
    let worker = &tokens[&Role::Worker];
    assert_eq!(
        call(&s, "GET", "/api/v1/nothing", Some(worker), None).0,
        404
    );
    assert_eq!(call(&s, "GET", "/nothing", None, None).0, 401);
    assert_eq!(
        call(&s, "PATCH", "/api/v1/jobs/sec-job", Some(worker), None).0,
        405
    );
    assert_eq!(s.run(sleeper_run)["cancel_requested"], true);
}

#[test]
fn forged_worker_calls_are_refused() {
    let s = Server::start(&[]);
    let w1 = make_token(&s, "worker-one", "worker");
    let w2 = make_token(&s, "worker-two", "worker");
    let info = json!({"id": "host-a", "slots": 1, "version": "test"});
    let (st, _, v) = call(
        &s,
        "POST",
        "/api/v1/workers/register",
        Some(&w1),
        Some(&info),
    );
    assert_eq!(st, 200, "{v}");
    // Another token can neither register as host-a nor act as it.
    let (st, _, v) = call(
        &s,
        "POST",
        "/api/v1/workers/register",
        Some(&w2),
        Some(&info),
    );
    assert_eq!(st, 403, "{v}");
    for (path, body) in [
        (
            "/api/v1/workers/host-a/claim",
            json!({"worker": info, "max": 1}),
        ),
        (
            "/api/v1/workers/host-a/heartbeat",
            json!({"worker": info, "runs": []}),
        ),
        ("/api/v1/workers/host-a/finish", json!({"results": []})),
    ] {
        let (st, _, v) = call(&s, "POST", path, Some(&w2), Some(&body));
        assert_eq!(st, 403, "{path}: {v}");
        let (st, _, v) = call(&s, "POST", path, Some(&w1), Some(&body));
        assert!(st < 300, "{path} by its own token: {v}");
    }
    let (st, _, _) = call(
        &s,
        "POST",
        "/api/v1/workers/host-a/runs/1/log",
        Some(&w2),
        None,
    );
    assert_eq!(st, 403);
    // A server's own pool id is nobody's, in any case.
    for id in ["test-node/local", "x/LOCAL"] {
        let local = json!({"id": id, "slots": 1, "version": "test"});
        let (st, _, v) = call(
            &s,
            "POST",
            "/api/v1/workers/register",
            Some(&w1),
            Some(&local),
        );
        assert_eq!(st, 403, "{v}");
    }
    // Ids that would look like another worker's in listings are refused.
    for id in ["host-a ", " ", "host\u{2010}a", ""] {
        let odd = json!({"id": id, "slots": 1, "version": "test"});
        let (st, _, v) = call(
            &s,
            "POST",
            "/api/v1/workers/register",
            Some(&w1),
            Some(&odd),
        );
        assert_eq!(st, 400, "{id:?}: {v}");
        assert_eq!(v["error"]["field"], "worker.id");
    }
    // A worker token reads nothing else.
    let (st, _, _) = call(&s, "GET", "/api/v1/jobs", Some(&w1), None);
    assert_eq!(st, 403);
    // Once its token is revoked, another token may take the id over.
    let (st, _, _) = admin(&s, "DELETE", "/api/v1/tokens/worker-one", None);
    assert_eq!(st, 200);
    let (st, _, v) = call(
        &s,
        "POST",
        "/api/v1/workers/register",
        Some(&w2),
        Some(&info),
    );
    assert_eq!(st, 200, "{v}");
    // A `tempora worker` whose token was revoked exits at once with the reason.
    let out = std::process::Command::new(common::bin())
        .args(["worker", "--worker-id", "host-a", "--server", &s.url()])
        .env("TEMPORA_TOKEN", &w1)
        .output()
        .expect("worker");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn browser_attacks_and_malformed_credentials_are_refused() {
    let s = Server::start(&[]);
    let bearer = format!("Bearer {}", common::admin_token());
    let url = format!("{}/api/v1/jobs", s.url());
    let job = json!({"name": "evil", "command": "id"}).to_string();
    // A "simple" cross-origin request: JSON sent as text/plain.
    let (st, _, body) = request(
        "POST",
        &url,
        &[("Authorization", &bearer), ("Content-Type", "text/plain")],
        &job,
    )
    .unwrap();
    assert_eq!(st, 415, "{body}");
    assert!(body.contains("Content-Type"), "{body}");
    // A change from a page of another origin, even with a valid token and JSON.
    let (st, _, body) = request(
        "POST",
        &url,
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example"),
        ],
        &job,
    )
    .unwrap();
    assert_eq!(st, 403, "{body}");
    assert_eq!(s.get("/api/v1/jobs/evil").0, 404, "nothing was stored");
    // No CORS by default: no header, preflights refused.
    let (st, head, _) = request(
        "GET",
        &url,
        &[
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
        "",
    )
    .unwrap();
    assert_eq!(st, 200);
    assert!(
        !head.to_ascii_lowercase().contains("access-control"),
        "{head}"
    );
    let (st, _, _) = request(
        "OPTIONS",
        &url,
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    )
    .unwrap();
    assert_eq!(st, 403);
    // Malformed credentials are 401s, never 500s; loopback is not trusted.
    for bad in [
        "Bearer",
        "Basic %%%",
        "Basic dXNlcg==",
        "Digest abc",
        "Bearer tempora_0000",
    ] {
        let (st, head, body) = request("GET", &url, &[("Authorization", bad)], "").unwrap();
        assert_eq!(st, 401, "{bad}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer")
        );
    }
    // The token as the password of HTTP Basic, any user name (curl -u, Chronos clients).
    let basic = {
        let out = std::process::Command::new("sh")
            .args(["-c", "printf 'anyone:%s' \"$T\" | base64 -w0"])
            .env("T", common::admin_token())
            .output()
            .unwrap();
        format!("Basic {}", String::from_utf8_lossy(&out.stdout))
    };
    let (st, _, _) = request("GET", &url, &[("Authorization", &basic)], "").unwrap();
    assert_eq!(st, 200);
    // Chronos routes challenge with Basic, so clients that answer challenges can log in.
    let (st, head, _) = request("GET", &format!("{}/scheduler/jobs", s.url()), &[], "").unwrap();
    assert_eq!(st, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic")
    );
    // `--allowed-host` refuses other Host headers (DNS rebinding).
    let guarded = Server::start(&["--allowed-host", "scheduler.internal,127.0.0.1"]);
    let (st, _, _) = admin(&guarded, "GET", "/api/v1/status", None);
    assert_eq!(st, 200);
    let (st, _, _) = request(
        "GET",
        &format!("{}/api/v1/status", guarded.url()),
        &[("Host", "attacker.example")],
        "",
    )
    .unwrap();
    assert_eq!(st, 421);
}

#[test]
fn metrics_need_a_viewer_unless_public() {
    let s = Server::start(&[]);
    assert_eq!(call(&s, "GET", "/metrics", None, None).0, 401);
    let viewer = make_token(&s, "prom", "viewer");
    assert_eq!(call(&s, "GET", "/metrics", Some(&viewer), None).0, 200);
    let open = Server::start(&["--metrics-public"]);
    assert_eq!(call(&open, "GET", "/metrics", None, None).0, 200);
    assert_eq!(call(&open, "GET", "/api/v1/jobs", None, None).0, 401);
    for path in ["/health", "/ready"] {
        assert_eq!(call(&s, "GET", path, None, None).0, 200);
    }
}

#[test]
fn revoked_and_expired_tokens_fail_on_every_node_at_once() {
    let url = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(pg::fresh_database());
    let a = Server::start(&["--database-url", &url, "--node-id", "a"]);
    let b = Server::start(&["--database-url", &url, "--node-id", "b"]);
    let t = make_token(&a, "roaming", "viewer");
    for s in [&a, &b] {
        assert_eq!(call(s, "GET", "/api/v1/jobs", Some(&t), None).0, 200);
    }
    let (st, _, _) = admin(&b, "DELETE", "/api/v1/tokens/roaming", None);
    assert_eq!(st, 200);
    for s in [&a, &b] {
        assert_eq!(call(s, "GET", "/api/v1/jobs", Some(&t), None).0, 401);
    }
    // Expiry.
    let (st, _, v) = admin(
        &a,
        "POST",
        "/api/v1/tokens",
        Some(&json!({"name": "brief", "role": "viewer", "expires": "2s"})),
    );
    assert_eq!(st, 201, "{v}");
    let brief = v["token"].as_str().unwrap().to_owned();
    assert_eq!(call(&b, "GET", "/api/v1/jobs", Some(&brief), None).0, 200);
    std::thread::sleep(Duration::from_millis(2500));
    for s in [&a, &b] {
        assert_eq!(call(s, "GET", "/api/v1/jobs", Some(&brief), None).0, 401);
    }
    // Bad token requests change nothing and name the field.
    for (body, field) in [
        (json!({"name": "x y", "role": "viewer"}), "name"),
        (json!({"name": "ok", "role": "root"}), "role"),
        (
            json!({"name": "ok", "role": "viewer", "expires": "-5s"}),
            "expires",
        ),
        (json!({"name": "ok", "role": "viewer", "extra": 1}), "extra"),
    ] {
        let (st, _, v) = admin(&a, "POST", "/api/v1/tokens", Some(&body));
        assert_eq!(st, 400, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    // A name like a token id is refused; an expired token's name is free again, once.
    for (body, status) in [
        (json!({"name": "tok_0123456789ab", "role": "viewer"}), 400),
        (json!({"name": "brief", "role": "viewer"}), 201),
        (json!({"name": "brief", "role": "viewer"}), 409),
    ] {
        let (st, _, v) = admin(&a, "POST", "/api/v1/tokens", Some(&body));
        assert_eq!(st, status, "{body}: {v}");
    }
    // The audit log is readable from any node.
    let (_, _, v) = admin(&b, "GET", "/api/v1/audit?limit=10", None);
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"token.revoke") && actions.contains(&"token.create"),
        "{v}"
    );
}

#[test]
fn a_session_leaves_its_audit_trail() {
    let s = Server::start(&[]);
    let editor = make_token(&s, "deployer", "editor");
    let operator = make_token(&s, "oncall", "operator");
    let spec = json!({"command": "sleep 30", "schedule": "@daily"});
    let (st, _, _) = call(
        &s,
        "PUT",
        "/api/v1/jobs/audited",
        Some(&editor),
        Some(&spec),
    );
    assert_eq!(st, 201);
    // Overrides need an editor.
    let (st, _, run) = call(
        &s,
        "POST",
        "/api/v1/jobs/audited/runs",
        Some(&editor),
        Some(&json!({"env": {"MODE": "secret-value"}, "arguments": ["a", "b"]})),
    );
    assert_eq!(st, 201, "{run}");
    let run_id = run["id"].as_i64().unwrap();
    let cancel = format!("/api/v1/runs/{run_id}/cancel");
    assert!(call(&s, "POST", &cancel, Some(&operator), None).0 < 300);
    assert_eq!(
        call(
            &s,
            "POST",
            "/api/v1/jobs/audited/pause",
            Some(&operator),
            None
        )
        .0,
        200
    );
    // Refused and read-only requests leave no entry.
    assert_eq!(
        call(&s, "DELETE", "/api/v1/jobs/audited", Some(&operator), None).0,
        403
    );
    assert_eq!(
        call(&s, "GET", "/api/v1/jobs/audited", Some(&operator), None).0,
        200
    );
    let (st, _) = common::http(
        "POST",
        &format!("{}/scheduler/iso8601", s.url()),
        &json!({"name": "audited-chronos", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/P1D"})
            .to_string(),
    )
    .unwrap();
    assert_eq!(st, 204);
    assert_eq!(
        call(&s, "DELETE", "/api/v1/jobs/audited", Some(&editor), None).0,
        204
    );
    // Only admins read it.
    assert_eq!(call(&s, "GET", "/api/v1/audit", Some(&editor), None).0, 403);
    let (st, _, v) = admin(&s, "GET", "/api/v1/audit?job=audited", None);
    assert_eq!(st, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    let seen: Vec<(String, String, String)> = entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["token_name"].as_str().unwrap().to_owned(),
                e["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("job.put", "deployer", "editor"),
        ("job.trigger", "deployer", "editor"),
        ("run.cancel", "oncall", "operator"),
        ("job.pause", "oncall", "operator"),
        ("job.delete", "deployer", "editor"),
    ];
    assert_eq!(
        seen,
        want.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())),
        "{v}"
    );
    // The trigger's overrides are named, never their values.
    let trigger = &entries[entries.len() - 2];
    assert_eq!(trigger["detail"], "env: MODE; arguments: 2", "{trigger}");
    assert!(!v.to_string().contains("secret-value"));
    let put = &entries[entries.len() - 1];
    assert_eq!(put["target"], "/api/v1/jobs/audited");
    assert_eq!(put["spec_hash"].as_str().map(str::len), Some(64), "{put}");
    assert!(
        put["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{put}"
    );
    // The Chronos write, with its job and hash, and the CLI view.
    let (_, _, all) = admin(&s, "GET", "/api/v1/audit?limit=100", None);
    let chronos = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "chronos.job.put")
        .cloned()
        .expect("chronos entry");
    assert_eq!(chronos["job"], "audited-chronos");
    assert!(chronos["spec_hash"].is_string());
    // Token management names the token it made.
    let made = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "token.create")
        .cloned()
        .expect("token entry");
    let detail = made["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("oncall") && detail.contains("operator"),
        "{made}"
    );
    let out = s.cli(&["audit", "ls", "--job", "audited"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("job.trigger")
            && text.contains("oncall")
            && text.contains("job.delete")
            && text.contains("env: MODE"),
        "{text}"
    );
}
