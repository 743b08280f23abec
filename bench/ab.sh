#!/usr/bin/env bash
# Two hubbub binaries (say the base of a change and the change) under the same load, in one
# run, alternating: server pinned to CPU 0, generator to CPU 1, as compare.py does. For
# "a new layer that costs the hot path shows it in a benchmark".
#
# Usage: bench/ab.sh BIN_A BIN_B [REPEATS] [SECONDS]
# Scenarios: v1 fan-out to 1,000 subscribers at maximal rate, Socket.IO echo with 1,000
# connections (the mapped `send`), v1 echo with 1,000 connections.
set -euo pipefail
a="$1"; b="$2"; repeats="${3:-3}"; secs="${4:-8}"
bench="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release/hubbub-bench"
port=3299
run() { # run BIN PROTO PATH SCENARIO...
  local bin="$1" proto="$2" path="$3"; shift 3
  local dir; dir=$(mktemp -d)
  (cd "$dir" && RUST_LOG=warn exec taskset -c 0 "$bin" --bind "127.0.0.1:$port" --store memory \
    --rate-messages 0 --rate-bytes 0) >"$dir/log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  taskset -c 1 "$bench" --proto "$proto" --url "ws://127.0.0.1:$port$path" --server-pid "$pid" "$@" | grep '^RESULT' || echo "RESULT failed"
  kill -TERM "$pid"; wait "$pid" || true; rm -rf "$dir"
}
for rep in $(seq "$repeats"); do
  for which in A B; do
    bin=$a; [ "$which" = B ] && bin=$b
    echo "repeat $rep $which fanout: $(run "$bin" v1 /ws fanout --subs 1000 --secs "$secs")"
    echo "repeat $rep $which sio-echo: $(run "$bin" sio "/socket.io/?EIO=4&transport=websocket" echo --conns 1000 --secs "$secs")"
    echo "repeat $rep $which v1-echo: $(run "$bin" v1 /ws echo --conns 1000 --secs "$secs")"
  done
done
