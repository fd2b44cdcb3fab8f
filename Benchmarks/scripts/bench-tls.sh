#!/usr/bin/env bash
# TLS benchmark: tulipd's `echo` plugin on a TLS listener (system OpenSSL through TulipTLS) against
# CPython asyncio+ssl and uvloop+ssl echo servers (python/echo_server.py --certfile), side by side.
#
# A CA and an ECDSA P-256 server certificate for localhost are made with the openssl CLI in a temp dir.
# For each server and round: start it fresh on 127.0.0.1, wait until it accepts, then run the load
# client (python/tls_load.py, on uvloop) twice:
#   handshakes - CONCURRENCY loops of connect, full TLS handshake (no resumption), close with
#                close_notify both ways: handshakes per second;
#   echo       - CONNECTIONS connections x SIZE bytes ping-pong inside TLS: round trips per second.
# Each client run is warm-up + measured window (bounded: at most 20 s), and reads the server's
# utime+stime (/proc/PID/stat) at the window's edges, so the table also shows server CPU µs per
# handshake and per round trip, and ratios to asyncio+ssl. The client is Python: with --pin the
# server gets CPU 0 and the client CPU 1, and the client's own CPU is in the JSON, to tell when the
# client, not the server, is the limit. See Benchmarks/README.md.
#
# Usage: Benchmarks/scripts/bench-tls.sh [--duration N] [--warmup N] [--connections N] [--size N]
#          [--concurrency N] [--repeat N] [--only tulipd,asyncio,uvloop] [--pin] [--skip-build]
#          [--tulipd PATH] [--output FILE]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
PYTHON=${PYTHON:-python3}
BENCH_NAME=bench-tls
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
LOAD=$BENCH_DIR/python/tls_load.py

DURATION=5
WARMUP=1
CONNECTIONS=100
SIZE=1024
CONCURRENCY=8
REPEAT=1
ONLY=tulipd,asyncio,uvloop
SKIP_BUILD=0
PIN=0
TULIPD=""
OUTPUT=$BENCH_DIR/results/tls-latest.json

BUILD_TIMEOUT=1800 # seconds the release build may take (SwiftPM may also wait for another build's lock)
READY_TIMEOUT=20   # seconds a server may take to become ready
STOP_TIMEOUT=5     # seconds a server may take to exit after SIGTERM before SIGKILL
ALL_SERVERS=(tulipd asyncio uvloop)

usage() {
    cat <<USAGE
Usage: $(basename "$0") [options]

  --duration N      measured seconds per client run (default $DURATION; warm-up + duration <= 20)
  --warmup N        seconds before the measured window opens (default $WARMUP)
  --connections N   echo connections (default $CONNECTIONS)
  --size N          bytes per echo message (default $SIZE)
  --concurrency N   handshake loops at once (default $CONCURRENCY)
  --repeat N        rounds; each round runs every server once, fresh; the table shows medians (default $REPEAT)
  --only LIST       servers, comma-separated from ${ALL_SERVERS[*]} (default all)
  --pin             pin the server to CPU 0 and the client to CPU 1 (taskset)
  --skip-build      use the release tulipd already built
  --tulipd PATH     benchmark this tulipd binary instead of building the one at the root
  --output FILE     JSON results (default Benchmarks/results/tls-latest.json)
USAGE
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
        --warmup) WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
        --size) SIZE=${2:?--size needs a value}; shift 2 ;;
        --concurrency) CONCURRENCY=${2:?--concurrency needs a value}; shift 2 ;;
        --repeat) REPEAT=${2:?--repeat needs a value}; shift 2 ;;
        --only) ONLY=${2:?--only needs a value}; shift 2 ;;
        --pin) PIN=1; shift ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --tulipd) TULIPD=${2:?--tulipd needs a path}; shift 2 ;;
        --output) OUTPUT=${2:?--output needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_positive "$DURATION" || die "--duration must be a positive number"
is_number "$WARMUP" || die "--warmup must be a number"
awk -v w="$WARMUP" -v d="$DURATION" 'BEGIN { exit !(w + d <= 20) }' || die "--warmup + --duration must be at most 20 s"
if ! is_count "$CONNECTIONS" || ((CONNECTIONS > 1000)); then die "--connections: 1...1000"; fi
if ! is_count "$SIZE" || ((SIZE > 1048576)); then die "--size: 1...1048576"; fi
if ! is_count "$CONCURRENCY" || ((CONCURRENCY > 100)); then die "--concurrency: 1...100"; fi
if ! is_count "$REPEAT" || ((REPEAT > 20)); then die "--repeat: 1...20"; fi
select_names SERVERS --only server "${ALL_SERVERS[*]}" "$ONLY" "${ALL_SERVERS[@]}"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for the client, the yardsticks and the report)"
command -v openssl >/dev/null || die "the openssl CLI is needed to make the test certificates"
pin_prefixes "$PIN"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tulip-bench-tls.XXXXXX")
RUNS=$TMP/runs.jsonl
: >"$RUNS"
declare -A SKIP=()
SERVER_PID=""
SERVER_EXIT_STATUS=""

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    terminate "$SERVER_PID" "server ($SERVER_PID)"
    SERVER_EXIT_STATUS=$TERMINATED_STATUS
    SERVER_PID=""
}
stop_servers() { stop_server; }
install_traps

probe() {
    "$PYTHON" - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.close()
PY
}

# ---------------------------------------------------------------------------------------------------
# Certificates, client, tulipd

(
    cd "$TMP"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj /CN=Tulip-Bench-CA
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=localhost
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext
) >"$TMP/openssl.log" 2>&1 || { tail -n 5 "$TMP/openssl.log" >&2; die "making the test certificates failed"; }

if ! "$PYTHON" -c 'import uvloop' 2>/dev/null; then
    log "installing uvloop with pip (the load client runs on it)"
    if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check uvloop >"$TMP/pip.log" 2>&1 \
        || ! "$PYTHON" -c 'import uvloop' 2>/dev/null; then
        tail -n 5 "$TMP/pip.log" >&2
        die "pip install uvloop failed"
    fi
fi

if [[ " ${SERVERS[*]} " == *" tulipd "* ]]; then
    resolve_tulipd "$SKIP_BUILD"
    if [[ -n $TULIPD_SKIP ]]; then SKIP[tulipd]=$TULIPD_SKIP; fi
fi

# ---------------------------------------------------------------------------------------------------
# One server

# start_server NAME: starts it on a free port, sets SERVER_PID and PORT; returns 1 (with START_ERROR
# set) when it dies or is not ready within READY_TIMEOUT.
start_server() {
    local name=$1 out=$TMP/$1.out err=$TMP/$1.err
    local -a command
    PORT=$(free_port tcp)
    local tls=(--certfile "$TMP/server.pem" --keyfile "$TMP/server.key")
    case $name in
        asyncio) command=("$PYTHON" "$BENCH_DIR/python/echo_server.py" --tcp "127.0.0.1:$PORT" "${tls[@]}") ;;
        uvloop) command=("$PYTHON" "$BENCH_DIR/python/echo_server.py" --uvloop --tcp "127.0.0.1:$PORT" "${tls[@]}") ;;
        tulipd)
            tulipd_config "$TMP/tulipd.json" <<JSON
[{"name":"echo-tls","protocol":"echo","tcp":{"host":"127.0.0.1","port":$PORT},
  "tls":{"certificate_chain":"$TMP/server.pem","private_key":"$TMP/server.key"}}]
JSON
            command=("$TULIPD" run --config "$TMP/tulipd.json")
            ;;
    esac
    : >"$out"
    : >"$err"
    "${SERVER_PREFIX[@]}" "${command[@]}" >"$out" 2>"$err" </dev/null &
    SERVER_PID=$!
    local ready=0
    wait_ready "$SERVER_PID" probe "$PORT" || ready=$?
    ((ready == 0)) && return 0
    stop_server
    start_error "$ready" "$out" "$err" "not ready"
    return 1
}

RECORD_MERGE_KEY=client

# client MODE OUT: one bounded tls_load.py run against the current server.
client() {
    timeout "$(client_timeout "$WARMUP" "$DURATION")" "${CLIENT_PREFIX[@]}" "$PYTHON" "$LOAD" "$1" \
        --port "$PORT" --ca "$TMP/ca.pem" --server-pid "$SERVER_PID" --warmup "$WARMUP" --duration "$DURATION" \
        --connections "$CONNECTIONS" --size "$SIZE" --concurrency "$CONCURRENCY" >"$2" 2>"$2.err"
}

# measure NAME ROUND: both workloads against one fresh server, appended to $RUNS.
measure() {
    local name=$1 round=$2 mode rc note
    if [[ -n ${SKIP[$name]:-} ]]; then
        for mode in handshakes echo; do
            record server="$name" workload="$mode" round="$round" status=skipped note="${SKIP[$name]}"
        done
        return 0
    fi
    log "round $round/$REPEAT: $name"
    START_ERROR=""
    if ! start_server "$name"; then
        log "$name: server $START_ERROR"
        for mode in handshakes echo; do
            record server="$name" workload="$mode" round="$round" status=failed note="server $START_ERROR"
        done
        return 0
    fi
    for mode in handshakes echo; do
        rc=0
        client "$mode" "$TMP/$mode.json" || rc=$?
        if ((rc != 0)); then
            note="tls_load.py $mode exit $rc: $(tail -n 2 "$TMP/$mode.json.err" | tr '\n' ' ')"
            log "$name $mode: $note"
            record server="$name" workload="$mode" round="$round" status=failed note="$note"
        else
            record server="$name" workload="$mode" round="$round" status=ok client="$TMP/$mode.json"
        fi
    done
    stop_server
}

# ---------------------------------------------------------------------------------------------------
# Run and report

STARTED=$(utc_now)
LOADAVG=$(loadavg)
for ((round = 1; round <= REPEAT; round++)); do
    for name in "${SERVERS[@]}"; do measure "$name" "$round"; done
done

mkdir -p "$(dirname "$OUTPUT")"
REPORTED=1
"$PYTHON" "$SCRIPT_DIR/tls-report.py" --runs "$RUNS" --output "$OUTPUT" \
    --meta started="$STARTED" loadavg_at_start="$LOADAVG" \
    connections="$CONNECTIONS" size="$SIZE" concurrency="$CONCURRENCY" warmup_seconds="$WARMUP" \
    duration_seconds="$DURATION" repeat="$REPEAT" pinned="$PIN" cpus="$(nproc)" kernel="$(uname -r)" \
    openssl="$(openssl version)" python="$(python_version)" \
    uvloop="$("$PYTHON" -c 'import uvloop; print(uvloop.__version__)' 2>/dev/null || echo none)" \
    git_head="$(git_head)"
