#!/usr/bin/env bash
# Cross-node fan-out: one publisher on node A, the subscribers split between nodes B and C,
# the three nodes meeting through one redis-server. Hubbub (--adapter redis, Socket.IO
# protocol, so both run the same client work) against Node socket.io 4.8 with
# @socket.io/redis-adapter (bench/peers/socketio-server.js with REDIS_URL), alternating,
# REPEATS times, in one run. On this 2-core machine the three servers and Redis share CPU 0
# and the generator has CPU 1; the figures are ratios between the two, not absolute.
#
# Usage: bench/cluster.sh [REPEATS] [SECONDS] [SUBS] [RATE]   (RATE 0: maximal, window 16)
# SERVERS="hubbub hubbub-redis node" picks what runs (default "hubbub node"); hubbub-redis is
# Hubbub with --store redis: the cluster numbers and keeps the room's history in Redis;
# hubbub-sharded and node-sharded speak the adapter's sharded flavour (SPUBLISH, a channel
# per room).
# Build first: cargo build --release --workspace; npm install in bench/peers.
set -euo pipefail
repeats="${1:-3}"
secs="${2:-8}"
subs="${3:-1000}"
rate="${4:-0}"
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$here/../target}/release"
rport=6399
ports=(3201 3202 3203)
wait_http() { for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$1/${2:-}" >/dev/null 2>&1 && return; sleep 0.1; done; }
for rep in $(seq "$repeats"); do
  for server in ${SERVERS:-hubbub node}; do
    taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
    redis=$!
    sleep 0.3
    pids=()
    for p in "${ports[@]}"; do
      dir=$(mktemp -d)
      if [ "${server#node}" = "$server" ]; then
        store=memory
        [ "$server" = hubbub-redis ] && store=redis
        pubsub=classic
        [ "$server" = hubbub-sharded ] && pubsub=sharded
        (cd "$dir" && RUST_LOG=warn exec taskset -c 0 "$target/hubbub" --bind "127.0.0.1:$p" \
          --store "$store" --adapter redis --redis-url "redis://127.0.0.1:$rport" \
          --redis-pubsub "$pubsub" --rate-messages 0 --rate-bytes 0 --compression off) >"$dir/log" 2>&1 &
        pids+=($!)
        wait_http "$p" readyz
      else
        sharded=0
        [ "$server" = node-sharded ] && sharded=1
        (cd "$here/peers" && PORT=$p REDIS_URL="redis://127.0.0.1:$rport" REDIS_SHARDED=$sharded \
          exec taskset -c 0 node socketio-server.js) >"$dir/log" 2>&1 &
        pids+=($!)
        wait_http "$p" "socket.io/?EIO=4&transport=polling"
      fi
    done
    result=$(taskset -c 1 "$target/hubbub-bench" --proto sio \
      --url "ws://127.0.0.1:${ports[0]}/socket.io/?EIO=4&transport=websocket" \
      --sub-url "ws://127.0.0.1:${ports[1]}/socket.io/?EIO=4&transport=websocket" \
      --sub-url "ws://127.0.0.1:${ports[2]}/socket.io/?EIO=4&transport=websocket" \
      fanout --subs "$subs" --rate "$rate" --secs "$secs" | grep '^RESULT' || echo "RESULT failed")
    echo "repeat $rep $server: $result"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    kill "$redis"; wait "$redis" 2>/dev/null || true
  done
done
