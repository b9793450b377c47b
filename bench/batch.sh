#!/usr/bin/env bash
# Batch ingestion benchmark (issue 15): gzipped /v1/batch requests of
# BATCH events (default 50, the mix of swords, horses and guild actions, one
# player per batch, every event with a client id) from `eventsift loadgen
# --scenario batch` against
#   - `eventsift api` publishing to the real Kafka broker (cargo xtask kafka),
#   - `eventsift serve` on the embedded log (its writer included),
# in interleaved rounds. Prints events/s per round and the medians, and
# where the CPU went: CPU microseconds per event of each process (the
# daemon, the broker, the load generator), from /proc.
# Usage: bench/batch.sh [rounds] [seconds]; BATCH (50), CLIENTS (64).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
secs=${2:-10}
batch=${BATCH:-50}
clients=${CLIENTS:-64}

cargo xtask plugins >/dev/null
cargo build --release -q -p eventsift --bin eventsift
cargo xtask kafka start >/dev/null
bin=target/release/eventsift
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 300); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
# utime + stime of a process, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
broker=$(cat target/services/kafka/pid)

EVENTSIFT_LOG=warn $bin api --listen 127.0.0.1:5097 --admin-listen 127.0.0.1:0 --plugins target/plugins --data-dir "$tmp/api" \
    --kafka 127.0.0.1:9092 --topic "bench-batch-$(date +%s)" & api=$!; pids+=($api)
EVENTSIFT_LOG=warn $bin serve --listen 127.0.0.1:5098 --admin-listen 127.0.0.1:0 --plugins target/plugins --data-dir "$tmp/serve" \
    --warehouse "$tmp/warehouse" --flush-interval 1s & serve=$!; pids+=($serve)
for port in 5097 5098; do
    wait_port $port
    # Warm-up, not measured.
    $bin loadgen --target "http://127.0.0.1:$port" --scenario batch --batch-size "$batch" --gzip \
        --clients "$clients" --duration 3s >/dev/null 2>&1 || true
done

# One run against $1 (port) whose daemon is pid $2: "events/s daemon_us broker_us loadgen_us".
measure() {
    local d0 b0 out ev
    d0=$(ticks "$2"); b0=$(ticks "$broker")
    out=$( { /usr/bin/time -f "LOADGEN %U %S" $bin loadgen --target "http://127.0.0.1:$1" --scenario batch \
        --batch-size "$batch" --gzip --clients "$clients" --duration "${secs}s"; } 2>&1 )
    ev=$(echo "$out" | awk '/^events:/ { print $2 }')
    local rate lg
    rate=$(echo "$out" | awk '/^events:/ { gsub("\\(", "", $4); print $4 }')
    lg=$(echo "$out" | awk '/^LOADGEN/ { print ($2 + $3) * 1e6 }')
    awk -v ev="$ev" -v rate="$rate" -v d="$(( $(ticks "$2") - d0 ))" -v b="$(( $(ticks "$broker") - b0 ))" \
        -v lg="$lg" -v hz="$hz" 'BEGIN { printf "%d %.2f %.2f %.2f\n", rate, d / hz * 1e6 / ev, b / hz * 1e6 / ev, lg / ev }'
}

echo "== loadgen --scenario batch --batch-size $batch --gzip --clients $clients, ${secs}s, $rounds interleaved rounds"
echo "   (events/s; CPU us per event: daemon / broker / load generator)"
: >"$tmp/results"
for r in $(seq 1 "$rounds"); do
    read -r a ad ab al < <(measure 5097 "$api")
    read -r s sd sb sl < <(measure 5098 "$serve")
    sleep 2
    printf "round %d: api on Kafka %7d events/s (%s / %s / %s)   serve %7d events/s (%s / %s / %s)\n" \
        "$r" "$a" "$ad" "$ab" "$al" "$s" "$sd" "$sb" "$sl"
    echo "$a $s $ad $ab $al $sd $sl" >>"$tmp/results"
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$1" '{ print $c }' "$tmp/results" | median; }
printf "median: api on Kafka %d events/s (CPU us/event: api %s, broker %s, loadgen %s)   serve %d events/s (serve %s, loadgen %s)\n" \
    "$(col 1)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 2)" "$(col 6)" "$(col 7)"
