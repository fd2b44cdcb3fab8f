#!/usr/bin/env bash
# Scaling out on one host: one tulipd against two tulipd instances sharing the port with
# `reuse_port` (what tulipd@.service runs), echo throughput side by side in one run.
#
# For each round and for 1 and 2 instances: start the instances (each a fresh release tulipd whose
# echo listener has "reuse_port": true on the same 127.0.0.1 port), prime them with one untimed
# EchoLoad run, run EchoLoad (100 connections x 1 KiB ping-pong, 1 s warm-up + 5 s measured by
# default; the kernel spreads the connections over the instances), read the instances' CPU before
# and after, stop them with SIGTERM. The table shows medians over the rounds: msgs/s, its ratio to
# one instance, and server CPU microseconds per message (all instances together).
#
# Usage: Benchmarks/scripts/bench-scale.sh [--duration N] [--warmup N] [--connections N] [--size N]
#          [--repeat N] [--skip-build] [--tulipd PATH] [--output FILE]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
PYTHON=${PYTHON:-python3}
BENCH_NAME=bench-scale
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

DURATION=5
WARMUP=1
CONNECTIONS=100
SIZE=1024
REPEAT=3
SKIP_BUILD=0
TULIPD=""
OUTPUT=$BENCH_DIR/results/scale-latest.json
BUILD_TIMEOUT=1800
READY_TIMEOUT=20
STOP_TIMEOUT=5

while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
        --warmup) WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
        --size) SIZE=${2:?--size needs a value}; shift 2 ;;
        --repeat) REPEAT=${2:?--repeat needs a value}; shift 2 ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --tulipd) TULIPD=${2:?--tulipd needs a path}; shift 2 ;;
        --output) OUTPUT=${2:?--output needs a value}; shift 2 ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
is_positive "$DURATION" || die "--duration: a positive number of seconds"
is_number "$WARMUP" || die "--warmup: a number of seconds"
is_count "$CONNECTIONS" || die "--connections: a positive integer"
is_count "$SIZE" || die "--size: a positive integer"
if ! is_count "$REPEAT" || ((REPEAT > 20)); then die "--repeat: 1...20"; fi

TMP=$(mktemp -d /tmp/tulip-bench.XXXXXX)
RUNS=$TMP/runs.jsonl
: >"$RUNS"
PIDS=()
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do terminate "$pid" "tulipd $pid"; done
    PIDS=()
}
install_traps

if ((SKIP_BUILD == 0)); then
    log "building EchoLoad (release)"
    build_products EchoLoad
fi
BIN=$(swift build -c release --package-path "$BENCH_DIR" --show-bin-path)
[[ -x $BIN/EchoLoad ]] || die "$BIN/EchoLoad missing (run without --skip-build)"
resolve_tulipd "$SKIP_BUILD"
[[ -z $TULIPD_SKIP ]] || die "$TULIPD_SKIP"

probe() {
    "$PYTHON" -c 'import socket, sys; s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1); s.close()' "$1" 2>/dev/null
}

# run_instances N ROUND: N instances on one port, one measured EchoLoad run, appended to $RUNS.
run_instances() {
    local count=$1 round=$2 port i before=0 after=0 ticks rc=0
    port=$(free_port tcp)
    tulipd_config "$TMP/scale.json" <<JSON
[{"name":"echo","protocol":"echo","tcp":{"host":"127.0.0.1","port":$port,"reuse_port":true}}]
JSON
    for ((i = 0; i < count; i++)); do
        "$TULIPD" run --config "$TMP/scale.json" >"$TMP/tulipd-$i.out" 2>"$TMP/tulipd-$i.err" </dev/null &
        PIDS+=($!)
        wait_ready "$!" probe "$port" || die "instance $i not ready: $(tail -n 3 "$TMP/tulipd-$i.err")"
    done
    log "round $round/$REPEAT: $count instance(s) on port $port"
    timeout 60 "$BIN/EchoLoad" --tcp "127.0.0.1:$port" --connections "$CONNECTIONS" --size "$SIZE" \
        --warmup 0 --duration 1 >/dev/null 2>&1 || true
    for pid in "${PIDS[@]}"; do ticks=$(cpu_ticks "$pid"); before=$((before + ticks)); done
    timeout "$(client_timeout "$WARMUP" "$DURATION")" "$BIN/EchoLoad" --tcp "127.0.0.1:$port" \
        --connections "$CONNECTIONS" --size "$SIZE" --warmup "$WARMUP" --duration "$DURATION" \
        >"$TMP/run.json" 2>"$TMP/run.err" || rc=$?
    for pid in "${PIDS[@]}"; do ticks=$(cpu_ticks "$pid"); after=$((after + ticks)); done
    stop_servers
    ((rc == 0)) || die "EchoLoad exit $rc: $(tail -n 2 "$TMP/run.err")"
    RECORD_MERGE_KEY=client record instances="$count" round="$round" server_cpu_ticks=$((after - before)) \
        client="$TMP/run.json"
}

STARTED=$(utc_now)
for ((round = 1; round <= REPEAT; round++)); do
    run_instances 1 "$round"
    run_instances 2 "$round"
done

mkdir -p "$(dirname "$OUTPUT")"
REPORTED=1
"$PYTHON" - "$RUNS" "$OUTPUT" "$(getconf CLK_TCK)" "$STARTED" "$(nproc)" "$WARMUP" "$DURATION" <<'PY'
import json, statistics, sys
runs_path, output, clk, started, cpus, warmup, duration = sys.argv[1:]
runs = [json.loads(line) for line in open(runs_path)]
rows = {}
for run in runs:
    messages = run["messages_per_second"] * run["seconds"]
    # CPU was read around warm-up and measured window together.
    window = float(warmup) + float(duration)
    cpu_us = run["server_cpu_ticks"] / int(clk) * 1e6 * (run["seconds"] / window)
    rows.setdefault(run["instances"], []).append((run["messages_per_second"], cpu_us / messages))
table = {n: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for n, v in rows.items()}
one = table[1][0]
print(f"scale-out on one host ({cpus} CPUs), echo 100 x 1 KiB ping-pong, medians of {len(rows[1])} rounds")
print(f"{'instances':>9}  {'msgs/s':>10}  {'vs one':>6}  {'server CPU us/msg':>17}")
for n in sorted(table):
    print(f"{n:>9}  {table[n][0]:>10.0f}  {table[n][0] / one:>5.2f}x  {table[n][1]:>17.2f}")
json.dump({"started": started, "cpus": int(cpus), "runs": runs,
           "medians": {str(n): {"messages_per_second": v[0], "server_cpu_us_per_message": v[1]} for n, v in table.items()}},
          open(output, "w"), indent=2)
PY
