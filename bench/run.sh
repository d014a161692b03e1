#!/usr/bin/env bash
# Build the release binaries and run the precision benchmark (defaults: 200 jobs @every 1s for 60 s).
# Extra arguments go to tempora-bench, e.g. `bench/run.sh --jobs 500 --duration 60`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tempora -p tempora-bench
exec "${CARGO_TARGET_DIR:-target}/release/tempora-bench" "$@"
