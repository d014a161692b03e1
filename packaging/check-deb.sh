#!/usr/bin/env bash
# Check the Debian package built by packaging/build-deb.sh: install it into a throwaway root
# (dpkg --root, maintainer scripts run chrootless, which skip the system user and systemctl),
# check its files, conffiles and scripts, start the installed binary with the shipped
# configuration, and verify the systemd units with systemd-analyze (any warning fails).
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "check-deb: $*" >&2; exit 1; }
deb=$(ls target/packaging/tempora_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || fail "no package in target/packaging: run packaging/build-deb.sh first"
root=$(mktemp -d)
data=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$root" "$data"; }
trap cleanup EXIT

mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
# --force-depends: the throwaway root has no libc6 or adduser package (the host provides them).
dpkg --root="$root" --force-script-chrootless --force-depends -i "$deb" >/dev/null 2>&1 \
  || fail "dpkg -i failed"
dpkg --root="$root" -s tempora | grep -qx 'Status: install ok installed' || fail "not installed"

for f in usr/bin/tempora etc/tempora/tempora.toml etc/tempora/worker.env \
  lib/systemd/system/tempora.service lib/systemd/system/tempora-worker.service \
  usr/share/man/man1/tempora.1.gz usr/share/man/man1/tempora-server.1.gz \
  usr/share/man/man1/tempora-worker.1.gz usr/share/man/man1/tempora-job-backfill.1.gz \
  usr/share/bash-completion/completions/tempora usr/share/zsh/vendor-completions/_tempora \
  usr/share/fish/vendor_completions.d/tempora.fish usr/share/doc/tempora/README.md \
  usr/share/doc/tempora/copyright; do
  [ -e "$root/$f" ] || fail "missing /$f"
done
for f in /etc/tempora/tempora.toml /etc/tempora/worker.env; do
  grep -qx "$f" "$root/var/lib/dpkg/info/tempora.conffiles" || fail "$f is not a conffile"
done
[ "$(stat -c %a "$root/etc/tempora/tempora.toml")" = 640 ] || fail "tempora.toml is not 0640"
zcat "$root/usr/share/man/man1/tempora-server.1.gz" | grep -q '^\.TH' || fail "man page is not roff"
"$root/usr/bin/tempora" --version | grep -q '^tempora ' || fail "the installed binary does not run"

# The shipped configuration starts a server (data directory and port overridden).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TEMPORA_DATA_DIR="$data" TEMPORA_LISTEN="127.0.0.1:$port" \
  "$root/usr/bin/tempora" server --config "$root/etc/tempora/tempora.toml" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  [ "$(curl -s "http://127.0.0.1:$port/health" || true)" = "OK" ] && break
  sleep 0.1
done
[ "$(curl -s "http://127.0.0.1:$port/health")" = "OK" ] || fail "server with the shipped config: $(cat "$data/server.log")"
kill "$server"; wait "$server" 2>/dev/null || true; server=""

# The units: systemd-analyze resolves their dependencies in the root (the host's targets).
mkdir -p "$root/lib/systemd/system"
cp -n /lib/systemd/system/*.target "$root/lib/systemd/system/"
out=$(systemd-analyze verify --man=no --root="$root" \
  /lib/systemd/system/tempora.service /lib/systemd/system/tempora-worker.service 2>&1) \
  || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
for opt in User=tempora ProtectSystem=strict NoNewPrivileges=yes Restart=on-failure \
  StateDirectory=tempora; do
  grep -qx "$opt" "$root/lib/systemd/system/tempora.service" || fail "tempora.service lacks $opt"
done
grep -qx 'EnvironmentFile=/etc/tempora/worker.env' "$root/lib/systemd/system/tempora-worker.service" \
  || fail "tempora-worker.service lacks its EnvironmentFile"
echo "check-deb: $deb installs and checks out"
