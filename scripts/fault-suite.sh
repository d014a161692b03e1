#!/usr/bin/env bash
# The fault-injection suite by hand: a throwaway PostgreSQL, 3 server nodes, 2 workers, 23 jobs;
# kills the leader, pauses the next one past its lease, kills a worker mid-run, restarts
# PostgreSQL, then checks the jobs' own ledger (every occurrence exactly once) and prints each
# failover's duration. CI runs it as part of scripts/test.sh. FAULT_SUITE_SECONDS=600 makes the
# steady phases longer. Pass extra cargo-nextest flags after the script name.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo nextest run -p tempora --test fault_suite --no-capture "$@"
