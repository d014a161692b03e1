//! Remote worker agents through the real binaries: a SQLite server without local workers
//! (`--local-slots 0`) and `tempora worker` processes claiming over HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{Server, Worker, alive, free_port, read_pid};
use serde_json::{Value, json};

fn server() -> Server {
    Server::start(&["--local-slots", "0", "--lease-ttl", "3s"])
}

fn wait_until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn id_of(run: &Value) -> i64 {
    run["id"].as_i64().expect("run id")
}

#[test]
fn remote_worker_runs_jobs_and_output_is_readable_while_running() {
    let s = server();
    let w = Worker::start("w-one", &[s.url()], &["--slots", "2"]);
    let stop = s.scratch().join("stop");
    s.put_job(
        "talk",
        json!({
            "command": format!("echo hello from $TEMPORA_JOB; while [ ! -e {} ]; do sleep 0.1; done; echo bye", stop.display()),
        }),
    );
    let id = id_of(&s.trigger("talk"));
    // Output arrives while the run is still going.
    s.wait_for(Duration::from_secs(15), "output while running", || {
        let (_, text) = s.get_text(&format!("/api/v1/runs/{id}/log"));
        (text.contains("hello from talk") && s.run(id)["state"] == "running").then_some(())
    });
    assert_eq!(s.run(id)["worker"], "w-one");
    std::fs::write(&stop, "").unwrap();
    let r = s.wait_final(id, Duration::from_secs(15));
    assert_eq!(r["state"], "succeeded", "{r}\nworker log:\n{}", w.log());
    let (_, text) = s.get_text(&format!("/api/v1/runs/{id}/log"));
    assert_eq!(text, "hello from talk\nbye\n");
    // A failing command is reported as such.
    s.put_job("bad", json!({"command": "exit 3"}));
    let r = s.wait_final(id_of(&s.trigger("bad")), Duration::from_secs(15));
    assert_eq!(r["state"], "failed");
    assert_eq!(r["exit_code"], 3);
}

#[test]
fn selector_restricts_runs_to_matching_workers() {
    let s = server();
    let _a = Worker::start(
        "w-a",
        &[s.url()],
        &["--slots", "4", "--labels", "zone=a,gpu=yes"],
    );
    let _b = Worker::start("w-b", &[s.url()], &["--slots", "4", "--labels", "zone=b"]);
    let quick = json!({"concurrency": "allow"});
    let with = |sel: Value| {
        let mut v = quick.clone();
        v["command"] = json!("true");
        v["selector"] = sel;
        v
    };
    s.put_job("on-a", with(json!({"zone": "a", "gpu": "yes"})));
    s.put_job("on-b", with(json!({"zone": "b"})));
    s.put_job("gpu-in-b", with(json!({"zone": "b", "gpu": "yes"})));
    s.put_job("anywhere", with(json!({})));
    // An invalid selector is refused naming the field.
    let (st, v) = s.send(
        "PUT",
        "/api/v1/jobs/bad",
        &json!({"command": "true", "selector": {"zone": "a b"}}).to_string(),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["field"], "selector.zone", "{v}");

    let mut ids = Vec::new();
    for _ in 0..4 {
        for job in ["on-a", "on-b", "anywhere"] {
            ids.push((job, id_of(&s.trigger(job))));
        }
    }
    let nowhere = id_of(&s.trigger("gpu-in-b"));
    let mut seen = std::collections::BTreeSet::new();
    for (job, id) in ids {
        let r = s.wait_final(id, Duration::from_secs(20));
        assert_eq!(r["state"], "succeeded", "{r}");
        let worker = r["worker"].as_str().unwrap().to_owned();
        match job {
            "on-a" => assert_eq!(worker, "w-a"),
            "on-b" => assert_eq!(worker, "w-b"),
            _ => {
                seen.insert(worker);
            }
        }
    }
    assert!(!seen.is_empty());
    // No worker has both labels: the run waits.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.run(nowhere)["state"], "queued");
}

#[test]
fn killed_worker_run_is_lost_then_retried_on_another_and_its_processes_die() {
    let s = server();
    let mut a = Worker::start("w-dies", &[s.url()], &["--slots", "1"]);
    let pidfile = s.scratch().join("grandchild.pid");
    let escaped = s.scratch().join("escaped.pid");
    let marker = s.scratch().join("attempts");
    // Attempt 1 leaves a background grandchild (not the shell itself) running, and one that
    // left the run's process group and session (`setsid`): the watchdog finds that one by the
    // worker's session token in its environment.
    s.put_job(
        "victim",
        json!({
            "command": format!(
                "echo $TEMPORA_ATTEMPT >> {m}; if [ $TEMPORA_ATTEMPT = 1 ]; then setsid sleep 301 & echo $! > {e}; sleep 300 & echo $! > {p}; wait; fi",
                m = marker.display(),
                p = pidfile.display(),
                e = escaped.display()
            ),
            "retries": 1,
            "retry_backoff": "1s",
        }),
    );
    let id = id_of(&s.trigger("victim"));
    s.wait_for(Duration::from_secs(15), "job process", || {
        read_pid(&pidfile)
    });
    let pid = read_pid(&pidfile).unwrap();
    let escaped_pid = read_pid(&escaped).unwrap();
    assert!(alive(pid) && alive(escaped_pid));
    a.kill9();
    // The worker's death takes the run's processes with it.
    wait_until(Duration::from_secs(5), "orphans gone", || {
        (!alive(pid) && !alive(escaped_pid)).then_some(())
    });
    let _b = Worker::start("w-takes-over", &[s.url()], &["--slots", "1"]);
    let r = s.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "lost", "{r}");
    assert_eq!(r["worker"], "w-dies");
    let retry = s.wait_for(Duration::from_secs(20), "retry attempt", || {
        s.runs("victim").into_iter().find(|r| {
            r["attempt"] == 2 && !matches!(r["state"].as_str(), Some("queued" | "running"))
        })
    });
    assert_eq!(retry["state"], "succeeded", "{retry}");
    assert_eq!(retry["worker"], "w-takes-over");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1\n2\n");
    assert_eq!(s.runs("victim").len(), 2);
}

#[test]
fn result_is_resent_after_server_restart() {
    // A lease longer than the downtime: the run is still the worker's when the server is back.
    let mut s = Server::start(&["--local-slots", "0", "--lease-ttl", "30s"]);
    let w = Worker::start("w-patient", &[s.url()], &["--slots", "1"]);
    let go = s.scratch().join("go");
    s.put_job(
        "finisher",
        json!({
            "command": format!("echo started; while [ ! -e {} ]; do sleep 0.1; done; echo finished", go.display()),
        }),
    );
    let id = id_of(&s.trigger("finisher"));
    s.wait_for(Duration::from_secs(15), "run on the worker", || {
        (s.run(id)["state"] == "running").then_some(())
    });
    s.kill9();
    // The run ends while the server is away: the result cannot be delivered yet.
    std::fs::write(&go, "").unwrap();
    wait_until(Duration::from_secs(15), "a failed delivery", || {
        w.log().contains("cannot report results").then_some(())
    });
    s.spawn();
    let r = s.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "succeeded", "{r}\nworker log:\n{}", w.log());
    let (_, text) = s.get_text(&format!("/api/v1/runs/{id}/log"));
    assert!(text.contains("started\n"), "{text}");
    assert!(text.ends_with("finished\n"), "{text}");
    assert_eq!(text.matches("finished").count(), 1, "{text}");
    let runs = s.runs("finisher");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        s.get("/api/v1/jobs/finisher").1["status"]["success_count"],
        1,
        "counted once"
    );
}

#[test]
fn server_sigterm_is_not_held_up_by_waiting_workers() {
    let mut s = server();
    let w = Worker::start("w-waiting", &[s.url()], &["--slots", "1"]);
    s.wait_for(Duration::from_secs(10), "worker registered", || {
        w.log().contains("tempora worker started").then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let st = s.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    assert!(st.success());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}; log:\n{}",
        start.elapsed(),
        s.log()
    );
    assert!(!s.log().contains("still open at exit"), "{}", s.log());
}

#[test]
fn worker_fails_over_to_the_next_server() {
    let s = server();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let w = Worker::start("w-failover", &[dead, s.url()], &["--slots", "1"]);
    s.put_job("hop", json!({"command": "echo hopped"}));
    let id = id_of(&s.trigger("hop"));
    let r = s.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "succeeded", "{r}\nworker log:\n{}", w.log());
    assert_eq!(r["worker"], "w-failover");
    let (_, text) = s.get_text(&format!("/api/v1/runs/{id}/log"));
    assert_eq!(text, "hopped\n");
}

#[test]
fn local_pool_honours_local_labels_and_worker_sigterm_is_graceful() {
    // The server's own pool is a worker like the others: it runs a selected job only when its
    // labels match.
    let s = Server::start(&["--local-labels", "site=home"]);
    s.put_job(
        "home",
        json!({"command": "true", "selector": {"site": "home"}}),
    );
    s.put_job(
        "away",
        json!({"command": "true", "selector": {"site": "away"}}),
    );
    let home = id_of(&s.trigger("home"));
    let away = id_of(&s.trigger("away"));
    assert_eq!(
        s.wait_final(home, Duration::from_secs(15))["state"],
        "succeeded"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.run(away)["state"], "queued");
    // A remote worker with the right label takes it; SIGTERM lets its run finish first.
    let mut w = Worker::start(
        "w-away",
        &[s.url()],
        &["--labels", "site=away", "--slots", "1"],
    );
    let r = s.wait_final(away, Duration::from_secs(20));
    assert_eq!(r["state"], "succeeded");
    assert_eq!(r["worker"], "w-away");
    // Both the local pool and the remote worker are in the registry.
    let (_, v) = s.get("/api/v1/workers");
    let workers = v["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{v}");
    assert_eq!(workers[0]["id"], "test-node/local");
    assert_eq!(workers[0]["labels"]["site"], "home");
    assert_eq!(workers[1]["id"], "w-away");
    s.put_job(
        "slow",
        json!({"command": "sleep 1; echo done", "selector": {"site": "away"}}),
    );
    let slow = id_of(&s.trigger("slow"));
    s.wait_for(Duration::from_secs(15), "slow running", || {
        (s.run(slow)["state"] == "running").then_some(())
    });
    let child = w.child.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", w.log());
    let r = s.run(slow);
    assert_eq!(r["state"], "succeeded", "{r}\n{}", w.log());
    let _ = &w.id;
}

#[test]
fn protocol_is_safe_against_foreign_and_repeated_requests() {
    let s = server();
    let me = json!({"id": "fake", "labels": {"zone": "a"}, "slots": 2, "version": "test"});
    let other = json!({"id": "other", "slots": 1, "version": "test"});
    let (st, v) = s.send("POST", "/api/v1/workers/register", &me.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["worker"], "fake");
    assert_eq!(v["lease_ttl_ms"], 3000);
    // A body naming another worker than the path is refused.
    let (st, _) = s.send(
        "POST",
        "/api/v1/workers/other/claim",
        &json!({"worker": me, "max": 1}).to_string(),
    );
    assert_eq!(st, 400);
    s.put_job("p", json!({"command": "true", "selector": {"zone": "a"}}));
    let id = id_of(&s.trigger("p"));
    let claim = |who: &Value, held: &[i64]| {
        let path = format!("/api/v1/workers/{}/claim", who["id"].as_str().unwrap());
        let (st, v) = s.send(
            "POST",
            &path,
            &json!({"worker": who, "max": 2, "wait_ms": 0, "held": held}).to_string(),
        );
        assert_eq!(st, 200, "{v}");
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["run"]["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    // A worker without the labels gets nothing; the right one gets the run with its spec.
    let (st, v) = s.send("POST", "/api/v1/workers/register", &other.to_string());
    assert_eq!(st, 200, "{v}");
    assert!(claim(&other, &[]).is_empty());
    assert_eq!(claim(&me, &[]), vec![id]);
    // The answer was "lost": the next claim hands the run out again, unless it is held.
    assert_eq!(claim(&me, &[]), vec![id]);
    assert!(claim(&me, &[id]).is_empty());
    // Another worker cannot ship output, renew or finish it.
    let (st, _) = s.send("POST", &format!("/api/v1/workers/other/runs/{id}/log"), "x");
    assert_eq!(st, 409);
    let (st, v) = s.send(
        "POST",
        "/api/v1/workers/other/heartbeat",
        &json!({"worker": other, "runs": [id]}).to_string(),
    );
    assert_eq!(st, 200);
    assert_eq!(v["stop"], json!([id]));
    let result = json!({"results": [{
        "run_id": id, "state": "succeeded", "finished_at": "2030-01-01T00:00:00Z", "exit_code": 0,
        "log_tail": [111, 107, 10]
    }]});
    let (st, _) = s.send("POST", "/api/v1/workers/other/finish", &result.to_string());
    assert_eq!(st, 204);
    assert_eq!(s.run(id)["state"], "running");
    // The holder ships output, renews, finishes; a re-sent result changes nothing.
    let (st, _) = s.send(
        "POST",
        &format!("/api/v1/workers/fake/runs/{id}/log"),
        "hi\n",
    );
    assert_eq!(st, 204);
    let (_, v) = s.send(
        "POST",
        "/api/v1/workers/fake/heartbeat",
        &json!({"worker": me, "runs": [id]}).to_string(),
    );
    assert_eq!(v["stop"], json!([]));
    for _ in 0..2 {
        let (st, _) = s.send("POST", "/api/v1/workers/fake/finish", &result.to_string());
        assert_eq!(st, 204);
    }
    let r = s.run(id);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(s.get_text(&format!("/api/v1/runs/{id}/log")).1, "hi\nok\n");
    assert_eq!(s.get("/api/v1/jobs/p").1["status"]["success_count"], 1);
    // A worker restarting under the same id: its runs still going are lost (then retried).
    s.trigger("p");
    let again = claim(&me, &[]);
    assert_eq!(again.len(), 1);
    let (st, _) = s.send("POST", "/api/v1/workers/register", &me.to_string());
    assert_eq!(st, 200);
    assert_eq!(s.run(again[0])["state"], "lost");
    // The registry shows both workers.
    let (st, v) = s.get("/api/v1/workers");
    assert_eq!(st, 200, "{v}");
    let ids: Vec<&str> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fake", "other"]);
    assert_eq!(v["workers"][0]["labels"]["zone"], "a");
    assert_eq!(v["workers"][0]["slots"], 2);
    assert_eq!(v["workers"][0]["stale"], false);
}

/// Every worker request is bounded (body ≤ 1 MiB, each field and list), and a claim held open
/// while there is no work reads the store instead of writing to it on every poll.
#[test]
fn worker_requests_are_bounded_and_a_held_claim_does_not_write() {
    let s = server();
    let me = json!({"id": "bounded", "slots": 2, "version": "test"});
    let (st, v) = s.send("POST", "/api/v1/workers/register", &me.to_string());
    assert_eq!(st, 200, "{v}");
    // A 2 MiB version: the body is refused before it is read.
    let huge = json!({"id": "bounded", "slots": 2, "version": "v".repeat(2 << 20)});
    let (st, _) = s.send("POST", "/api/v1/workers/register", &huge.to_string());
    assert_eq!(st, 413);
    // Fields within the body limit are bounded too, each named.
    let field_of = |v: &Value| v["error"]["field"].as_str().unwrap_or_default().to_owned();
    for (path, body, field) in [
        (
            "/api/v1/workers/register",
            json!({"id": "bounded", "slots": 2, "version": "v".repeat(300)}),
            "worker.version",
        ),
        (
            "/api/v1/workers/register",
            json!({"id": "bounded", "slots": 2, "version": "t", "address": "a".repeat(300)}),
            "worker.address",
        ),
        (
            "/api/v1/workers/register",
            json!({"id": "bounded", "slots": 1_000_000, "version": "t"}),
            "worker.slots",
        ),
        (
            "/api/v1/workers/bounded/heartbeat",
            json!({"worker": me, "runs": (0..10_001).collect::<Vec<i64>>()}),
            "runs",
        ),
        (
            "/api/v1/workers/bounded/claim",
            json!({"worker": me, "max": 1, "held": (0..10_001).collect::<Vec<i64>>()}),
            "held",
        ),
        (
            "/api/v1/workers/bounded/finish",
            json!({"results": [{"run_id": 1, "state": "failed",
                "finished_at": "2030-01-01T00:00:00Z", "error": "e".repeat(9000)}]}),
            "results[0].error",
        ),
        (
            "/api/v1/workers/bounded/finish",
            json!({"results": [{"run_id": 1, "state": "queued",
                "finished_at": "2030-01-01T00:00:00Z"}]}),
            "results[0].state",
        ),
        (
            "/api/v1/workers/bounded/finish",
            json!({"results": [{"run_id": 1, "state": "failed", "awaits_completion": true,
                "finished_at": "2030-01-01T00:00:00Z"}]}),
            "results[0].awaits_completion",
        ),
    ] {
        let (st, v) = s.send("POST", path, &body.to_string());
        assert_eq!((st, field_of(&v)), (400, field.to_owned()), "{path}: {v}");
    }
    // Output chunks above 1 MiB are refused too.
    let (st, _) = s.send(
        "POST",
        "/api/v1/workers/bounded/runs/1/log",
        &"x".repeat((1 << 20) + 1),
    );
    assert_eq!(st, 413);

    // A claim held 3 s with no work: the SQLite writer commits a handful of times (the
    // worker's registration, the first claim, the leader's lease renewals), not every 50 ms.
    let writes = || {
        let (_, m) = s.get_text("/metrics?format=prometheus");
        m.lines()
            .find(|l| l.starts_with("tempora_store_write_batch_size_count"))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no write batch count in:\n{m}"))
    };
    let before = writes();
    let t = Instant::now();
    let (st, v) = s.send(
        "POST",
        "/api/v1/workers/bounded/claim",
        &json!({"worker": me, "max": 1, "wait_ms": 3000}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    assert!(t.elapsed() >= Duration::from_millis(2900));
    let during = writes() - before;
    assert!(
        during <= 15.0,
        "{during} write batches during a 3 s idle claim"
    );
    // Work that appears while the claim is held is still handed out at once.
    s.put_job("late", json!({"command": "true"}));
    let claimer = {
        let (url, me) = (s.url(), me.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let (st, body) = common::http(
                "POST",
                &format!("{url}/api/v1/workers/bounded/claim"),
                &json!({"worker": me, "max": 1, "wait_ms": 5000}).to_string(),
            )
            .expect("claim");
            (st, body, t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let id = id_of(&s.trigger("late"));
    let (st, body, took) = claimer.join().unwrap();
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["runs"][0]["run"]["id"], id, "{v}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// A run that no worker may take says why — on the run, the job's status, the CLI — and
/// `/metrics` counts it; once a worker with the labels connects, it runs and the count drops.
#[test]
fn a_run_no_worker_may_take_says_why() {
    let s = server();
    s.put_job(
        "needs-gpu",
        json!({"command": "true", "selector": {"gpu": "yes"}, "concurrency": "allow"}),
    );
    let run = s.trigger("needs-gpu");
    assert_eq!(run["waiting"], "no worker is connected", "{run}");
    let id = run["id"].as_i64().unwrap();
    // A worker without the label connects.
    let _cpu = Worker::start("w-cpu", &[s.url()], &["--labels", "zone=a"]);
    wait_until(
        Duration::from_secs(20),
        "the waiting reason to name the labels",
        || (s.run(id)["waiting"] == "no worker with labels gpu=yes").then_some(()),
    );
    let (_, job) = s.get("/api/v1/jobs/needs-gpu");
    assert_eq!(
        job["status"]["waiting"], "no worker with labels gpu=yes",
        "{job}"
    );
    let metric = |s: &Server| {
        let (_, text) = s.get_text("/metrics?format=prometheus");
        text.lines()
            .find_map(|l| l.strip_prefix("tempora_runs_waiting_for_worker "))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no waiting metric:\n{text}"))
    };
    assert_eq!(metric(&s), "1");
    let o = s.cli(&["run", "ls", "needs-gpu"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("queued") && out.contains("no worker with labels gpu=yes"),
        "{out}"
    );
    let o = s.cli(&["job", "run", "needs-gpu", "--wait", "--timeout", "1s"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(124), "{err}");
    assert!(
        err.contains("waits: no worker with labels gpu=yes"),
        "{err}"
    );
    // A worker with the label arrives: both runs run.
    // (Given as host:port, without the scheme, as the client commands take it.)
    let bare = s.url().trim_start_matches("http://").to_owned();
    let _w = Worker::start("w-gpu", &[bare], &["--labels", "gpu=yes"]);
    let r = s.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "succeeded", "{r}");
    assert!(r.get("waiting").is_none(), "{r}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metric(&s) != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "metric stays {}",
            metric(&s)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
