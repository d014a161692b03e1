//! The process executor with real processes: exit codes, signals, combined output order,
//! streaming, timeout and cancel of the whole group, and no descendant left behind.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tempora_worker::process::{EndReason, ProcessOutcome, ProcessSpec, run_process};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn sh(cmd: &str) -> ProcessSpec {
    ProcessSpec {
        command: cmd.to_owned(),
        shell: true,
        arguments: Vec::new(),
        env: Vec::new(),
        workdir: None,
        timeout: None,
        kill_grace: Duration::from_millis(500),
        run_as: None,
    }
}

async fn run(spec: ProcessSpec) -> (ProcessOutcome, String) {
    run_with(spec, CancellationToken::new()).await
}

async fn run_with(spec: ProcessSpec, cancel: CancellationToken) -> (ProcessOutcome, String) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let collect = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        String::from_utf8_lossy(&out).to_string()
    });
    let o = run_process(&spec, tx, cancel).await;
    (o, collect.await.unwrap())
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn exit_codes_and_signals() {
    let (o, _) = run(sh("exit 0")).await;
    assert_eq!(
        (o.exit_code, o.signal, o.end),
        (Some(0), None, EndReason::Exited)
    );
    let (o, _) = run(sh("exit 3")).await;
    assert_eq!(o.exit_code, Some(3));
    let (o, _) = run(sh("kill -9 $$")).await;
    assert_eq!((o.exit_code, o.signal), (None, Some(9)));
}

#[tokio::test]
async fn output_order_env_workdir_and_argv() {
    let (_, out) = run(sh("echo a; echo b >&2; echo c")).await;
    assert_eq!(out, "a\nb\nc\n");
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh("echo $FOO; pwd; echo \"$1-$2\"");
    spec.env = vec![("FOO".into(), "bar".into())];
    spec.workdir = Some(dir.path().to_owned());
    spec.arguments = vec!["x".into(), "y z".into()];
    let (o, out) = run(spec).await;
    assert_eq!(o.exit_code, Some(0));
    let canon = dir.path().canonicalize().unwrap();
    assert_eq!(out, format!("bar\n{}\nx-y z\n", canon.display()));
    let spec = ProcessSpec {
        command: "printf".into(),
        shell: false,
        arguments: vec!["%s|%s".into(), "a b".into(), "$HOME".into()],
        ..sh("")
    };
    let (o, out) = run(spec).await;
    assert_eq!((o.exit_code, out.as_str()), (Some(0), "a b|$HOME"));
}

#[tokio::test]
async fn spawn_errors() {
    let spec = ProcessSpec {
        command: "definitely-not-a-program".into(),
        shell: false,
        ..sh("")
    };
    let (o, _) = run(spec).await;
    assert!(
        o.spawn_error
            .as_deref()
            .unwrap()
            .contains("definitely-not-a-program")
    );
    let mut spec = sh("true");
    spec.workdir = Some("/no/such/dir".into());
    let (o, _) = run(spec).await;
    assert!(
        o.spawn_error.as_deref().unwrap().contains("/no/such/dir"),
        "{:?}",
        o.spawn_error
    );
}

#[tokio::test]
async fn large_output_arrives_whole_and_streams_while_running() {
    let (_, out) = run(sh("head -c 5000000 /dev/zero | tr '\\0' x")).await;
    assert_eq!(out.len(), 5_000_000);
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let start = Instant::now();
    let h = tokio::spawn(async move {
        run_process(
            &sh("echo first; sleep 2; echo second"),
            tx,
            CancellationToken::new(),
        )
        .await
    });
    let first = rx.recv().await.unwrap();
    assert_eq!(&first[..], b"first\n");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "first chunk took {:?}",
        start.elapsed()
    );
    h.await.unwrap();
}

#[tokio::test]
async fn timeout_terms_then_kills_the_group() {
    let start = Instant::now();
    let mut spec = sh("sleep 30");
    spec.timeout = Some(Duration::from_millis(300));
    let (o, _) = run(spec).await;
    assert_eq!(o.end, EndReason::TimedOut);
    assert_eq!(o.signal, Some(15));
    assert!(start.elapsed() < Duration::from_secs(3));
    // Ignores SIGTERM: SIGKILL after the grace.
    let start = Instant::now();
    let mut spec = sh("trap '' TERM; sleep 30");
    spec.timeout = Some(Duration::from_millis(300));
    let (o, _) = run(spec).await;
    assert_eq!((o.end, o.signal), (EndReason::TimedOut, Some(9)));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn no_descendant_survives_timeout_cancel_or_normal_exit() {
    let dir = tempfile::tempdir().unwrap();
    for (i, how) in ["timeout", "cancel", "exit"].iter().enumerate() {
        let pidfile = dir.path().join(format!("{i}.pid"));
        // The grandchild keeps stdout open too: it must not make run_process hang.
        let tail = if *how == "exit" { "exit 0" } else { "sleep 30" };
        let mut spec = sh(&format!(
            "sleep 1000 & echo $! > {}; {tail}",
            pidfile.display()
        ));
        let cancel = CancellationToken::new();
        if *how == "timeout" {
            spec.timeout = Some(Duration::from_millis(500));
        }
        if *how == "cancel" {
            let c = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                c.cancel();
            });
        }
        let start = Instant::now();
        let (o, _) = run_with(spec, cancel).await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{how}: took {:?}",
            start.elapsed()
        );
        let expected = match *how {
            "timeout" => EndReason::TimedOut,
            "cancel" => EndReason::Cancelled,
            _ => EndReason::Exited,
        };
        assert_eq!(o.end, expected, "{how}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(pid), "{how}: grandchild {pid} survived");
    }
}
