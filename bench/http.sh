#!/usr/bin/env bash
# HTTP load benchmark (issue 4): the seed's request mix (bench/seed.lua)
# through wrk against
#   - an axum hello-world (the ceiling),
#   - `eventsift api` publishing to the real Kafka broker (cargo xtask kafka),
#   - `eventsift serve` on the embedded log (its writer included),
# in interleaved rounds, so each round's servers see the same machine: this
# VM's speed drifts by ±25 % over minutes, and a ratio to the ceiling
# measured seconds before is steadier than a req/s figure alone. Then a fixed
# 10k req/s (oha -q) for latency percentiles.
# Needs: wrk (Debian), oha (cargo install oha).
# Usage: bench/http.sh [rounds] [seconds]; CONNS (default 512), LAT_CONNS (128).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
secs=${2:-5}
conns=${CONNS:-512}
lat_conns=${LAT_CONNS:-128}

cargo xtask plugins >/dev/null
cargo build --release -q -p eventsift --bin eventsift --example hello
cargo xtask kafka start >/dev/null
bin=target/release/eventsift
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait; rm -rf "$tmp"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 300); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

target/release/examples/hello 127.0.0.1:5099 & pids+=($!)
EVENTSIFT_LOG=warn $bin api --listen 127.0.0.1:5097 --admin-listen 127.0.0.1:0 --plugins target/plugins --data-dir "$tmp/api" \
    --kafka 127.0.0.1:9092 --topic "bench-$(date +%s)" & pids+=($!)
EVENTSIFT_LOG=warn $bin serve --listen 127.0.0.1:5098 --admin-listen 127.0.0.1:0 --plugins target/plugins --data-dir "$tmp/serve" \
    --warehouse "$tmp/warehouse" --flush-interval 1s & pids+=($!)
for port in 5099 5097 5098; do
    wait_port $port
    # Warm-up (the broker's JIT, connection pools, plugin instances), not measured.
    wrk -t1 -c"$conns" -d3s -s bench/seed.lua "http://127.0.0.1:$port" >/dev/null
done

# One wrk run: "req/s p50_ms p99_ms non2xx".
measure() {
    wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/seed.lua "http://127.0.0.1:$1" | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
        /Non-2xx/ { bad = $NF } /Requests\/sec/ { rps = $2 }
        END { printf "%d %.2f %.2f %d\n", rps, p50, p99, bad + 0 }'
}

echo "== wrk -t1 -c$conns -d${secs}s, seed mix, $rounds interleaved rounds (req/s, p50 / p99 ms)"
: >"$tmp/results"
for r in $(seq 1 "$rounds"); do
    read -r h hp50 hp99 hbad < <(measure 5099)
    read -r a ap50 ap99 abad < <(measure 5097)
    read -r s sp50 sp99 sbad < <(measure 5098)
    # Let serve's writer commit what that round sent before the next round.
    sleep 2
    printf "round %d: hello %6d (%s / %s)  api %6d (%s / %s) = %.2f x hello  serve %6d (%s / %s) = %.2f x hello\n" \
        "$r" "$h" "$hp50" "$hp99" "$a" "$ap50" "$ap99" "$(echo "$a / $h" | bc -l)" \
        "$s" "$sp50" "$sp99" "$(echo "$s / $h" | bc -l)"
    [ "$abad" = 0 ] && [ "$sbad" = 0 ] || echo "   non-2xx replies: api $abad, serve $sbad"
    echo "$h $a $s $hp50 $hp99 $ap50 $ap99 $sp50 $sp99" >>"$tmp/results"
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$1" '{ print $c }' "$tmp/results" | median; }
ratio() { awk -v c="$1" '{ print $c / $1 }' "$tmp/results" | median; }
printf "median: hello %d (%s / %s ms)  api %d (%s / %s ms, %.2f x hello)  serve %d (%s / %s ms, %.2f x hello)\n" \
    "$(col 1)" "$(col 4)" "$(col 5)" "$(col 2)" "$(col 6)" "$(col 7)" "$(ratio 2)" \
    "$(col 3)" "$(col 8)" "$(col 9)" "$(ratio 3)"

for target in "hello 5099" "api 5097" "serve 5098"; do
    set -- $target
    echo "-- $1: oha -q 10000 -c $lat_conns -z ${secs}s, POST /purchase_a_sword/red/1"
    oha --no-tui -q 10000 -z "${secs}s" -c "$lat_conns" -m POST -H "Host: user1.comcast.com" \
        "http://127.0.0.1:$2/purchase_a_sword/red/1" | grep -E "Requests/sec|50.00%|99.00%|99.90%|^ +\[[0-9]+\]"
done
