#!/usr/bin/env bash
# test/openstack/down.sh - stop the Keystone/Glance started by test/openstack/up.sh.
# Only processes recorded in $OPENSTACK_DIR/run/*.pid are signalled, and only
# if their command line / environment still mentions $OPENSTACK_DIR (guards
# against PID reuse). `--purge` also deletes $OPENSTACK_DIR afterwards.
set -euo pipefail
OPENSTACK_DIR=${OPENSTACK_DIR:-/tmp/cloudimg-sync-openstack}
log() { printf '[openstack down %s] %s\n' "$(date +%T)" "$*" >&2; }
[ -d "$OPENSTACK_DIR" ] || { log "nothing to do ($OPENSTACK_DIR absent)"; exit 0; }
D=$(cd "$OPENSTACK_DIR" && pwd -P)
RUN=$D/run

running() {  # pid exists and is not a zombie
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
ours() {  # pid
  tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$D" ||
    tr '\0' '\n' < "/proc/$1/environ" 2>/dev/null | grep -q -- "$D"
}
stop() {  # name
  local f=$RUN/$1.pid pid i
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if running "$pid" && ours "$pid"; then
    log "stopping $1 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then
      log "$1 did not exit after 15s: SIGKILL to its process group $pid"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  else
    log "$1: pid ${pid:-?} not running (or not ours); removing stale pid file"
  fi
  rm -f "$f"
}
# glance first (it talks to keystone), then keystone
stop glance-api
stop keystone
if [ "${1:-}" = "--purge" ]; then
  log "removing $D"
  rm -rf -- "$D"
fi
log "done"
