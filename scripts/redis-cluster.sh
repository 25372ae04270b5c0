#!/usr/bin/env bash
# A local Redis Cluster for benchmarks and trials: three masters and three replicas on loopback (ports
# BASE..BASE+5, default 7101), nothing kept on disk, failover after 2 s of a master's silence.
# Usage: scripts/redis-cluster.sh start|stop [BASE]    (start prints the seed URLs, comma-separated)
set -euo pipefail
cmd=${1:?start or stop}
base=${2:-7101}
dir=${REDIS_CLUSTER_DIR:-/tmp/imlogin-redis-cluster-$base}
ports=$(seq "$base" $((base + 5)))
case "$cmd" in
  start)
    mkdir -p "$dir"
    for p in $ports; do
      redis-server --daemonize yes --bind 127.0.0.1 --port "$p" --dir "$dir" \
        --save "" --appendonly no --cluster-enabled yes --cluster-config-file "nodes-$p.conf" \
        --cluster-node-timeout 2000 --cluster-require-full-coverage no \
        --pidfile "$dir/$p.pid" --logfile "$dir/$p.log"
    done
    for p in $ports; do
      until redis-cli -p "$p" ping >/dev/null 2>&1; do sleep 0.1; done
    done
    # shellcheck disable=SC2046
    redis-cli --cluster create $(for p in $ports; do printf '127.0.0.1:%s ' "$p"; done) \
      --cluster-replicas 1 --cluster-yes >/dev/null
    until [ "$(redis-cli -p "$base" cluster info | grep -c 'cluster_state:ok')" = 1 ]; do sleep 0.2; done
    # Every replica in sync before anything is measured.
    for p in $ports; do
      if redis-cli -p "$p" role | head -1 | grep -q slave; then
        until redis-cli -p "$p" info replication | grep -q 'master_link_status:up'; do sleep 0.2; done
      fi
    done
    for p in $ports; do printf 'redis://127.0.0.1:%s\n' "$p"; done | paste -sd, -
    ;;
  stop)
    for p in $ports; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop [BASE]" >&2; exit 2 ;;
esac
