#!/usr/bin/env bash
# Run every test of the workspace: unit, property, store contract and end-to-end tests that
# start the real binary. Extra arguments go to cargo nextest (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo nextest run --workspace --no-fail-fast "$@"
