#!/usr/bin/env bash
# A local Redis Cluster for benchmarks and trials: three masters and three replicas on loopback (ports
# BASE..BASE+5, default 7101), nothing kept on disk, failover after 2 s of a master's silence. MASTERS and
# REPLICAS (per master) change the shape, e.g. 1 0 for a single master in cluster mode.
# Usage: scripts/redis-cluster.sh start|stop [BASE] [MASTERS] [REPLICAS]    (start prints the seed URLs)
set -euo pipefail
cmd=${1:?start or stop}
base=${2:-7101}
masters=${3:-3}
replicas=${4:-1}
dir=${REDIS_CLUSTER_DIR:-/tmp/imlogin-redis-cluster-$base}
ports=$(seq "$base" $((base + masters * (1 + replicas) - 1)))
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
    if [ "$masters" = 1 ]; then
      # redis-cli --cluster create wants three masters at least: one takes every slot by itself.
      redis-cli -p "$base" cluster addslotsrange 0 16383 >/dev/null
      for p in $ports; do
        [ "$p" = "$base" ] && continue
        redis-cli -p "$p" cluster meet 127.0.0.1 "$base" >/dev/null
        id=$(redis-cli -p "$base" cluster myid)
        until redis-cli -p "$p" cluster nodes | grep -q "^$id"; do sleep 0.1; done
        redis-cli -p "$p" cluster replicate "$id" >/dev/null
      done
    else
      # shellcheck disable=SC2046
      redis-cli --cluster create $(for p in $ports; do printf '127.0.0.1:%s ' "$p"; done) \
        --cluster-replicas "$replicas" --cluster-yes >/dev/null
    fi
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
  *) echo "usage: $0 start|stop [BASE] [MASTERS] [REPLICAS]" >&2; exit 2 ;;
esac
