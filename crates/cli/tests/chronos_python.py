"""Drive a tempora server with the real chronos-python client (PyPI `chronos-python`).

Usage: python chronos_python.py HOST:PORT MODE   (MODE: v1 | legacy)

`v1` uses the client's default (`/v1/scheduler/...`, Chronos 3.x); `legacy` uses
`scheduler_api_version=None` (`/scheduler/...`, Chronos 2.x, PUT for updates, `async` required).
Every call the client offers that the issue names is exercised: add, update, list, search, run,
delete, delete_tasks, job_stat, scheduler_graph, metrics. Exits non-zero on the first failure.
"""

import logging
import os
import sys
import time

import chronos


class Collect(logging.Handler):
    """Keeps the client's error log: it logs the server's message, then raises a generic error."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


errors = Collect()
logging.getLogger("chronos").addHandler(errors)
logging.getLogger("chronos").setLevel(logging.ERROR)

host, mode = sys.argv[1], sys.argv[2]
version = "v1" if mode == "v1" else None
# The token as the HTTP Basic password (any user name), as a Chronos user would add it.
c = chronos.connect([host], scheduler_api_version=version,
                    username="chronos", password=os.environ["TEMPORA_TOKEN"])
p = mode  # job name prefix, so both modes can share one server


def check(cond, what):
    if not cond:
        print("FAILED: %s" % what)
        sys.exit(1)
    print("ok: %s" % what)


def job(name, **extra):
    j = {
        "name": name,
        "command": "echo %s" % name,
        "owner": "ops@example.com",
        "disabled": False,
        "schedule": "R/2030-01-01T00:00:00Z/PT1H",
        "epsilon": "PT60S",
        "async": False,
    }
    j.update(extra)
    return j


def named(jobs, name):
    found = [j for j in jobs if j["name"] == name]
    return found[0] if found else None


# add: a scheduled job, a zoned one, and a dependent one.
c.add(job(p + "-extract", scheduleTimeZone="Europe/Paris"))
c.add(job(p + "-load", schedule="R5/2030-06-01T12:00:00Z/P1D", retries=0))
dep = job(p + "-report")
del dep["schedule"]
dep["parents"] = [p + "-extract", p + "-load"]
c.add(dep)

# list
jobs = c.list()
check(isinstance(jobs, list), "list returns a list")
ex = named(jobs, p + "-extract")
check(ex is not None, "list has the added job")
check(ex["scheduleTimeZone"] == "Europe/Paris", "zone kept: %r" % ex["scheduleTimeZone"])
check(ex["schedule"] == "R/2030-01-01T00:00:00/PT1H", "wall clock kept: %r" % ex["schedule"])
check(ex["retries"] == 2 and ex["owner"] == "ops@example.com", "defaults and owner")
check(named(jobs, p + "-report")["parents"] == [p + "-extract", p + "-load"], "parents listed")

# update: change the command and retries; the job keeps its name.
c.update(job(p + "-load", schedule="R5/2030-06-01T12:00:00Z/P1D", retries=3,
             command="echo updated"))
ld = named(c.list(), p + "-load")
check(ld["retries"] == 3 and ld["command"] == "echo updated", "update applied: %r" % ld)

# search (case-insensitive substring, by name and by command)
found = c.search(name=(p + "-EXTR"))
check([j["name"] for j in found] == [p + "-extract"], "search by name: %r" % found)
found = c.search(command="UPDATED")
check(p + "-load" in [j["name"] for j in found], "search by command")

# run: a manual start runs the job, and its success triggers nothing yet (one parent only).
c.run(p + "-extract")
deadline = time.time() + 30
while time.time() < deadline:
    ex = named(c.list(), p + "-extract")
    if ex["successCount"] >= 1:
        break
    time.sleep(0.2)
check(ex["successCount"] == 1 and ex["lastSuccess"] != "", "manual run succeeded: %r" % ex)

# job_stat
stat = c.job_stat(p + "-extract")
check(stat["histogram"]["count"] == 1, "job_stat histogram: %r" % stat["histogram"])
hist = stat["taskStatHistory"]
check(len(hist) == 1 and hist[0]["status"] == "success", "job_stat history: %r" % hist)
check(hist[0]["taskId"].startswith("ct:") and hist[0]["taskId"].endswith(":0:%s-extract:" % p),
      "task id: %r" % hist[0]["taskId"])

# scheduler_graph (CSV)
graph = c.scheduler_graph()
check("node,%s-extract,success,idle" % p in graph, "graph node line: %r" % graph)
check("link,%s-extract,%s-report" % (p, p) in graph, "graph link line")

# the stats calls
for call in (c.scheduler_stat_99th, c.scheduler_stat_98th, c.scheduler_stat_95th,
             c.scheduler_stat_75th, c.scheduler_stat_median, c.scheduler_stat_mean):
    stats = call()
    check(any(s["jobNameLabel"] == p + "-extract" for s in stats), "%s" % call.__name__)

# metrics (Codahale JSON; the client sends no Accept header)
m = c.metrics()
check(m["counters"]["jobs.run.success.%s-extract" % p]["count"] == 1, "metrics counters")
check("jobs.run.time.%s-extract" % p in m["histograms"], "metrics histograms")

# delete_tasks: a long job started by hand is killed.
c.add(job(p + "-sleeper", command="sleep 300"))
c.run(p + "-sleeper")
deadline = time.time() + 30
while time.time() < deadline:
    g = c.scheduler_graph()
    if "node,%s-sleeper,fresh,running" % p in g:
        break
    time.sleep(0.2)
check("node,%s-sleeper,fresh,running" % p in g, "sleeper running: %r" % g)
c.delete_tasks(p + "-sleeper")


def sleeper_line():
    return [l for l in c.scheduler_graph().splitlines() if l.startswith("node,%s-sleeper," % p)]


deadline = time.time() + 30
while time.time() < deadline:
    line = sleeper_line()
    if line and line[0].endswith(",idle"):
        break
    time.sleep(0.2)
check(line and line[0].endswith(",idle"), "delete_tasks stopped it: %r" % line)

# errors come back as ChronosAPIError with Chronos's message
try:
    c.add(job(p + "-bad", scheduleTimeZone="Mars/Olympus"))
    check(False, "unknown zone refused")
except chronos.ChronosAPIError:
    check("scheduleTimeZone" in errors.lines[-1], "unknown zone refused: %s" % errors.lines[-1])
try:
    c.job_stat(p + "-nope")
    check(False, "unknown job refused")
except chronos.ChronosAPIError:
    check("not found" in errors.lines[-1], "unknown job refused: %s" % errors.lines[-1])

# delete: the child of a scheduled parent drops it; deleting everything empties the list.
for name in ("-report", "-extract", "-load", "-sleeper"):
    c.delete(p + name)
left = [j["name"] for j in c.list() if j["name"].startswith(p + "-")]
check(left == [], "delete removed the jobs: %r" % left)
print("all chronos-python calls passed (%s)" % mode)
