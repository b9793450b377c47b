#!/usr/bin/env bash
# The classic stack (the seed's Flask app and Spark jobs) and eventsift, side
# by side on this machine: drains of a pre-filled topic and HTTP load, in
# interleaved rounds; prints the table in docs/BENCHMARKS.md ("Against the
# classic stack").
#
# Usage: bench/classic/run.sh [--events N] [side_by_side.py flags]
#   e.g. bench/classic/run.sh --events 500000 --rounds 3
#        bench/classic/run.sh --events 5000000 --rounds 1 --no-http
# Needs: Java 17 (Spark 4.2), wrk (Debian), network for the first run (PyPI
# into $CLASSIC_VENV, default ~/.cache/eventsift/classic-venv; Spark's Kafka
# source from Maven Central into ~/.ivy2). PROFILE picks the cargo profile
# of the eventsift binary (default release; dist is the same code stripped).
set -euo pipefail
cd "$(dirname "$0")/../.."
events=500000
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --events) events=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
profile=${PROFILE:-release}
venv=${CLASSIC_VENV:-$HOME/.cache/eventsift/classic-venv}
if ! "$venv/bin/python" -c 'import pyspark, flask, gunicorn, kafka' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r bench/classic/requirements.txt
fi
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo xtask plugins >/dev/null
cargo build --profile "$profile" -q -p eventsift --bin eventsift
target=${CARGO_TARGET_DIR:-target}
cargo xtask kafka start >/dev/null
topic=eventsift-bench-seedmix-$events
cargo bench --profile "$profile" -q -p eventsift --bench writer -- prefill --events "$events" --topic "$topic"
exec "$venv/bin/python" bench/classic/side_by_side.py --bin "$target/$profile/eventsift" --plugins target/plugins \
    --classic-python "$venv/bin/python" --topic "$topic" --events "$events" "${args[@]}"
