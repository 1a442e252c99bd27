#!/usr/bin/env bash
# Make nginx (Debian's package) available to the integration tests, installing it on first use.
# Stdout: the nginx binary's path, nothing else. Nothing is configured or started here: each test starts
# its own nginx on 127.0.0.1 with a config in its own temp dir (test/support/nginx.ts).
# In CI (CI=true) it must work: any failure exits 1. Elsewhere a machine that cannot install it says why
# on stderr, exits 0 with empty stdout, and the suites needing it skip with that reason.
set -uo pipefail
log() { printf '[nginx ensure] %s\n' "$*" >&2; }
unavailable() {
  if [ "${CI:-}" = true ]; then log "cannot provide nginx in CI: $*"; exit 1; fi
  log "nginx unavailable ($*); the suites needing it are skipped"
  exit 0
}
for bin in /usr/sbin/nginx "$(command -v nginx 2>/dev/null)"; do
  [ -n "$bin" ] && [ -x "$bin" ] && { echo "$bin"; exit 0; }
done
[ "${CLOUDIMG_SYNC_SKIP_NGINX:-0}" = 1 ] && unavailable "CLOUDIMG_SYNC_SKIP_NGINX=1"
[ "$(id -u)" = 0 ] || unavailable "not root: install it with apt-get install nginx"
command -v apt-get >/dev/null 2>&1 || unavailable "not a Debian/Ubuntu machine (no apt-get)"

# The package's postinst starts nginx on port 80 from /etc/nginx: block that with policy-rc.d (exit 101)
# unless one is already in place (test/openstack/up.sh does the same).
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  made_policy=1
fi
log "installing nginx from the Debian archive"
rc=0
{ apt-get update -q >&2 &&
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    nginx >&2; } || rc=$?
[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
[ "$rc" = 0 ] || unavailable "apt-get install nginx failed (rc=$rc)"
[ -x /usr/sbin/nginx ] || unavailable "apt-get installed nginx but /usr/sbin/nginx is missing"
echo /usr/sbin/nginx
