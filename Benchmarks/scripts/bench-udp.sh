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
BENCH_NAME=bench-udp
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

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

select_names SERVERS --only server "raw, tulipd, tulipd-rl" "$ONLY" "${ALL_SERVERS[@]}"
wants_tulipd() { [[ " ${SERVERS[*]} " == *" tulipd "* || " ${SERVERS[*]} " == *" tulipd-rl "* ]]; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for the probes and the report)"
CLK_TCK=$(getconf CLK_TCK)

pin_prefixes "$PIN"

TMP=$(mktemp -d /tmp/tulip-bench-udp.XXXXXX)
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
    build_products UDPEchoLoad RawUDPEchoServer
fi
BIN=$(swift build -c release --package-path "$BENCH_DIR" --show-bin-path)
[[ -x $BIN/UDPEchoLoad ]] || die "$BIN/UDPEchoLoad missing (run without --skip-build)"

if [[ " ${SERVERS[*]} " == *" raw "* && ! -x $BIN/RawUDPEchoServer ]]; then
    die "$BIN/RawUDPEchoServer missing (run without --skip-build)"
fi

if wants_tulipd; then
    resolve_tulipd "$SKIP_BUILD"
    if [[ -n $TULIPD_SKIP ]]; then
        SKIP[tulipd]=$TULIPD_SKIP
        SKIP[tulipd-rl]=$TULIPD_SKIP
    fi
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
    SERVER_PORT=$(free_port udp)
    case $name in
        raw) command=("$BIN/RawUDPEchoServer" --udp "127.0.0.1:$SERVER_PORT") ;;
        tulipd | tulipd-rl)
            # tulipd-rl: the limiter stays on (its default) but at a rate the load never reaches, so
            # every datagram pays for the per-source token bucket and none is dropped.
            rate_limit=null
            if [[ $name == tulipd-rl ]]; then rate_limit='{"per_second":1000000000,"burst":1000000000}'; fi
            local config=$TMP/$name.json
            tulipd_config "$config" <<JSON
[{"name":"udp","protocol":"echo","udp":{"host":"127.0.0.1","port":$SERVER_PORT},"options":{"rate_limit":$rate_limit}}]
JSON
            command=("$TULIPD" run --config "$config")
            ;;
    esac

    : >"$out"
    : >"$err"
    "${SERVER_PREFIX[@]}" "${command[@]}" >"$out" 2>"$err" </dev/null &
    SERVER_PID=$!
    local ready=0
    wait_ready "$SERVER_PID" echoes "$name" "$out" || ready=$?
    ((ready == 0)) && return 0
    stop_server
    start_error "$ready" "$out" "$err" "not ready (no echo)"
    return 1
}

# echoes NAME OUT: every server must answer a real datagram; raw must also have said `ready` (in OUT).
echoes() {
    if [[ $1 != raw ]] || grep -qx ready "$2"; then
        probe "$SERVER_PORT"
    else
        return 1
    fi
}

RECORD_MERGE_KEY=client

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

STARTED=$(utc_now)
LOADAVG=$(loadavg)
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
    git_head="$(git_head)"
