#!/usr/bin/env python3
"""Run every tempora benchmark and print the README's Performance tables (Markdown).

    bench/report.py              # full: ~15 minutes (plus seeding 1M jobs / 10M runs once)
    bench/report.py --quick      # CI smoke: tiny sizes, one repetition (that they run)
    bench/report.py --soak       # also the 30-minute memory soak (200 runs/s)
    bench/report.py --update-readme   # write the tables into README.md between the markers

TEMPORA_BENCH_PROFILE=debug uses the debug binaries already built (CI's smoke run).

Each figure is the median of --repeat runs (default 3) of `tempora-bench ... --json`; the
benchmarks start the real release binaries (built here first) and, for PostgreSQL, a throwaway
server through bench/cluster.sh. The machine is shared and noisy: compare figures of one report.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BENCH = os.path.join(TARGET, os.environ.get("TEMPORA_BENCH_PROFILE", "release"), "tempora-bench")
BEGIN = "<!-- performance:begin (bench/report.py --update-readme) -->"
END = "<!-- performance:end -->"


def run(args, env=None, cluster=False):
    """Run one benchmark; return its --json object (the last JSON line it printed)."""
    cmd = ([os.path.join(ROOT, "bench", "cluster.sh")] if cluster else [BENCH]) + args + ["--json"]
    # No backtraces: a failure's message is what the output should show.
    full_env = dict(os.environ, RUST_BACKTRACE="0", **(env or {}))
    print("$", " ".join(f"{k}={v}" for k, v in (env or {}).items()), " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True)
    sys.stderr.write(p.stdout)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"benchmark failed ({p.returncode}): {' '.join(cmd)}")
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"no JSON result from {' '.join(cmd)}")


def repeat(n, args, **kw):
    return [run(args, **kw) for _ in range(n)]


def med(results, *path):
    vals = []
    for r in results:
        v = r
        for k in path:
            v = v[k]
        vals.append(v)
    return statistics.median(vals)


def mib(kib):
    return f"{kib / 1024:.0f} MiB"


def history_row(hi):
    """The history benchmark's figures in one cell."""
    out = (f"latest 50 runs p50 {hi['list_ms']['p50']:.2f} / p99 {hi['list_ms']['p99']:.2f} ms "
           f"(database {hi['db_mib']:.0f} MiB)")
    lag = hi.get("lag") or {}
    f = lambda v: "n/a" if v is None else f"{v:.1f}"
    if lag:
        c, r = lag["control"], lag["retention"]
        d = r["while_deleting"]["fire_lag_ms"]
        out += (f"; fire lag p50 / p99 without retention {f(c['fire_lag_ms']['p50'])} / {f(c['fire_lag_ms']['p99'])} ms, "
                f"while retention deletes {f(d['p50'])} / {f(d['p99'])} ms "
                f"({r['deleted']:.0f} runs deleted at {r['deleted_per_second']:.0f} runs/s)")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke: tiny sizes, one repetition")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--soak", action="store_true", help="also the 30-minute soak at 200 runs/s")
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL benchmarks")
    ap.add_argument("--update-readme", action="store_true")
    a = ap.parse_args()

    if os.environ.get("TEMPORA_BENCH_PROFILE", "release") == "release":
        subprocess.run(["cargo", "build", "--release", "-p", "tempora", "-p", "tempora-bench"], cwd=ROOT, check=True)
    q = a.quick
    n = 1 if q else a.repeat
    jobs, secs = (20, 5) if q else (500, 60)
    drain_n = 500 if q else 20000
    scale_n = 2000 if q else 1_000_000
    history_n = 20000 if q else 10_000_000
    rows = []  # (target, command, result)

    prec = repeat(n, ["--jobs", str(jobs), "--duration", str(secs)])
    rows.append((
        f"{jobs} jobs every second for {secs} s, one node, SQLite: lag p50 ≤ 5 ms, p99 ≤ 50 ms, none missed or twice",
        f"`bench/run.sh --jobs {jobs} --duration {secs}`",
        f"lag p50 {med(prec, 'lag_ms', 'p50'):.1f} / p90 {med(prec, 'lag_ms', 'p90'):.1f} / "
        f"p99 {med(prec, 'lag_ms', 'p99'):.1f} ms; missed {max(r['missed'] for r in prec)}, "
        f"duplicates {max(r['duplicates'] for r in prec)}; tempora CPU {med(prec, 'cpu_percent'):.0f} % of a core "
        f"(without the jobs), RSS {mib(med(prec, 'rss_kib', 'max'))}",
    ))
    dr = repeat(n, ["--drain", str(drain_n)])
    rows.append((
        f"{drain_n} queued manual runs of `true` drained, SQLite: ≥ 1,500 runs/s",
        f"`bench/run.sh --drain {drain_n}`",
        f"{med(dr, 'runs_per_second'):.0f} runs/s (queueing them over HTTP: {med(dr, 'triggers_per_second'):.0f} triggers/s)",
    ))
    if not a.no_postgres:
        pg = repeat(n, ["--drain", str(drain_n)], env={"NODES": "1", "WORKERS": "0"}, cluster=True)
        rows.append((
            f"the same on PostgreSQL, one node: ≥ 1,000 runs/s",
            f"`NODES=1 WORKERS=0 bench/cluster.sh --drain {drain_n}`",
            f"{med(pg, 'runs_per_second'):.0f} runs/s ({med(pg, 'triggers_per_second'):.0f} triggers/s)",
        ))
        cl = repeat(n, ["--drain", str(drain_n)], cluster=True)
        rows.append((
            "3 nodes + 2 remote workers on PostgreSQL: runs/s",
            f"`bench/cluster.sh --drain {drain_n}`",
            f"{med(cl, 'runs_per_second'):.0f} runs/s",
        ))
        fo_secs = 10 if q else 30
        clp = repeat(1, ["--jobs", str(min(jobs, 200)), "--duration", str(fo_secs), "--failover"], cluster=True)
        rows.append((
            "3 nodes + 2 workers: start lag, failover",
            f"`bench/cluster.sh --jobs {min(jobs, 200)} --duration {fo_secs} --failover`",
            f"lag p50 {med(clp, 'lag_ms', 'p50'):.1f} / p99 {med(clp, 'lag_ms', 'p99'):.1f} ms; "
            f"leader killed: {med(clp, 'failover_seconds'):.2f} s without a leader; duplicates {clp[0]['duplicates']}; "
            f"occurrences due during the gap collapsed by `misfire: run_once`: {clp[0]['not_succeeded']} recorded skipped, "
            f"{clp[0]['missed']} without a row",
        ))
    sc = run(["--scale", str(scale_n)])
    rows.append((
        f"{scale_n:,} stored cron jobs: RSS ≤ 1 GiB, cold start ≤ 10 s, idle CPU ≤ 2 %, GET p99 ≤ 5 ms at 500/s, 10,000 creates ≤ 5 s",
        f"`bench/run.sh --scale {scale_n}`",
        f"RSS {mib(sc['rss_kib']['idle'])} (peak {mib(sc['rss_kib']['peak'])}); ready {sc['ready_seconds']:.2f} s, "
        f"all schedules loaded {sc['loaded_seconds']:.1f} s; idle CPU {sc['idle_cpu_percent']:.1f} %; "
        f"GET p50 {sc['get_ms']['p50']:.2f} / p99 {sc['get_ms']['p99']:.2f} ms; "
        f"10,000 creates (8 clients) {sc['create_10k_seconds']:.2f} s",
    ))
    hi = run(["--history", str(history_n)] + (["--history-keep-runs", "5", "--history-window", "5"] if q else []))
    rows.append((
        f"{history_n:,} runs stored: latest 50 of a job ≤ 10 ms; retention without stalling fires",
        f"`bench/run.sh --history {history_n}`",
        history_row(hi),
    ))
    if a.soak:
        so = run(["--jobs", "200", "--duration", "1800"])
        tl = so.get("rss_timeline") or []
        # After the caches have filled (minute 10): what is still growing is not a cache.
        mid = min(tl, key=lambda e: abs(e["seconds"] - 600)) if tl else None
        last = tl[-1] if tl else None
        after = ""
        if mid and last:
            after = (f"; minute {mid['seconds'] // 60} → {last['seconds'] // 60}: {mib(mid['kib'])} → {mib(last['kib'])}")
            if last.get("sqlite_kib") is not None:
                after += f" (SQLite's page caches {mib(last['sqlite_kib'])} at the end, bounded by `--sqlite-cache-mib`)"
        rows.append((
            "30-minute soak at 200 runs/s: memory flat (RSS at start and end)",
            "`bench/run.sh --jobs 200 --duration 1800`",
            f"RSS start {mib(so['rss_kib']['start'])}, end {mib(so['rss_kib']['end'])}, max {mib(so['rss_kib']['max'])}{after}; "
            f"lag p50 {so['lag_ms']['p50']:.1f} / p99 {so['lag_ms']['p99']:.1f} ms; missed {so['missed']}, duplicates {so['duplicates']}",
        ))

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    note = "**Quick smoke sizes: not comparable with the targets.** " if q else ""
    head = (
        note + f"Measured {time.strftime('%Y-%m-%d')} by `bench/report.py` on {os.cpu_count()} cores ({cpu}), "
        f"{platform.system()} {platform.release()}; medians of {n} run(s); "
        f"{os.environ.get('TEMPORA_BENCH_PROFILE', 'release')} build, default settings except 256 job slots "
        "(`tempora-bench --slots`: `--local-slots 256` on one node, split between the workers of a cluster).\n\n"
        "| target | command | measured |\n|---|---|---|\n"
    )
    table = head + "".join(f"| {t} | {c} | {r} |\n" for t, c, r in rows)
    print(table)
    if a.update_readme:
        path = os.path.join(ROOT, "README.md")
        text = open(path).read()
        if BEGIN not in text or END not in text:
            raise SystemExit("README.md has no performance markers")
        pre, rest = text.split(BEGIN, 1)
        _, post = rest.split(END, 1)
        open(path, "w").write(pre + BEGIN + "\n" + table + END + post)
        print("README.md updated", file=sys.stderr)


if __name__ == "__main__":
    main()
