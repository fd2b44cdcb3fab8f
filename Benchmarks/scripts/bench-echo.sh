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

die() { echo "bench-echo: $*" >&2; exit 1; }
log() { echo "bench-echo: $*" >&2; }

is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_positive() { is_number "$1" && awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }

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

SERVERS=()
for name in raw tulipd asyncio uvloop; do
    if [[ ,$ONLY, == *,$name,* ]]; then SERVERS+=("$name"); fi
done
for name in ${ONLY//,/ }; do
    [[ $name =~ ^(raw|tulipd|asyncio|uvloop)$ ]] || die "--only: unknown server '$name' (raw, tulipd, asyncio, uvloop)"
done
SELECTED_TRANSPORTS=()
for transport in tcp unix; do
    if [[ ,$TRANSPORTS, == *,$transport,* ]]; then SELECTED_TRANSPORTS+=("$transport"); fi
done
for transport in ${TRANSPORTS//,/ }; do
    [[ $transport =~ ^(tcp|unix)$ ]] || die "--transports: unknown transport '$transport' (tcp, unix)"
done
((${#SERVERS[@]} > 0)) || die "--only selects no server"
((${#SELECTED_TRANSPORTS[@]} > 0)) || die "--transports selects no transport"

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for the asyncio servers, probes and the report)"
CLK_TCK=$(getconf CLK_TCK)

SERVER_PREFIX=()
CLIENT_PREFIX=()
if ((PIN)); then
    command -v taskset >/dev/null || die "--pin needs taskset (util-linux)"
    (($(nproc) >= 2)) || die "--pin needs at least 2 CPUs"
    SERVER_PREFIX=(taskset -c 0)
    CLIENT_PREFIX=(taskset -c 1)
fi

TMP=$(mktemp -d /tmp/tulip-bench.XXXXXX)
SERVER_PID=""
RUNS=$TMP/runs.jsonl
: >"$RUNS"
declare -A SKIP=()

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID status=0 waited=0
    SERVER_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "server $pid still running ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || status=$?
    SERVER_EXIT_STATUS=$status
}

REPORTED=0
cleanup() {
    local status=$?
    stop_server
    rm -rf "$TMP"
    if ((status != 0 && REPORTED == 0)); then
        echo "bench-echo: stopped with status $status before the report" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Server utime+stime in clock ticks: /proc/PID/stat fields 14 and 15. Field 2 may hold spaces, so
# strip through the last ") " first; field 3 then comes first, making 14 and 15 the 12th and 13th.
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    awk '{ print $12 + $13 }' <<<"$stat"
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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
    # Product by product: the package's other targets (the allocation benchmarks) need the root
    # package and ordo-one/benchmark, which these two do not.
    for product in EchoLoad RawEchoServer; do
        timeout "$BUILD_TIMEOUT" swift build -c release --package-path "$BENCH_DIR" --product "$product" >&2 \
            || die "release build of $product failed"
    done
fi
BIN=$(swift build -c release --package-path "$BENCH_DIR" --show-bin-path)
[[ -x $BIN/EchoLoad ]] || die "$BIN/EchoLoad missing (run without --skip-build)"

if [[ " ${SERVERS[*]} " == *" raw "* && ! -x $BIN/RawEchoServer ]]; then
    die "$BIN/RawEchoServer missing (run without --skip-build)"
fi

if [[ " ${SERVERS[*]} " == *" tulipd "* && -n $TULIPD ]]; then
    [[ -x $TULIPD ]] || die "--tulipd: $TULIPD is not an executable"
    log "using tulipd at $TULIPD (not built by this script)"
elif [[ " ${SERVERS[*]} " == *" tulipd "* ]]; then
    if ((SKIP_BUILD == 0)); then
        log "building tulipd (release) in $ROOT_DIR"
        if ! (cd "$ROOT_DIR" && timeout "$BUILD_TIMEOUT" swift build -c release --product tulipd) \
            >"$TMP/tulipd-build.log" 2>&1; then
            tail -n 25 "$TMP/tulipd-build.log" >&2
            SKIP[tulipd]="release build of tulipd failed"
        fi
    fi
    if [[ -z ${SKIP[tulipd]:-} ]]; then
        TULIPD=$(cd "$ROOT_DIR" && swift build -c release --show-bin-path 2>/dev/null)/tulipd || true
        [[ -x $TULIPD ]] || SKIP[tulipd]="no release tulipd binary at $TULIPD"
    fi
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
        port=$(free_port)
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
            [[ -n $port ]] || port=$(free_port)
            local config=$TMP/tulipd-$transport.json
            cat >"$config" <<JSON
{"log":{"level":"warning","format":"text"},"shutdown":{"grace_seconds":1},"listeners":[{"name":"echo","protocol":"echo","tcp":{"host":"127.0.0.1","port":$port}},{"name":"echo-unix","protocol":"echo","unix":{"path":"$TMP/echo.sock"}}]}
JSON
            command=("$TULIPD" run --config "$config")
            ;;
    esac

    # taskset execs the server, so $! is the server's own PID either way.
    : >"$out"
    : >"$err"
    "${SERVER_PREFIX[@]}" "${command[@]}" >"$out" 2>"$err" </dev/null &
    SERVER_PID=$!
    local waited=0
    while ((waited < READY_TIMEOUT * 10)); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            stop_server
            START_ERROR="exited with status $SERVER_EXIT_STATUS before it was ready"
            START_ERROR+="; stdout: $(tail -n 3 "$out" | tr '\n' ' ')"
            START_ERROR+="; stderr: $(tail -n 3 "$err" | tr '\n' ' ')"
            return 1
        fi
        if [[ $name == tulipd ]]; then
            if [[ $transport == tcp ]]; then probe tcp "$port" && return 0; else probe unix "$path" && return 0; fi
        else
            grep -qx ready "$out" && return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    stop_server
    START_ERROR="not ready after ${READY_TIMEOUT}s: $(tail -n 3 "$err" | tr '\n' ' ')"
    return 1
}

# Bounded on top of EchoLoad's own hard stop (warm-up + duration + 10 s).
client_timeout() { awk -v w="$1" -v d="$2" 'BEGIN { print int(w + d + 30) }'; }

# record KEY=VALUE...: appends one JSON object (numbers stay numbers) to $RUNS.
record() {
    "$PYTHON" - "$@" >>"$RUNS" <<'PY'
import json, sys
out = {}
for item in sys.argv[1:]:
    key, value = item.split("=", 1)
    if key == "client":
        out.update(json.load(open(value)))
        continue
    try:
        out[key] = int(value)
    except ValueError:
        out[key] = value
print(json.dumps(out))
PY
}

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

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "")
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
    python="$("$PYTHON" -c 'import platform; print(platform.python_implementation(), platform.python_version())')" \
    uvloop="$("$PYTHON" -c 'import uvloop; print(uvloop.__version__)' 2>/dev/null || echo none)" \
    git_head="$(git -C "$ROOT_DIR" rev-parse -q --verify --short HEAD 2>/dev/null || echo none)"
