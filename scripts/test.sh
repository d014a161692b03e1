#!/usr/bin/env bash
# Run every test of the workspace: unit, property, store contract and end-to-end tests that
# start the real binary. Extra arguments go to cargo nextest (e.g. a test name filter).
#
# The Chronos client tests drive the real `chronos-python` client (PyPI) from a virtualenv,
# created here on first use in target/chronos-venv (needs python3 with venv, and curl); the API
# schema test runs Schemathesis (PyPI) from target/schemathesis-venv; the container-job tests
# need the Docker engine and busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CHRONOS_VENV:-target/chronos-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import chronos' 2>/dev/null; then
  echo "creating $venv with chronos-python 1.2.1"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check chronos-python==1.2.1
fi
export CHRONOS_VENV="$(cd "$venv" && pwd)"
# The API schema test (crates/cli/tests/api_schema.rs) runs Schemathesis from its own venv.
st_venv="${SCHEMATHESIS_VENV:-target/schemathesis-venv}"
if [ ! -x "$st_venv/bin/st" ]; then
  echo "creating $st_venv with schemathesis 4.32.5"
  python3 -m venv "$st_venv"
  "$st_venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
export SCHEMATHESIS_VENV="$(cd "$st_venv" && pwd)"
# The notification tests (crates/cli/tests/notifications.rs) send email to aiosmtpd (PyPI) with
# STARTTLS and AUTH, from target/smtp-venv.
smtp_venv="${SMTP_VENV:-target/smtp-venv}"
if [ ! -x "$smtp_venv/bin/python" ] || ! "$smtp_venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
  echo "creating $smtp_venv with aiosmtpd 1.4.6"
  python3 -m venv "$smtp_venv"
  "$smtp_venv/bin/pip" install --quiet --disable-pip-version-check aiosmtpd==1.4.6
fi
export SMTP_VENV="$(cd "$smtp_venv" && pwd)"
# The container-job tests (crates/cli/tests/container_jobs.rs) run a local image on the Docker
# engine: built here when missing (FROM scratch with Debian's busybox-static).
scripts/test-image.sh
exec cargo nextest run --workspace --no-fail-fast "$@"
