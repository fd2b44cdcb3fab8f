#!/usr/bin/env bash
# UDP echo benchmark: tulipd's `echo` plugin on a `udp` listener against a raw SwiftNIO datagram echo
# server, side by side in one run.
#
# Servers: raw (RawUDPEchoServer: one DatagramBootstrap channel on one event loop thread, the
# yardstick), tulipd (rate limit off: "options": {"rate_limit": null}) and tulipd-rl (the per-source
# rate limit on, at a rate the load never reaches, so only its bookkeeping is measured). For each:
# start a fresh server on 127.0.0.1, wait until it echoes, prime it with one untimed UDPEchoLoad run,
# then run UDPEchoLoad (10 sockets x 512-byte datagrams ping-pong, one datagram in flight per socket,
# 200 ms loss timeout, 1 s warm-up + 5 s measured by default) and stop the server with SIGTERM. With
# --repeat N, N rounds interleave the servers and the table shows medians. Reports datagrams/s (round
# trips) and server CPU microseconds per datagram, and both as ratios to raw NIO. See
# Benchmarks/README.md.
#
# CPU accounting as in bench-echo.sh: UDPEchoLoad reads the server's utime+stime (/proc/PID/stat
# fields 14+15) at the two edges of its measured window; this script also reads them around the whole
# client run (`whole_run_server_cpu_ticks` in the JSON, over `datagrams_including_warmup`).
#
# Usage: Benchmarks/scripts/bench-udp.sh [--duration N] [--warmup N] [--prime N] [--sockets N]
#          [--size N] [--window N] [--timeout-ms N] [--repeat N] [--only raw,tulipd,tulipd-rl]
#          [--pin] [--skip-build] [--tulipd PATH] [--output FILE]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
PYTHON=${PYTHON:-python3}

DURATION=5
WARMUP=1
PRIME=1
SOCKETS=10
SIZE=512
WINDOW=1
TIMEOUT_MS=200
REPEAT=1
ONLY=raw,tulipd,tulipd-rl
SKIP_BUILD=0
PIN=0
TULIPD=""
OUTPUT=$BENCH_DIR/results/udp-latest.json

BUILD_TIMEOUT=1800 # seconds each release build may take (SwiftPM may also wait for another build's lock)
READY_TIMEOUT=20   # seconds a server may take to become ready
STOP_TIMEOUT=5     # seconds a server may take to exit after SIGTERM before SIGKILL
ALL_SERVERS=(raw tulipd tulipd-rl)

usage() {
    cat <<USAGE
Usage: $(basename "$0") [options]

  --duration N       measured seconds per run (default $DURATION)
  --warmup N         seconds before the measured window opens (default $WARMUP)
  --prime N          seconds of an untimed run against each fresh server first; 0 = none (default $PRIME)
  --sockets N        client datagram sockets, each its own source port (default $SOCKETS)
  --size N           bytes per datagram, 12...65507 (default $SIZE)
  --window N         datagrams each socket keeps in flight (default $WINDOW)
  --timeout-ms N     a datagram with no reply after this is counted lost and replaced (default $TIMEOUT_MS)
  --repeat N         rounds; each round runs every server once, fresh; the table shows medians (default $REPEAT)
  --only LIST        servers, comma-separated from raw,tulipd,tulipd-rl (default all)
  --pin              pin the server to CPU 0 and UDPEchoLoad to CPU 1 (taskset)
  --skip-build       use the release binaries already built
  --tulipd PATH      benchmark this tulipd binary instead of building the one at the root
  --output FILE      JSON results (default Benchmarks/results/udp-latest.json)
USAGE
}

die() { echo "bench-udp: $*" >&2; exit 1; }
log() { echo "bench-udp: $*" >&2; }

is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_positive() { is_number "$1" && awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
        --warmup) WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        --prime) PRIME=${2:?--prime needs a value}; shift 2 ;;
        --sockets) SOCKETS=${2:?--sockets needs a value}; shift 2 ;;
        --size) SIZE=${2:?--size needs a value}; shift 2 ;;
        --window) WINDOW=${2:?--window needs a value}; shift 2 ;;
        --timeout-ms) TIMEOUT_MS=${2:?--timeout-ms needs a value}; shift 2 ;;
        --repeat) REPEAT=${2:?--repeat needs a value}; shift 2 ;;
        --only) ONLY=${2:?--only needs a value}; shift 2 ;;
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
is_count "$SOCKETS" || die "--sockets: a positive integer"
if ! is_count "$SIZE" || ((SIZE < 12 || SIZE > 65507)); then die "--size: 12...65507"; fi
if ! is_count "$WINDOW" || ((WINDOW > 64)); then die "--window: 1...64"; fi
if ! is_count "$TIMEOUT_MS" || ((TIMEOUT_MS > 10000)); then die "--timeout-ms: 1...10000"; fi
if ! is_count "$REPEAT" || ((REPEAT > 20)); then die "--repeat: 1...20"; fi

SERVERS=()
for name in "${ALL_SERVERS[@]}"; do
    if [[ ,$ONLY, == *,$name,* ]]; then SERVERS+=("$name"); fi
done
for name in ${ONLY//,/ }; do
    [[ $name =~ ^(raw|tulipd|tulipd-rl)$ ]] || die "--only: unknown server '$name' (raw, tulipd, tulipd-rl)"
done
((${#SERVERS[@]} > 0)) || die "--only selects no server"
wants_tulipd() { [[ " ${SERVERS[*]} " == *" tulipd "* || " ${SERVERS[*]} " == *" tulipd-rl "* ]]; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for the probes and the report)"
CLK_TCK=$(getconf CLK_TCK)

SERVER_PREFIX=()
CLIENT_PREFIX=()
if ((PIN)); then
    command -v taskset >/dev/null || die "--pin needs taskset (util-linux)"
    (($(nproc) >= 2)) || die "--pin needs at least 2 CPUs"
    SERVER_PREFIX=(taskset -c 0)
    CLIENT_PREFIX=(taskset -c 1)
fi

TMP=$(mktemp -d /tmp/tulip-bench-udp.XXXXXX)
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
        echo "bench-udp: stopped with status $status before the report" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Server utime+stime in clock ticks: /proc/PID/stat fields 14 and 15 (see bench-echo.sh).
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    awk '{ print $12 + $13 }' <<<"$stat"
}

# A UDP port that is free now (bound and released; nothing else on this machine is racing for it).
free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether a datagram sent to 127.0.0.1:PORT comes back unchanged within 0.3 s.
probe() {
    "$PYTHON" - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.3)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.send(b"bench-udp probe")
sys.exit(0 if s.recv(2048) == b"bench-udp probe" else 1)
PY
}

# ---------------------------------------------------------------------------------------------------
# Build

if ((SKIP_BUILD == 0)); then
    log "building UDPEchoLoad and RawUDPEchoServer (release)"
    # Product by product: the package's allocation benchmarks need the root package and
    # ordo-one/benchmark, which these two do not.
    for product in UDPEchoLoad RawUDPEchoServer; do
        timeout "$BUILD_TIMEOUT" swift build -c release --package-path "$BENCH_DIR" --product "$product" >&2 \
            || die "release build of $product failed"
    done
fi
BIN=$(swift build -c release --package-path "$BENCH_DIR" --show-bin-path)
[[ -x $BIN/UDPEchoLoad ]] || die "$BIN/UDPEchoLoad missing (run without --skip-build)"

if [[ " ${SERVERS[*]} " == *" raw "* && ! -x $BIN/RawUDPEchoServer ]]; then
    die "$BIN/RawUDPEchoServer missing (run without --skip-build)"
fi

TULIPD_SKIP=""
if wants_tulipd && [[ -n $TULIPD ]]; then
    [[ -x $TULIPD ]] || die "--tulipd: $TULIPD is not an executable"
    log "using tulipd at $TULIPD (not built by this script)"
elif wants_tulipd; then
    if ((SKIP_BUILD == 0)); then
        log "building tulipd (release) in $ROOT_DIR"
        if ! (cd "$ROOT_DIR" && timeout "$BUILD_TIMEOUT" swift build -c release --product tulipd) \
            >"$TMP/tulipd-build.log" 2>&1; then
            tail -n 25 "$TMP/tulipd-build.log" >&2
            TULIPD_SKIP="release build of tulipd failed"
        fi
    fi
    if [[ -z $TULIPD_SKIP ]]; then
        TULIPD=$(cd "$ROOT_DIR" && swift build -c release --show-bin-path 2>/dev/null)/tulipd || true
        [[ -x $TULIPD ]] || TULIPD_SKIP="no release tulipd binary at $TULIPD"
    fi
fi
if [[ -n $TULIPD_SKIP ]]; then
    SKIP[tulipd]=$TULIPD_SKIP
    SKIP[tulipd-rl]=$TULIPD_SKIP
fi

# ---------------------------------------------------------------------------------------------------
# One server

SERVER_PORT=""
SERVER_EXIT_STATUS=""

# start_server NAME: starts it on a free UDP port, sets SERVER_PID and SERVER_PORT; returns 1 (with
# START_ERROR set) when it dies or does not echo within READY_TIMEOUT.
start_server() {
    local name=$1 out=$TMP/$1.out err=$TMP/$1.err rate_limit
    local -a command
    SERVER_PORT=$(free_port)
    case $name in
        raw) command=("$BIN/RawUDPEchoServer" --udp "127.0.0.1:$SERVER_PORT") ;;
        tulipd | tulipd-rl)
            # tulipd-rl: the limiter stays on (its default) but at a rate the load never reaches, so
            # every datagram pays for the per-source token bucket and none is dropped.
            rate_limit=null
            if [[ $name == tulipd-rl ]]; then rate_limit='{"per_second":1000000000,"burst":1000000000}'; fi
            local config=$TMP/$name.json
            cat >"$config" <<JSON
{"log":{"level":"warning","format":"text"},"shutdown":{"grace_seconds":1},"listeners":[{"name":"udp","protocol":"echo","udp":{"host":"127.0.0.1","port":$SERVER_PORT},"options":{"rate_limit":$rate_limit}}]}
JSON
            command=("$TULIPD" run --config "$config")
            ;;
    esac

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
        # Every server must answer a real datagram; raw must also have said `ready`.
        if [[ $name != raw ]] || grep -qx ready "$out"; then
            probe "$SERVER_PORT" && return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    stop_server
    START_ERROR="not ready (no echo) after ${READY_TIMEOUT}s: $(tail -n 3 "$err" | tr '\n' ' ')"
    return 1
}

# Bounded on top of UDPEchoLoad's own hard stop (warm-up + duration + 10 s).
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

load_args() {
    echo --udp "127.0.0.1:$SERVER_PORT" --sockets "$SOCKETS" --size "$SIZE" --window "$WINDOW" --timeout-ms "$TIMEOUT_MS"
}

# measure NAME ROUND: one run against a fresh server, appended to $RUNS.
measure() {
    local name=$1 round=$2
    local -a common=(server="$name" transport=udp round="$round")
    if [[ -n ${SKIP[$name]:-} ]]; then
        record "${common[@]}" status=skipped note="${SKIP[$name]}"
        return 0
    fi
    log "round $round/$REPEAT: $name"
    START_ERROR=""
    if ! start_server "$name"; then
        log "$name: server $START_ERROR"
        record "${common[@]}" status=failed note="server $START_ERROR"
        return 0
    fi

    local rc=0 before="" after="" note=""
    local -a args
    read -r -a args <<<"$(load_args)"
    if is_positive "$PRIME"; then
        # Priming tolerates loss (--max-loss 1): it only has to get the server past start-up.
        timeout "$(client_timeout 0 "$PRIME")" "${CLIENT_PREFIX[@]}" "$BIN/UDPEchoLoad" "${args[@]}" \
            --warmup 0 --duration "$PRIME" --max-loss 1 >/dev/null 2>"$TMP/prime.err" || rc=$?
        if ((rc != 0)); then
            note="priming run: UDPEchoLoad exit $rc: $(tail -n 2 "$TMP/prime.err" | tr '\n' ' ')"
        fi
    fi
    if ((rc == 0)); then
        before=$(cpu_ticks "$SERVER_PID") || before=""
        timeout "$(client_timeout "$WARMUP" "$DURATION")" "${CLIENT_PREFIX[@]}" "$BIN/UDPEchoLoad" "${args[@]}" \
            --warmup "$WARMUP" --duration "$DURATION" --server-pid "$SERVER_PID" \
            >"$TMP/run.json" 2>"$TMP/run.err" || rc=$?
        after=$(cpu_ticks "$SERVER_PID") || after=""
        if ((rc != 0)); then
            note="UDPEchoLoad exit $rc: $(tail -n 2 "$TMP/run.err" | tr '\n' ' ')"
        fi
    fi
    stop_server

    if ((rc != 0)); then
        log "$name: $note"
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
        measure "$name" "$round"
    done
done

mkdir -p "$(dirname "$OUTPUT")"
REPORTED=1
"$PYTHON" "$SCRIPT_DIR/udp-report.py" --runs "$RUNS" --output "$OUTPUT" \
    --meta started="$STARTED" loadavg_at_start="$LOADAVG" \
    sockets="$SOCKETS" size="$SIZE" window="$WINDOW" timeout_ms="$TIMEOUT_MS" \
    warmup_seconds="$WARMUP" duration_seconds="$DURATION" \
    prime_seconds="$PRIME" repeat="$REPEAT" pinned="$PIN" clock_ticks_per_second="$CLK_TCK" \
    cpus="$(nproc)" kernel="$(uname -r)" \
    swift="$(swift --version 2>/dev/null | head -n 1)" \
    git_head="$(git -C "$ROOT_DIR" rev-parse -q --verify --short HEAD 2>/dev/null || echo none)"
