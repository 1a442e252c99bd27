#!/usr/bin/env bash
# test/openstack/up.sh - bring up a REAL Keystone (identity v3) and Glance
# (image v2) on 127.0.0.1 for cloudimg-sync's integration tests, on Debian 12
# (bookworm), as root, without systemd/Docker. Installs the Debian packages
# keystone + glance-api on first use (~1 min). Idempotent: re-running while up
# takes well under a second; after a reboot ~4 s.
#
# All state (configs, sqlite DBs, fernet keys, images, logs, pid files) lives
# under $OPENSTACK_DIR. Stdout carries only `export OS_...=...` lines, so
#   eval "$(test/openstack/up.sh)"
# works; progress goes to stderr. The same lines are written to
# $OPENSTACK_DIR/openrc.
#
# Tunables (environment):
#   OPENSTACK_DIR                     state dir  (default /tmp/cloudimg-sync-openstack)
#                                     a second instance needs its own dir AND ports
#   OPENSTACK_KEYSTONE_PORT           default 5000
#   OPENSTACK_GLANCE_PORT             default 9292
#   OPENSTACK_ADMIN_PASSWORD          default admin-secret  (test only!)
#   OPENSTACK_GLANCE_PASSWORD         default glance-secret (service user)
#   OPENSTACK_REGION                  default RegionOne
#   OPENSTACK_KEYSTONE_WORKERS        uwsgi processes for keystone (default 2)
#   OPENSTACK_GLANCE_WORKERS          glance-api workers; 0 = single process (default 0)
#   OPENSTACK_TOKEN_EXPIRATION        keystone token lifetime in s (default 3600)
#   OPENSTACK_GLANCE_IMAGE_SIZE_CAP   bytes (default 1099511627776 = 1 TiB)
#   OPENSTACK_GLANCE_IMPORT_METHODS   enabled import methods (default glance-direct,web-download)
#   OPENSTACK_GLANCE_CONVERSION       e.g. raw: enable Glance's image_conversion import plugin, so
#                                     glance-direct / web-download imports are converted to that
#                                     format (default unset: no conversion)
#   OPENSTACK_GLANCE_TOKEN_CACHE_TIME seconds glance caches a validated token; -1 (the
#                                     default here) = never, so a revoked token gets
#                                     401 at once (production default is 300)
#   OPENSTACK_WEB_DOWNLOAD_HOSTS      hosts web-download may fetch from
#                                     (default 127.0.0.1,localhost; any port)
#   OPENSTACK_SKIP_INSTALL=1          never call apt-get (fail if not installed)
set -euo pipefail

OPENSTACK_DIR=${OPENSTACK_DIR:-/tmp/cloudimg-sync-openstack}
KS_PORT=${OPENSTACK_KEYSTONE_PORT:-5000}
GL_PORT=${OPENSTACK_GLANCE_PORT:-9292}
ADMIN_PASSWORD=${OPENSTACK_ADMIN_PASSWORD:-admin-secret}
GLANCE_PASSWORD=${OPENSTACK_GLANCE_PASSWORD:-glance-secret}
REGION=${OPENSTACK_REGION:-RegionOne}
KS_WORKERS=${OPENSTACK_KEYSTONE_WORKERS:-2}
GL_WORKERS=${OPENSTACK_GLANCE_WORKERS:-0}
TOKEN_EXPIRATION=${OPENSTACK_TOKEN_EXPIRATION:-3600}
IMAGE_SIZE_CAP=${OPENSTACK_GLANCE_IMAGE_SIZE_CAP:-1099511627776}
IMPORT_METHODS=${OPENSTACK_GLANCE_IMPORT_METHODS:-glance-direct,web-download}
TOKEN_CACHE_TIME=${OPENSTACK_GLANCE_TOKEN_CACHE_TIME:--1}
WEB_DL_HOSTS=${OPENSTACK_WEB_DOWNLOAD_HOSTS:-127.0.0.1,localhost}
HOST=127.0.0.1
PY=/usr/bin/python3          # system python (not a pyenv shim)
# qemu-utils: Glance's image_conversion plugin runs qemu-img, and so does cloudimg-sync's `diskFormat: raw`
PKGS=(keystone glance-api uwsgi-plugin-python3 sqlite3 curl qemu-utils)

log() { printf '[openstack up %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

mkdir -p "$OPENSTACK_DIR"
OPENSTACK_DIR=$(cd "$OPENSTACK_DIR" && pwd -P)
D=$OPENSTACK_DIR
ETC=$D/etc RUN=$D/run LOGS=$D/logs DB=$D/db
mkdir -p "$ETC/keystone" "$ETC/glance" "$RUN" "$LOGS" "$DB" \
         "$D/keystone/fernet-keys" "$D/keystone/credential-keys" \
         "$D/glance/images" "$D/glance/staging" "$D/glance/locks"
chmod 700 "$D/keystone/fernet-keys" "$D/keystone/credential-keys"

# one run at a time per state dir
exec 9>"$D/.lock"
flock -w 600 9 || die "could not lock $D/.lock"

# ---------------------------------------------------------------- install
missing_pkgs() {
  local p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}
install_pkgs() {
  local missing; missing=$(missing_pkgs)
  [ -z "$missing" ] && return 0
  [ "${OPENSTACK_SKIP_INSTALL:-0}" = 1 ] && die "missing packages: $missing"
  log "installing: $(echo $missing) (keystone/glance debconf: no DB/endpoint setup)"
  local t0=$SECONDS
  # Preseed: never let the maintainer scripts create a DB, rabbit config,
  # admin tenant or endpoints (all default to false, set explicitly anyway).
  debconf-set-selections <<'EOF'
keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
glance-common glance/configure_db boolean false
glance-common glance/configure_rabbit boolean false
glance-common glance/configure_ksat boolean false
glance-api glance/configure_api-endpoint boolean false
EOF
  # The postinst scripts call `invoke-rc.d keystone|glance-api start`, which
  # would start them on 0.0.0.0 from /etc. Block that with policy-rc.d
  # (exit 101) unless one is already in place.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local rc=0
  { apt-get update -q >&2 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      $missing >&2; } || rc=$?
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || die "apt-get failed (rc=$rc)"
  log "install done in $((SECONDS - t0))s"
}
install_pkgs

# ---------------------------------------------------------------- helpers
# write file only if content changed; returns 0 if changed, 1 if not
write_if_changed() {
  local dest=$1 tmp; tmp=$(mktemp "$dest.XXXXXX")
  cat > "$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$dest"; return 0
}
running() {  # pid exists and is not a zombie
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
pid_alive() {  # $1 = pidfile ; alive AND ours (cmdline mentions our state dir)
  local pid; [ -s "$1" ] || return 1
  pid=$(cat "$1"); running "$pid" || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$D" ||
    tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -q -- "$D"
}
port_busy() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }
http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" || true; }
wait_http() {  # url expected_code timeout_s
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    [ "$(http_code "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
# start a command in its own session; the pid file holds the exec'd pid
start_bg() {  # name logfile cmd...
  local name=$1 logf=$2; shift 2
  rm -f "$RUN/$name.pid"
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$RUN/$name.pid" "$@" \
    </dev/null >>"$logf" 2>&1 9>&- &
  local i; for ((i = 0; i < 50; i++)); do [ -s "$RUN/$name.pid" ] && break; sleep 0.02; done
}
stop_pidfile() {  # name
  local f=$RUN/$1.pid pid i
  pid_alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f"); log "stopping $1 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do running "$pid" || break; sleep 0.1; done
  running "$pid" && kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$f"
}
enable_wal() { sqlite3 "$1" 'PRAGMA journal_mode=WAL;' >/dev/null; }

# ---------------------------------------------------------------- keystone
KS_URL=http://$HOST:$KS_PORT
KS_CONF=$ETC/keystone/keystone.conf
ks_conf_changed=0
write_if_changed "$KS_CONF" <<EOF && ks_conf_changed=1 || true
# generated by cloudimg-sync test/openstack/up.sh
[DEFAULT]
log_file = $LOGS/keystone.log
[database]
connection = sqlite:///$DB/keystone.sqlite
[token]
provider = fernet
expiration = $TOKEN_EXPIRATION
[fernet_tokens]
key_repository = $D/keystone/fernet-keys
[credential]
key_repository = $D/keystone/credential-keys
[identity]
# bcrypt cost 4 instead of 12: password auth ~40 ms instead of ~250 ms
password_hash_rounds = 4
[oslo_policy]
policy_dirs = /etc/keystone/policy.d
EOF
KM=(keystone-manage --config-file "$KS_CONF")
kmlog=$LOGS/keystone-manage.log

if [ ! -f "$D/.keystone-db-synced" ]; then
  stop_pidfile keystone
  log "keystone: db_sync, fernet_setup, credential_setup"
  "${KM[@]}" db_sync >>"$kmlog" 2>&1 || die "keystone db_sync failed, see $kmlog"
  enable_wal "$DB/keystone.sqlite"
  touch "$D/.keystone-db-synced"
fi
[ -e "$D/keystone/fernet-keys/0" ] ||
  "${KM[@]}" fernet_setup --keystone-user root --keystone-group root >>"$kmlog" 2>&1 || die "fernet_setup failed"
[ -e "$D/keystone/credential-keys/0" ] ||
  "${KM[@]}" credential_setup --keystone-user root --keystone-group root >>"$kmlog" 2>&1 || die "credential_setup failed"

BOOT_SIG=$(printf '%s|%s|%s' "$ADMIN_PASSWORD" "$REGION" "$KS_URL" | sha256sum | cut -c1-32)
if [ "$(cat "$D/.keystone-bootstrapped" 2>/dev/null)" != "$BOOT_SIG" ]; then
  log "keystone: bootstrap (admin user/project, region $REGION, identity endpoints)"
  OS_BOOTSTRAP_PASSWORD=$ADMIN_PASSWORD "${KM[@]}" bootstrap \
    --bootstrap-username admin --bootstrap-project-name admin \
    --bootstrap-role-name admin --bootstrap-service-name keystone \
    --bootstrap-region-id "$REGION" \
    --bootstrap-admin-url "$KS_URL/v3/" --bootstrap-public-url "$KS_URL/v3/" \
    --bootstrap-internal-url "$KS_URL/v3/" >>"$kmlog" 2>&1 || die "keystone bootstrap failed, see $kmlog"
  echo "$BOOT_SIG" > "$D/.keystone-bootstrapped"
  rm -f "$D/.glance-registered"
fi

KS_CMD=(env "OS_KEYSTONE_CONFIG_FILES=$KS_CONF" uwsgi --plugins python3
  --http-socket "$HOST:$KS_PORT" --add-header 'Connection: close'
  --wsgi-file /usr/bin/keystone-wsgi-public
  --master --processes "$KS_WORKERS" --threads 1 --lazy-apps
  --die-on-term --no-orphans --skip-atexit --buffer-size 65535
  --logto "$LOGS/keystone-uwsgi.log")
# the command line is part of the config: restart if it changed
printf '%s\n' "${KS_CMD[@]}" | write_if_changed "$RUN/keystone.cmd" && ks_conf_changed=1 || true

if pid_alive "$RUN/keystone.pid" && [ "$ks_conf_changed" = 1 ]; then
  log "keystone config changed: restarting"; stop_pidfile keystone
fi
if ! pid_alive "$RUN/keystone.pid"; then
  port_busy "$KS_PORT" && die "port $KS_PORT is already in use by another process"
  log "starting keystone (uwsgi) on $KS_URL"
  start_bg keystone "$LOGS/keystone-uwsgi.stdout" "${KS_CMD[@]}"
fi
wait_http "$KS_URL/v3/" 200 60 || die "keystone not answering on $KS_URL/v3/ (see $LOGS/keystone*.log)"

# ---------------------------------------------- glance user/service/endpoints
GL_URL=http://$HOST:$GL_PORT
REG_SIG=$(printf '%s|%s|%s|%s' "$BOOT_SIG" "$GLANCE_PASSWORD" "$GL_URL" "$REGION" | sha256sum | cut -c1-32)
if [ "$(cat "$D/.glance-registered" 2>/dev/null)" != "$REG_SIG" ]; then
  log "keystone: registering service project, glance user, image service and endpoints"
  KS_URL=$KS_URL ADMIN_PASSWORD=$ADMIN_PASSWORD GLANCE_PASSWORD=$GLANCE_PASSWORD \
  GL_URL=$GL_URL REGION=$REGION "$PY" - >&2 <<'PYEOF' || die "registration in keystone failed"
import json, os, urllib.request, urllib.error
ks, region, gl = os.environ["KS_URL"] + "/v3", os.environ["REGION"], os.environ["GL_URL"]
def call(method, path, body=None, token=None, ok=(200, 201, 204)):
    req = urllib.request.Request(ks + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"X-Auth-Token": token} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return r.status, r.headers, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path} -> {e.code}: {e.read()[:300]!r}")
auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": "admin", "domain": {"id": "default"}, "password": os.environ["ADMIN_PASSWORD"]}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
_, h, _ = call("POST", "/auth/tokens", auth)
tok = h["X-Subject-Token"]
def find_or_create(coll, query, body):
    key = coll[:-1]
    _, _, res = call("GET", f"/{coll}?{query}", token=tok)
    if res[coll]:
        return res[coll][0]["id"], False
    _, _, res = call("POST", f"/{coll}", {key: body}, token=tok)
    return res[key]["id"], True
proj, _ = find_or_create("projects", "name=service&domain_id=default",
                         {"name": "service", "domain_id": "default", "description": "service project"})
user, created = find_or_create("users", "name=glance&domain_id=default",
                               {"name": "glance", "domain_id": "default", "password": os.environ["GLANCE_PASSWORD"]})
if not created:   # make sure the password matches the config
    call("PATCH", f"/users/{user}", {"user": {"password": os.environ["GLANCE_PASSWORD"], "enabled": True}}, token=tok)
for rname in ("admin", "service"):
    rid, _ = find_or_create("roles", f"name={rname}", {"name": rname})
    call("PUT", f"/projects/{proj}/users/{user}/roles/{rid}", token=tok)
svc, _ = find_or_create("services", "type=image", {"type": "image", "name": "glance", "enabled": True})
for iface in ("public", "internal", "admin"):
    _, _, res = call("GET", f"/endpoints?service_id={svc}&interface={iface}", token=tok)
    eps = res["endpoints"]
    if not eps:
        call("POST", "/endpoints", {"endpoint": {"service_id": svc, "interface": iface,
             "region_id": region, "url": gl, "enabled": True}}, token=tok)
    elif eps[0]["url"] != gl or eps[0].get("region_id") != region:
        call("PATCH", f"/endpoints/{eps[0]['id']}", {"endpoint": {"url": gl, "region_id": region}}, token=tok)
print("glance registered: project", proj, "user", user, "service", svc)
PYEOF
  echo "$REG_SIG" > "$D/.glance-registered"
fi

# ---------------------------------------------------------------- glance
GL_CONF=$ETC/glance/glance-api.conf
gl_conf_changed=0
cp_if_changed() { write_if_changed "$2" < "$1"; }
cp_if_changed /etc/glance/glance-api-paste.ini "$ETC/glance/glance-api-paste.ini" && gl_conf_changed=1 || true
write_if_changed "$GL_CONF" <<EOF && gl_conf_changed=1 || true
# generated by cloudimg-sync test/openstack/up.sh
[DEFAULT]
bind_host = $HOST
bind_port = $GL_PORT
workers = $GL_WORKERS
log_file = $LOGS/glance-api.log
image_size_cap = $IMAGE_SIZE_CAP
enabled_import_methods = [$IMPORT_METHODS]
node_staging_uri = file://$D/glance/staging
[database]
connection = sqlite:///$DB/glance.sqlite
[glance_store]
stores = file,http
default_store = file
filesystem_store_datadir = $D/glance/images
[keystone_authtoken]
www_authenticate_uri = $KS_URL
auth_url = $KS_URL
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = $GLANCE_PASSWORD
region_name = $REGION
service_token_roles_required = true
token_cache_time = $TOKEN_CACHE_TIME
[oslo_concurrency]
lock_path = $D/glance/locks
[paste_deploy]
flavor = keystone
config_file = $ETC/glance/glance-api-paste.ini
[import_filtering_opts]
# web-download: allow these hosts (loopback is refused unless listed) on any port
allowed_hosts = [$WEB_DL_HOSTS]
allowed_ports = []
EOF

if [ ! -f "$D/.glance-db-synced" ]; then
  stop_pidfile glance-api
  log "glance: db_sync"
  glance-manage --config-file "$GL_CONF" db_sync >>"$LOGS/glance-manage.log" 2>&1 ||
    die "glance db_sync failed, see $LOGS/glance-manage.log"
  enable_wal "$DB/glance.sqlite"
  touch "$D/.glance-db-synced"
fi

# optional: Glance converts imported images (glance-direct / web-download) with its image_conversion plugin
GL_IMPORT_CONF=$ETC/glance/glance-image-import.conf
if [ -n "${OPENSTACK_GLANCE_CONVERSION:-}" ]; then
  write_if_changed "$GL_IMPORT_CONF" <<EOF && gl_conf_changed=1 || true
# generated by cloudimg-sync test/openstack/up.sh
[image_import_opts]
image_import_plugins = ['image_conversion']
[image_conversion]
output_format = $OPENSTACK_GLANCE_CONVERSION
EOF
  GL_CMD=(glance-api --config-file "$GL_CONF" --config-file "$GL_IMPORT_CONF")
else
  rm -f "$GL_IMPORT_CONF"
  GL_CMD=(glance-api --config-file "$GL_CONF")
fi
printf '%s\n' "${GL_CMD[@]}" | write_if_changed "$RUN/glance-api.cmd" && gl_conf_changed=1 || true
if pid_alive "$RUN/glance-api.pid" && [ "$gl_conf_changed" = 1 ]; then
  log "glance config changed: restarting"; stop_pidfile glance-api
fi
if ! pid_alive "$RUN/glance-api.pid"; then
  port_busy "$GL_PORT" && die "port $GL_PORT is already in use by another process"
  log "starting glance-api on $GL_URL"
  start_bg glance-api "$LOGS/glance-api.stdout" "${GL_CMD[@]}"
fi
wait_http "$GL_URL/versions" 200 60 || die "glance not answering on $GL_URL (see $LOGS/glance-api*.log)"

# ------------------------------------------------ end-to-end health check
TOKEN=$(curl -s -m 30 -D - -o /dev/null -H 'Content-Type: application/json' \
  -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"},\"password\":\"$ADMIN_PASSWORD\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}}}" \
  "$KS_URL/v3/auth/tokens" | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r')
[ -n "$TOKEN" ] || die "could not get a token from keystone"
code=$(http_code -H "X-Auth-Token: $TOKEN" "$GL_URL/v2/images?limit=1")
[ "$code" = 200 ] || die "authenticated GET $GL_URL/v2/images returned $code (see $LOGS/glance-api.log)"
log "keystone $KS_URL/v3 and glance $GL_URL are up (state: $D)"

write_if_changed "$D/openrc" <<EOF || true
export OS_AUTH_URL=$KS_URL/v3
export OS_USERNAME=admin
export OS_PASSWORD=$ADMIN_PASSWORD
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=$REGION
export OS_IDENTITY_API_VERSION=3
export OS_INTERFACE=public
EOF
cat "$D/openrc"
