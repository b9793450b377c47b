#!/usr/bin/env bash
# HTTP load benchmark (issue 4): the seed's request mix (bench/seed.lua)
# through wrk against
#   - an axum hello-world (the ceiling),
#   - `eventsift serve` on the embedded log,
#   - `eventsift api` publishing to the real Kafka broker (cargo xtask kafka);
# then a fixed 10k req/s (oha -q) for latency percentiles.
# Needs: wrk (Debian), oha (cargo install oha). Usage: bench/http.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${CONNS:-64}

cargo xtask plugins >/dev/null
cargo build --release -q -p eventsift --bin eventsift --example hello
bin=target/release/eventsift
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 300); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

run() { # name port -- one server at a time, so the others take no CPU
    wait_port "$2"
    # Warm-up (JIT of the broker, connection pools), not measured.
    wrk -t1 -c"$conns" -d5s -s bench/seed.lua "http://127.0.0.1:$2" >/dev/null
    echo "== $1: wrk -t1 -c$conns -d${secs}s, seed mix"
    wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/seed.lua "http://127.0.0.1:$2" | grep -E "Requests/sec|Non-2xx| 50%| 90%| 99%|Latency  "
    echo "== $1: wrk -t1 -c512 -d${secs}s, seed mix (many users)"
    wrk -t1 -c512 -d"${secs}s" --latency -s bench/seed.lua "http://127.0.0.1:$2" | grep -E "Requests/sec|Non-2xx| 50%| 99%"
    echo "-- $1: oha -q 10000 -z ${secs}s, POST /purchase_a_sword/red/1"
    oha --no-tui -q 10000 -z "${secs}s" -c 32 -m POST -H "Host: user1.comcast.com" \
        "http://127.0.0.1:$2/purchase_a_sword/red/1" | grep -E "Requests/sec|50.00%|99.00%|99.90%|^ +\[[0-9]+\]"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

cargo xtask kafka stop >/dev/null
target/release/examples/hello 127.0.0.1:5099 & pid=$!
run hello 5099
EVENTSIFT_LOG=warn $bin serve --listen 127.0.0.1:5098 --plugins target/plugins --data-dir "$tmp/serve" & pid=$!
run "serve (embedded log)" 5098
cargo xtask kafka start
EVENTSIFT_LOG=warn $bin api --listen 127.0.0.1:5097 --plugins target/plugins --data-dir "$tmp/api" \
    --kafka 127.0.0.1:9092 --topic "bench-$(date +%s)" & pid=$!
run "api (Kafka)" 5097
