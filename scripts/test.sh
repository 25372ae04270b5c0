#!/usr/bin/env bash
# The project's one test command (README): makes sure what the tests need is here and running — PostgreSQL and
# Redis (started, or installed from Debian's packages), redis-cli, docker-compose and nginx (the deployment
# tests), Chromium and Node with each Node suite's packages (the browser and JavaScript client tests) — then runs
# the whole suite. Arguments go to `cargo test` (e.g. `scripts/test.sh webhooks::`).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do
    port_open "$1" && return 0
    sleep 1
  done
  echo "port $1 did not open" >&2
  return 1
}

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing: $* (install them, or run this as root to have them installed)" >&2
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

ensure_postgres() {
  if port_open 5432; then log "PostgreSQL is up"; return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
    # Tests connect as postgres over TCP without a password, as on the prepared machines.
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  wait_port 5432
}

ensure_redis() {
  # redis-server too when Redis runs elsewhere: the cluster tests start private ones.
  command -v redis-cli >/dev/null || { log "installing redis-cli"; apt_install redis-tools; }
  command -v redis-server >/dev/null || { log "installing Redis"; apt_install redis-server; }
  if port_open 6379; then log "Redis is up"; return; fi
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_port 6379
}

# The deployment tests validate docker-compose.yml with docker-compose (no engine is needed for `config`) and
# run the proxy of deploy/ (nginx) in front of the real binary; the Web SDK, console and demo tests drive
# Debian's Chromium with playwright-core, from Node.
ensure_tools() {
  local missing=()
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then log "installing ${missing[*]}"; apt_install "${missing[@]}"; fi
  # The Node packages the tests run: tests/websdk (the official Web SDKs, playwright-core), clients/js and web/.
  # Installed again only when the lock file changed since.
  local dir
  for dir in tests/websdk clients/js web; do
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
      log "npm ci in $dir"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
    fi
  done
}

ensure_postgres
ensure_redis
ensure_tools

log "cargo test --all-targets $*"
exec cargo test --all-targets "$@"
