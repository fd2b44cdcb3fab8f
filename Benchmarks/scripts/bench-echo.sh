#!/usr/bin/env bash
# Echo benchmark: tulipd's `echo` plugin against its yardsticks, side by side in one run.
#
# Servers: raw (a minimal raw SwiftNIO echo server, the yardstick), tulipd, asyncio (CPython) and
# uvloop; transports: TCP on 127.0.0.1 and a unix socket in a temp dir. For each pair: start a fresh
# server, wait until it is ready, prime it with one untimed EchoLoad run, then run EchoLoad
# (100 connections x 1 KiB ping-pong, 1 s warm-up + 5 s measured by default) and stop the server with
# SIGTERM. With --repeat N, N rounds interleave the servers and the table shows medians. Reports msgs/s and server CPU microseconds per message, and both as ratios to raw NIO on
# the same transport. See Benchmarks/README.md.
#
# CPU accounting: EchoLoad itself reads the server's utime+stime (/proc/PID/stat fields 14+15, clock
# ticks) from a thread of its own at the two edges of its measured window, so messages and CPU cover the
# same interval and neither warm-up nor connection set-up is counted. This script also reads the same
# fields before and after the whole client run (ticks per second from `getconf CLK_TCK`) and records
# that in the JSON as a cross-check (`whole_run_server_cpu_ticks`, over `messages_including_warmup`);
# the table uses the window-aligned numbers.
#
# Usage: Benchmarks/scripts/bench-echo.sh [--duration N] [--warmup N] [--prime N] [--connections N]
#          [--size N] [--repeat N] [--only raw,tulipd,asyncio,uvloop] [--transports tcp,unix]
#          [--pin] [--skip-build] [--tulipd PATH] [--output FILE]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
PYTHON=${PYTHON:-python3}
BENCH_NAME=bench-echo
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

DURATION=5
WARMUP=1
PRIME=1
CONNECTIONS=100
SIZE=1024
REPEAT=1
ONLY=raw,tulipd,asyncio,uvloop
TRANSPORTS=tcp,unix
SKIP_BUILD=0
PIN=0
TULIPD=""
OUTPUT=$BENCH_DIR/results/echo-latest.json

BUILD_TIMEOUT=1800 # seconds each release build may take (SwiftPM may also wait for another build's lock)
READY_TIMEOUT=20   # seconds a server may take to become ready
STOP_TIMEOUT=5     # seconds a server may take to exit after SIGTERM before SIGKILL

usage() {
    cat <<USAGE
Usage: $(basename "$0") [options]

  --duration N       measured seconds per run (default $DURATION)
  --warmup N         seconds before the measured window opens (default $WARMUP)
  --prime N          seconds of an untimed run against each fresh server first; 0 = none (default $PRIME)
  --connections N    concurrent ping-pong connections (default $CONNECTIONS)
  --size N           bytes per message (default $SIZE)
  --repeat N         rounds; each round runs every server once, fresh; the table shows medians (default $REPEAT)
  --only LIST        servers, comma-separated from raw,tulipd,asyncio,uvloop (default all)
  --transports LIST  tcp,unix (default both)
  --pin              pin the server to CPU 0 and EchoLoad to CPU 1 (taskset)
  --skip-build       use the release binaries already built
  --tulipd PATH      benchmark this tulipd binary instead of building the one at the root
  --output FILE      JSON results (default Benchmarks/results/echo-latest.json)
USAGE
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
        --warmup) WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        --prime) PRIME=${2:?--prime needs a value}; shift 2 ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
        --size) SIZE=${2:?--size needs a value}; shift 2 ;;
        --repeat) REPEAT=${2:?--repeat needs a value}; shift 2 ;;
        --only) ONLY=${2:?--only needs a value}; shift 2 ;;
        --transports) TRANSPORTS=${2:?--transports needs a value}; shift 2 ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --pin) PIN=1; shift ;;
        --tulipd) TULIPD=${2:?--tulipd needs a path}; shift 2 ;;
        --output) OUTPUT=${2:?--output needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_positive "$DURATION" || die "--duration: a positive number of seconds"
is_number "$WARMUP" || die "--warmup: a number of seconds"
is_number "$PRIME" || die "--prime: a number of seconds"
is_count "$CONNECTIONS" || die "--connections: a positive integer"
is_count "$SIZE" || die "--size: a positive integer"
if ! is_count "$REPEAT" || ((REPEAT > 20)); then die "--repeat: 1...20"; fi

select_names SERVERS --only server "raw, tulipd, asyncio, uvloop" "$ONLY" raw tulipd asyncio uvloop
select_names SELECTED_TRANSPORTS --transports transport "tcp, unix" "$TRANSPORTS" tcp unix

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for the asyncio servers, probes and the report)"
CLK_TCK=$(getconf CLK_TCK)

pin_prefixes "$PIN"

TMP=$(mktemp -d /tmp/tulip-bench.XXXXXX)
SERVER_PID=""
RUNS=$TMP/runs.jsonl
: >"$RUNS"
declare -A SKIP=()

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID
    SERVER_PID=""
    terminate "$pid" "server $pid"
    SERVER_EXIT_STATUS=$TERMINATED_STATUS
}

stop_servers() { stop_server; }
install_traps

# Whether a connection to the endpoint (tcp PORT | unix PATH) is accepted.
probe() {
    "$PYTHON" - "$1" "$2" <<'PY' 2>/dev/null
import socket, sys
kind, where = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET if kind == "tcp" else socket.AF_UNIX)
s.settimeout(1)
s.connect(("127.0.0.1", int(where)) if kind == "tcp" else where)
s.close()
PY
}

# ---------------------------------------------------------------------------------------------------
# Build

if ((SKIP_BUILD == 0)); then
    log "building EchoLoad and RawEchoServer (release)"
    build_products EchoLoad RawEchoServer
fi
BIN=$(swift build -c release --package-path "$BENCH_DIR" --show-bin-path)
[[ -x $BIN/EchoLoad ]] || die "$BIN/EchoLoad missing (run without --skip-build)"

if [[ " ${SERVERS[*]} " == *" raw "* && ! -x $BIN/RawEchoServer ]]; then
    die "$BIN/RawEchoServer missing (run without --skip-build)"
fi

if [[ " ${SERVERS[*]} " == *" tulipd "* ]]; then
    resolve_tulipd "$SKIP_BUILD"
    if [[ -n $TULIPD_SKIP ]]; then SKIP[tulipd]=$TULIPD_SKIP; fi
fi

if [[ " ${SERVERS[*]} " == *" uvloop "* ]] && ! "$PYTHON" -c 'import uvloop' 2>/dev/null; then
    log "installing uvloop with pip"
    if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check uvloop >"$TMP/pip.log" 2>&1 \
        || ! "$PYTHON" -c 'import uvloop' 2>/dev/null; then
        tail -n 5 "$TMP/pip.log" >&2
        SKIP[uvloop]="pip install uvloop failed"
    fi
fi

# ---------------------------------------------------------------------------------------------------
# One server

ENDPOINT_ARGS=()
SERVER_EXIT_STATUS=""

# start_server NAME TRANSPORT: starts it, sets SERVER_PID and ENDPOINT_ARGS; returns 1 (with
# START_ERROR set) when it dies or is not ready within READY_TIMEOUT.
start_server() {
    local name=$1 transport=$2 port="" path="" out=$TMP/$1-$2.out err=$TMP/$1-$2.err
    local -a listen command
    if [[ $transport == tcp ]]; then
        port=$(free_port tcp)
        listen=(--tcp "127.0.0.1:$port")
        ENDPOINT_ARGS=(--tcp "127.0.0.1:$port")
    else
        # tulipd's config names DIR/echo.sock; the others get a path of their own.
        path=$TMP/$name.sock
        if [[ $name == tulipd ]]; then path=$TMP/echo.sock; fi
        listen=(--unix "$path")
        ENDPOINT_ARGS=(--unix "$path")
    fi
    case $name in
        raw) command=("$BIN/RawEchoServer" "${listen[@]}") ;;
        asyncio) command=("$PYTHON" "$BENCH_DIR/python/echo_server.py" "${listen[@]}") ;;
        uvloop) command=("$PYTHON" "$BENCH_DIR/python/echo_server.py" --uvloop "${listen[@]}") ;;
        tulipd)
            # Both listeners, as an operator would configure them; only one is measured per run.
            [[ -n $port ]] || port=$(free_port tcp)
            local config=$TMP/tulipd-$transport.json
            tulipd_config "$config" <<JSON
[{"name":"echo","protocol":"echo","tcp":{"host":"127.0.0.1","port":$port}},{"name":"echo-unix","protocol":"echo","unix":{"path":"$TMP/echo.sock"}}]
JSON
            command=("$TULIPD" run --config "$config")
            ;;
    esac

    # taskset execs the server, so $! is the server's own PID either way.
    : >"$out"
    : >"$err"
    "${SERVER_PREFIX[@]}" "${command[@]}" >"$out" 2>"$err" </dev/null &
    SERVER_PID=$!
    local ready=0
    if [[ $name == tulipd ]]; then
        if [[ $transport == tcp ]]; then
            wait_ready "$SERVER_PID" probe tcp "$port" || ready=$?
        else
            wait_ready "$SERVER_PID" probe unix "$path" || ready=$?
        fi
    else
        wait_ready "$SERVER_PID" grep -qx ready "$out" || ready=$?
    fi
    ((ready == 0)) && return 0
    stop_server
    start_error "$ready" "$out" "$err" "not ready"
    return 1
}

RECORD_MERGE_KEY=client

# measure NAME TRANSPORT ROUND: one run against a fresh server, appended to $RUNS.
measure() {
    local name=$1 transport=$2 round=$3
    local -a common=(server="$name" transport="$transport" round="$round")
    if [[ -n ${SKIP[$name]:-} ]]; then
        record "${common[@]}" status=skipped note="${SKIP[$name]}"
        return 0
    fi
    log "round $round/$REPEAT: $name over $transport"
    START_ERROR=""
    if ! start_server "$name" "$transport"; then
        log "$name over $transport: server $START_ERROR"
        record "${common[@]}" status=failed note="server $START_ERROR"
        return 0
    fi

    local rc=0 before="" after="" note=""
    if is_positive "$PRIME"; then
        timeout "$(client_timeout 0 "$PRIME")" "${CLIENT_PREFIX[@]}" "$BIN/EchoLoad" "${ENDPOINT_ARGS[@]}" \
            --connections "$CONNECTIONS" --size "$SIZE" --warmup 0 --duration "$PRIME" \
            >/dev/null 2>"$TMP/prime.err" || rc=$?
        if ((rc != 0)); then
            note="priming run: EchoLoad exit $rc: $(tail -n 2 "$TMP/prime.err" | tr '\n' ' ')"
        fi
    fi
    if ((rc == 0)); then
        before=$(cpu_ticks "$SERVER_PID") || before=""
        timeout "$(client_timeout "$WARMUP" "$DURATION")" "${CLIENT_PREFIX[@]}" "$BIN/EchoLoad" "${ENDPOINT_ARGS[@]}" \
            --connections "$CONNECTIONS" --size "$SIZE" --warmup "$WARMUP" --duration "$DURATION" \
            --server-pid "$SERVER_PID" >"$TMP/run.json" 2>"$TMP/run.err" || rc=$?
        after=$(cpu_ticks "$SERVER_PID") || after=""
        if ((rc != 0)); then
            note="EchoLoad exit $rc: $(tail -n 2 "$TMP/run.err" | tr '\n' ' ')"
        fi
    fi
    stop_server

    if ((rc != 0)); then
        log "$name over $transport: $note"
        record "${common[@]}" status=failed note="$note" server_exit_status="$SERVER_EXIT_STATUS"
        return 0
    fi
    local -a whole=()
    if [[ -n $before && -n $after ]]; then
        whole=(whole_run_server_cpu_ticks=$((after - before)))
    fi
    record "${common[@]}" status=ok server_exit_status="$SERVER_EXIT_STATUS" client="$TMP/run.json" "${whole[@]}"
}

# ---------------------------------------------------------------------------------------------------
# Run and report

STARTED=$(utc_now)
LOADAVG=$(loadavg)
# Rounds interleave the servers, so a slow spell on this machine hits every server alike.
for ((round = 1; round <= REPEAT; round++)); do
    for name in "${SERVERS[@]}"; do
        for transport in "${SELECTED_TRANSPORTS[@]}"; do
            measure "$name" "$transport" "$round"
        done
    done
done

mkdir -p "$(dirname "$OUTPUT")"
REPORTED=1
"$PYTHON" "$SCRIPT_DIR/echo-report.py" --runs "$RUNS" --output "$OUTPUT" \
    --meta started="$STARTED" loadavg_at_start="$LOADAVG" \
    connections="$CONNECTIONS" size="$SIZE" warmup_seconds="$WARMUP" duration_seconds="$DURATION" \
    prime_seconds="$PRIME" repeat="$REPEAT" pinned="$PIN" clock_ticks_per_second="$CLK_TCK" \
    cpus="$(nproc)" kernel="$(uname -r)" \
    swift="$(swift --version 2>/dev/null | head -n 1)" \
    python="$(python_version)" \
    uvloop="$("$PYTHON" -c 'import uvloop; print(uvloop.__version__)' 2>/dev/null || echo none)" \
    git_head="$(git_head)"
