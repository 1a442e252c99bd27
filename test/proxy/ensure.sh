#!/usr/bin/env bash
# Install squid (the HTTP proxy of the proxy tests) from the Debian archive on first use. The tests start
# their own squid on 127.0.0.1 with a config of their own (test/support/squid.ts); this only installs it.
# In CI (CI=true) it must work: any failure fails the run. Elsewhere a machine that cannot install it
# says why (exit 0) and the proxy suite skips with that reason.
set -uo pipefail
command -v squid >/dev/null 2>&1 && exit 0
why=""
if [ "$(id -u)" != 0 ]; then why="not root (cannot apt-get install squid)"
elif ! command -v apt-get >/dev/null 2>&1; then why="not a Debian/Ubuntu machine (no apt-get)"
fi
if [ -z "$why" ]; then
  # The package would start a squid on 0.0.0.0:3128 from /etc: block service starts while installing.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  { apt-get install -y -q --no-install-recommends squid >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends squid >&2; }; }
  rc=$?
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] && command -v squid >/dev/null 2>&1 && exit 0
  why="apt-get install squid failed (rc=$rc)"
fi
if [ "${CI:-}" = true ]; then echo "proxy: cannot install squid in CI: $why" >&2; exit 1; fi
echo "proxy: squid not installed ($why); the proxy suite will be skipped" >&2
exit 0
