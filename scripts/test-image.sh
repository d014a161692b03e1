#!/usr/bin/env bash
# Build the image the container-job tests run, `tempora-test/busybox:1`: FROM scratch with
# Debian's busybox-static (no registry is reachable from the test machines, so nothing is
# pulled). Does nothing when the image is already there. Needs the `docker` CLI and engine, and
# a static /bin/busybox (`apt-get install busybox-static`).
set -euo pipefail
image="${TEMPORA_TEST_IMAGE:-tempora-test/busybox:1}"
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
busybox=/bin/busybox
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "error: $busybox is missing or not static: apt-get install busybox-static" >&2
  exit 1
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$busybox" "$ctx/busybox"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
DOCKERFILE
echo "building $image from $busybox"
docker build --quiet --tag "$image" "$ctx" >/dev/null
