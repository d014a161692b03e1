//! The web UI in a real browser (headless Chromium over WebDriver) against the real binary:
//! signing in, the jobs overview, a run's output arriving live, actions by role, CSRF, and an
//! expired session. A failing test leaves a screenshot in `target/ui-screenshots/`.
//! `TEMPORA_UI_SCREENSHOTS=docs/ui` makes the first test save the README's screenshots there.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::json;
use tempora_testkit::browser::Browser;

fn screenshots(b: &Browser, file: &str) {
    if let Some(dir) = std::env::var_os("TEMPORA_UI_SCREENSHOTS") {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir);
        b.screenshot(&dir.join(file));
    }
}

#[test]
fn sign_in_see_jobs_run_one_and_watch_its_output_arrive_live() {
    let server = Server::start(&[]);
    let url = server.url();
    server.put_job(
        "ticker",
        json!({
            "command": "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.7; done",
            "schedule": "30 2 * * *", "timezone": "Europe/Berlin",
            "owner": "ops@example.com", "labels": {"team": "data"},
            "description": "Counts to six",
        }),
    );
    server.put_job(
        "nightly-report",
        json!({"command": "true", "schedule": "0 6 * * 1-5", "timezone": "America/New_York"}),
    );
    let b = Browser::start("sign_in_and_run");
    // A page asked for without a session goes to sign-in, and back after it.
    b.goto(&format!("{url}/ui/jobs/ticker"));
    b.wait_for(Duration::from_secs(10), "the sign-in page", |b| {
        b.url().contains("/ui/login?next=")
    });
    screenshots(&b, "sign-in.png");
    // A wrong token is refused with a message.
    b.fill("#token", "tempora_wrong");
    b.click("button[type=submit]");
    b.wait_for(Duration::from_secs(10), "the refusal", |b| {
        b.text("[role=alert]")
            .is_some_and(|t| t.contains("unknown, expired or revoked"))
    });
    b.fill("#token", common::admin_token());
    b.click("button[type=submit]");
    b.wait_for(Duration::from_secs(10), "the job page", |b| {
        b.text("h1").is_some_and(|t| t.starts_with("ticker"))
    });
    assert!(
        b.text("#h-schedule + p")
            .is_some_and(|t| t.contains("At 02:30") && t.contains("Europe/Berlin")),
        "{:?}",
        b.text("#h-schedule + p")
    );
    // The overview lists both jobs with their state and next fire.
    b.goto(&format!("{url}/"));
    b.wait_for(Duration::from_secs(10), "both jobs", |b| {
        b.count("#job-ticker") == 1 && b.count("#job-nightly-report") == 1
    });
    let row = b.text("#job-ticker").unwrap_or_default();
    assert!(
        row.contains("active") && row.contains("ops@example.com") && row.contains("team=data"),
        "{row}"
    );
    screenshots(&b, "jobs.png");
    // Search narrows the list without a reload.
    b.fill("input[name=q]", "night");
    b.wait_for(Duration::from_secs(10), "the filtered list", |b| {
        b.count("#job-ticker") == 0 && b.count("#job-nightly-report") == 1
    });
    // Run now: the run's page opens and the output arrives while the run goes.
    b.goto(&format!("{url}/ui/jobs/ticker"));
    b.click("button.primary");
    b.wait_for(Duration::from_secs(10), "the run page", |b| {
        b.url().contains("/ui/runs/")
    });
    b.run("window.tempora_marker = 'same page';");
    b.wait_for(Duration::from_secs(15), "the first ticks", |b| {
        b.text("#output").is_some_and(|t| t.contains("tick 2"))
    });
    let early = b.text("#output").unwrap_or_default();
    assert!(
        !early.contains("tick 6"),
        "the run was already over: {early}"
    );
    assert_eq!(b.text("#state").as_deref(), Some("running"));
    screenshots(&b, "run-live.png");
    b.wait_for(Duration::from_secs(20), "the last tick and the end", |b| {
        b.text("#output").is_some_and(|t| t.contains("tick 6"))
            && b.text("#state").as_deref() == Some("succeeded")
    });
    // Streamed into the same page: no reload happened.
    assert_eq!(b.run("return window.tempora_marker;"), json!("same page"));
    let out = b.text("#output").unwrap_or_default();
    assert_eq!(out.matches("tick 3").count(), 1, "no output twice: {out}");
}

#[test]
fn a_viewer_is_offered_no_write_control_and_a_change_without_csrf_is_refused() {
    let server = Server::start(&[]);
    let url = server.url();
    server.put_job(
        "guarded",
        json!({"command": "true", "schedule": "0 0 1 1 *"}),
    );
    let viewer = server.token("ui-viewer", "viewer");
    let b = Browser::start("viewer_and_csrf");
    b.sign_in(&url, &viewer);
    b.goto(&format!("{url}/ui/jobs/guarded"));
    b.wait_for(Duration::from_secs(10), "the job page", |b| {
        b.text("h1").is_some_and(|t| t.starts_with("guarded"))
    });
    assert_eq!(b.count("#actions button"), 0, "a viewer sees no action");
    assert!(b.text("#who").is_some_and(|t| t.contains("viewer")));
    // The viewer's own session cannot trigger (403), even with its CSRF token.
    let status = b.run_async(
        "const done = arguments[0];
         const csrf = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
         fetch('/ui/jobs/guarded/run', {method: 'POST', headers: {'X-CSRF-Token': csrf}})
           .then(r => done(r.status));",
    );
    assert_eq!(status, json!(403));
    // An operator's session: a POST without the CSRF token is refused; with it, it works.
    let operator = server.token("ui-operator", "operator");
    let b = Browser::start("operator_csrf");
    b.sign_in(&url, &operator);
    b.goto(&format!("{url}/ui/jobs/guarded"));
    b.wait_for(Duration::from_secs(10), "the actions", |b| {
        b.count("#actions button") == 2
    });
    assert_eq!(b.count("button.danger"), 0, "an operator may not delete");
    let status = b.run_async(
        "const done = arguments[0];
         fetch('/ui/jobs/guarded/run', {method: 'POST'}).then(r => done(r.status));",
    );
    assert_eq!(status, json!(403), "a POST without the CSRF token");
    assert!(server.runs("guarded").is_empty(), "nothing was triggered");
    // A refused action keeps its status, and the audit log records no success for it.
    let status = b.run_async(
        "const done = arguments[0];
         const csrf = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
         fetch('/ui/jobs/nosuch/pause', {method: 'POST', headers: {'X-CSRF-Token': csrf}})
           .then(r => done(r.status));",
    );
    assert_eq!(status, json!(404));
    let (_, audit) = server.get("/api/v1/audit");
    assert!(
        !audit.to_string().contains("nosuch"),
        "a refused action in the audit log: {audit}"
    );
    // No page of the UI may be framed by another page (clickjacking), and scripts come from
    // this server only.
    let headers = b.run_async(
        "const done = arguments[0];
         fetch('/ui/jobs/guarded').then(r => done([r.headers.get('x-frame-options'),
           r.headers.get('content-security-policy')]));",
    );
    assert_eq!(headers[0], json!("DENY"));
    let csp = headers[1].as_str().unwrap_or_default();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    // Pause and resume from the page.
    b.click("#actions button:nth-child(2)");
    b.wait_for(Duration::from_secs(10), "paused", |b| {
        b.text("h1 .badge").as_deref() == Some("paused")
    });
    b.click("#actions button:nth-child(2)");
    b.wait_for(Duration::from_secs(10), "active again", |b| {
        b.text("h1 .badge").as_deref() == Some("active")
    });
}

#[test]
fn cancel_a_run_and_delete_a_job_from_their_pages() {
    let server = Server::start(&[]);
    let url = server.url();
    server.put_job("sleeper", json!({"command": "echo started; sleep 60"}));
    let b = Browser::start("cancel_and_delete");
    b.sign_in(&url, common::admin_token());
    b.goto(&format!("{url}/ui/jobs/sleeper"));
    b.click("button.primary");
    b.wait_for(Duration::from_secs(10), "the run running", |b| {
        b.text("#output").is_some_and(|t| t.contains("started"))
    });
    b.click("button.danger");
    b.wait_for(Duration::from_secs(20), "the run cancelled", |b| {
        b.text("#state").as_deref() == Some("cancelled")
    });
    b.goto(&format!("{url}/ui/jobs/sleeper"));
    b.click("button.danger");
    b.accept_dialog();
    b.wait_for(Duration::from_secs(10), "the overview", |b| {
        b.text("h1").is_some_and(|t| t.starts_with("Jobs"))
    });
    assert_eq!(server.get("/api/v1/jobs/sleeper").0, 404);
}

#[test]
fn an_expired_session_goes_to_sign_in_and_back_to_the_page_asked_for() {
    let server = Server::start(&["--ui-session-ttl", "2s"]);
    let url = server.url();
    server.put_job("later", json!({"command": "true", "schedule": "0 0 1 1 *"}));
    let b = Browser::start("expired_session");
    b.sign_in(&url, common::admin_token());
    std::thread::sleep(Duration::from_secs(3));
    b.goto(&format!("{url}/ui/jobs/later?state=succeeded"));
    b.wait_for(Duration::from_secs(10), "the sign-in page", |b| {
        b.url().contains("/ui/login")
    });
    b.fill("#token", common::admin_token());
    b.click("button[type=submit]");
    b.wait_for(Duration::from_secs(10), "the page asked for", |b| {
        b.url().ends_with("/ui/jobs/later?state=succeeded")
            && b.text("h1").is_some_and(|t| t.starts_with("later"))
    });
}

#[test]
fn create_a_job_in_the_form_with_a_live_preview_and_a_refused_field() {
    let server = Server::start(&[]);
    let url = server.url();
    let b = Browser::start("job_form");
    b.sign_in(&url, common::admin_token());
    b.click("nav a[href='/ui/new']");
    b.wait_for(Duration::from_secs(10), "the form", |b| {
        b.count("#job-form") == 1
    });
    b.fill("#f-name", "from-the-form");
    b.fill("#f-command", "echo made in a browser");
    b.fill("#f-timezone", "Europe/Berlin");
    b.fill("#f-schedule", "30 2 * * 1-5");
    b.wait_for(Duration::from_secs(10), "the preview in words", |b| {
        b.text("#preview")
            .is_some_and(|t| t.contains("At 02:30") && t.contains("Monday through Friday"))
    });
    screenshots(&b, "job-form.png");
    // A refused field: its message next to it, and nothing saved.
    b.fill("#f-timeout", "soon");
    b.click("#job-form button[type=submit]");
    b.wait_for(Duration::from_secs(10), "the timeout's message", |b| {
        b.text("#job-form .field-error:not(:empty)")
            .is_some_and(|t| t.contains("timeout"))
    });
    assert_eq!(
        server.get("/api/v1/jobs/from-the-form").0,
        404,
        "nothing saved"
    );
    // The form kept what was typed; fixing the field saves the job.
    assert_eq!(
        b.run("return document.getElementById('f-name').value;"),
        json!("from-the-form")
    );
    b.fill("#f-timeout", "5m");
    b.click("#job-form button[type=submit]");
    b.wait_for(Duration::from_secs(10), "the new job's page", |b| {
        b.text("h1").is_some_and(|t| t.starts_with("from-the-form"))
    });
    let (st, job) = server.get("/api/v1/jobs/from-the-form");
    assert_eq!(st, 200);
    assert_eq!(job["schedule"], "30 2 * * 1-5");
    assert_eq!(job["timezone"], "Europe/Berlin");
    assert_eq!(job["timeout"], "5m");
    // What the form does not show (a container, notification rules) survives an edit in it.
    let mut boxed = job.clone();
    boxed.as_object_mut().unwrap().remove("status");
    boxed["container"] =
        json!({"image": "tempora-test/busybox:1", "pull": "never", "volumes": ["/srv:/srv:ro"]});
    boxed["notify"] = json!([{"webhook": "http://127.0.0.1:9/hook"}]);
    server.put_job("from-the-form", boxed);
    // Edit: the form shows the job; a changed field is saved.
    b.click("#actions a.button");
    b.wait_for(Duration::from_secs(10), "the edit form", |b| {
        b.run("return document.getElementById('f-command').value;")
            == json!("echo made in a browser")
    });
    b.fill("#f-description", "edited in the UI");
    b.click("#job-form button[type=submit]");
    b.wait_for(Duration::from_secs(10), "the job page again", |b| {
        b.text("h1").is_some_and(|t| t.starts_with("from-the-form"))
    });
    let (_, edited) = server.get("/api/v1/jobs/from-the-form");
    assert_eq!(edited["description"], "edited in the UI");
    assert_eq!(edited["status"]["kind"], "container", "{edited}");
    assert_eq!(edited["container"]["volumes"], json!(["/srv:/srv:ro"]));
    assert_eq!(
        edited["notify"],
        json!([{"on": ["failure"], "webhook": "http://127.0.0.1:9/hook"}])
    );
}

#[test]
fn graph_cluster_and_audit_pages() {
    let server = Server::start(&[]);
    let url = server.url();
    server.put_job(
        "extract",
        json!({"command": "true", "schedule": "0 1 * * *"}),
    );
    server.put_job("load", json!({"command": "true", "parents": ["extract"]}));
    let b = Browser::start("graph_cluster_audit");
    b.sign_in(&url, common::admin_token());
    b.goto(&format!("{url}/ui/graph"));
    b.wait_for(Duration::from_secs(10), "the graph", |b| {
        b.count("svg .node") == 2
    });
    assert_eq!(b.count("svg .edge"), 1);
    screenshots(&b, "graph.png");
    b.goto(&format!("{url}/ui/cluster"));
    b.wait_for(Duration::from_secs(10), "the cluster page", |b| {
        b.text("h1").as_deref() == Some("Cluster")
    });
    assert!(b.text("dl.spec").is_some_and(|t| t.contains("sqlite")));
    b.goto(&format!("{url}/ui/audit"));
    b.wait_for(Duration::from_secs(10), "the audit log", |b| {
        b.text("table")
            .is_some_and(|t| t.contains("job.put") && t.contains("load"))
    });
    // A viewer gets no audit link, and the page is refused.
    let viewer = server.token("ui-viewer-2", "viewer");
    let v = Browser::start("viewer_audit");
    v.sign_in(&url, &viewer);
    assert_eq!(v.count("nav a[href='/ui/audit']"), 0);
    assert_eq!(v.count("nav a[href='/ui/new']"), 0);
    v.goto(&format!("{url}/ui/audit"));
    v.wait_for(Duration::from_secs(10), "the refusal", |b| {
        b.text("h1").as_deref() == Some("Not allowed")
    });
}

#[test]
fn run_with_overrides_the_keyboard_alone_and_a_phone_sized_screen() {
    let server = Server::start(&[]);
    let url = server.url();
    server.put_job(
        "greeter",
        json!({"command": "echo hello $WHO from \"$1\"", "arguments": ["job"]}),
    );
    let b = Browser::start("run_with");
    b.sign_in(&url, common::admin_token());
    b.goto(&format!("{url}/ui/jobs/greeter"));
    b.click("details.runwith summary");
    b.fill("#rw-env", "WHO=world");
    b.fill("#rw-args", "the form");
    b.click("details.runwith button[type=submit]");
    b.wait_for(Duration::from_secs(15), "the run's output", |b| {
        b.text("#output")
            .is_some_and(|t| t.contains("hello world from the form"))
    });
    // An operator may force a run but not change its variables: the fields are not offered.
    let operator = server.token("ui-op-2", "operator");
    let o = Browser::start("run_with_operator");
    o.sign_in(&url, &operator);
    o.goto(&format!("{url}/ui/jobs/greeter"));
    o.wait_for(Duration::from_secs(10), "the job page", |b| {
        b.count("details.runwith") == 1
    });
    assert_eq!(o.count("#rw-env"), 0);
    assert_eq!(o.count("details.runwith input[name=force]"), 1);
    // Keyboard only: Tab from the top of the job page reaches "Run now", Enter runs it.
    b.goto(&format!("{url}/ui/jobs/greeter"));
    b.wait_for(Duration::from_secs(10), "the job page", |b| {
        b.count("#actions button") > 0
    });
    let mut reached = false;
    for _ in 0..20 {
        b.press("\u{e004}");
        if b.run("return document.activeElement.textContent;") == json!("Run now") {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached Run now");
    b.press("\u{e007}");
    b.wait_for(
        Duration::from_secs(10),
        "a run page opened by the keyboard",
        |b| b.url().contains("/ui/runs/"),
    );
    // On a phone-sized screen the overview fits the width.
    let phone = Browser::with_size("phone", 390, 844);
    phone.sign_in(&url, common::admin_token());
    assert!(phone.count("#job-greeter") == 1);
    let fits = phone.run(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth;",
    );
    assert_eq!(
        fits,
        json!(true),
        "the overview scrolls sideways on a phone"
    );
    screenshots(&phone, "phone.png");
}

#[test]
fn revoking_a_token_ends_its_open_output_stream() {
    let server = Server::start(&[]);
    let url = server.url();
    server.put_job(
        "long-talker",
        json!({"command": "while true; do echo still here; sleep 0.5; done"}),
    );
    let viewer = server.token("ui-streamer", "viewer");
    let run = server.trigger("long-talker")["id"]
        .as_i64()
        .expect("run id");
    let b = Browser::start("stream_revoked");
    b.sign_in(&url, &viewer);
    // A page that does not refresh itself (the overview's rows would follow the revocation
    // to the sign-in page).
    b.goto(&format!("{url}/ui/jobs/long-talker"));
    // Read the run's event stream from the page until it ends; the test revokes the token
    // meanwhile. The answer is how long the stream lasted and whether output came.
    b.run(&format!(
        "window.stream_result = null;
         const started = Date.now(); let got = '';
         fetch('/ui/runs/{run}/events').then(async r => {{
           const reader = r.body.getReader(); const dec = new TextDecoder();
           for (;;) {{ const {{done, value}} = await reader.read(); if (done) break;
                      got += dec.decode(value); }}
           window.stream_result = [Date.now() - started, got.includes('still here')];
         }});"
    ));
    std::thread::sleep(Duration::from_secs(2));
    let (st, _) = server.send("DELETE", "/api/v1/tokens/ui-streamer", "");
    assert_eq!(st, 200);
    b.wait_for(Duration::from_secs(15), "the stream to end", |b| {
        !b.run("return window.stream_result;").is_null()
    });
    let result = b.run("return window.stream_result;");
    assert_eq!(result[1], json!(true), "output came before: {result}");
    assert!(
        result[0].as_f64().unwrap_or(f64::MAX) < 12_000.0,
        "the stream outlived the revocation: {result}"
    );
    assert_eq!(
        server.run(run)["state"],
        "running",
        "the run itself goes on"
    );
    let (st, _) = server.send("POST", &format!("/api/v1/runs/{run}/cancel"), "");
    assert_eq!(st, 202);
}
