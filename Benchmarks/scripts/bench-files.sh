#!/usr/bin/env bash
# Files benchmark: tulipd's `files` plugin (sendfile(2)) serving one large file over TCP on 127.0.0.1,
# next to what the same bytes cost without tulipd.
#
# Creates a real (non-sparse) file of random bytes, 1 GiB by default, in a temp dir, reads it once so
# it is in the page cache, and starts three servers on 127.0.0.1, each speaking tulipd's files protocol
# (`REL\n` -> `OK <size>\n` + the bytes, then close): tulipd with a `files` listener; a single-threaded
# Python server that sends with os.sendfile (the kernel's own sendfile path, no event loop: tulipd's
# yardstick); and one that copies with os.readv + sendall through a 1 MiB buffer (what sendfile saves).
# Each round (--repeat, default 3) fetches the file once from each server with the same minimal client
# (python/files_bench.py fetch: recv_into a 1 MiB bytearray, discarded), then runs `cat FILE >/dev/null`
# and `dd if=FILE of=/dev/null bs=1M` (the page-cache read ceiling, no socket). The table shows medians:
# GiB/s, and the CPU seconds per GiB of the server (tulipd, Python) or of the command itself (cat, dd).
# See Benchmarks/README.md.
#
# Server CPU is read with nanosecond resolution from the server's process CPU clock before and after
# each fetch (and as /proc/PID/stat ticks, in the JSON); a command's CPU is its own wait4 rusage.
#
# Usage: Benchmarks/scripts/bench-files.sh [--size-mib N] [--repeat N] [--only LIST] [--dir DIR]
#          [--pin] [--skip-build] [--tulipd PATH] [--output FILE]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
PYTHON=${PYTHON:-python3}
BENCH_NAME=bench-files
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
HELPER=$BENCH_DIR/python/files_bench.py

SIZE_MIB=1024
REPEAT=3
ONLY=tulipd,py-sendfile,py-readwrite,cat,dd
PARENT_DIR=${TMPDIR:-/tmp}
SKIP_BUILD=0
PIN=0
TULIPD=""
OUTPUT=$BENCH_DIR/results/files-latest.json

BUILD_TIMEOUT=1800  # seconds the release build may take (SwiftPM may also wait for another build's lock)
READY_TIMEOUT=20    # seconds a server may take to become ready
STOP_TIMEOUT=5      # seconds a server may take to exit after SIGTERM before SIGKILL
CREATE_TIMEOUT=600  # seconds writing the file may take
STEP_TIMEOUT=300    # seconds one fetch or command may take
ALL_METHODS=(tulipd py-sendfile py-readwrite cat dd)

usage() {
    cat <<USAGE
Usage: $(basename "$0") [options]

  --size-mib N     size of the test file in MiB (default $SIZE_MIB = 1 GiB)
  --repeat N       rounds; each round runs every method once; the table shows medians (default $REPEAT)
  --only LIST      methods, comma-separated from ${ALL_METHODS[*]} (default all)
  --dir DIR        where the temp dir with the file goes; must be a real disk, not tmpfs (default $PARENT_DIR)
  --pin            pin the servers to CPU 0 and the client and commands to CPU 1 (taskset)
  --skip-build     use the release tulipd already built
  --tulipd PATH    benchmark this tulipd binary instead of building the one at the root
  --output FILE    JSON results (default Benchmarks/results/files-latest.json)
USAGE
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --size-mib) SIZE_MIB=${2:?--size-mib needs a value}; shift 2 ;;
        --repeat) REPEAT=${2:?--repeat needs a value}; shift 2 ;;
        --only) ONLY=${2:?--only needs a value}; shift 2 ;;
        --dir) PARENT_DIR=${2:?--dir needs a value}; shift 2 ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --pin) PIN=1; shift ;;
        --tulipd) TULIPD=${2:?--tulipd needs a path}; shift 2 ;;
        --output) OUTPUT=${2:?--output needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

if ! is_count "$SIZE_MIB" || ((SIZE_MIB > 65536)); then die "--size-mib: 1...65536"; fi
if ! is_count "$REPEAT" || ((REPEAT > 20)); then die "--repeat: 1...20"; fi
select_names METHODS --only method "${ALL_METHODS[*]}" "$ONLY" "${ALL_METHODS[@]}"
wants() { [[ " ${METHODS[*]} " == *" $1 "* ]]; }
[[ -d $PARENT_DIR ]] || die "--dir: $PARENT_DIR is not a directory"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for the client, the yardsticks and the report)"

SIZE=$((SIZE_MIB * 1048576))
# Room for the file plus 256 MiB, on disk and in the page cache (else the file would not stay cached).
avail_disk=$(($(df -Pk "$PARENT_DIR" | awk 'NR == 2 { print $4 }') * 1024))
((avail_disk > SIZE + 268435456)) || die "not enough free space in $PARENT_DIR for a ${SIZE_MIB} MiB file"
avail_mem=$(($(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo) * 1024))
((avail_mem > SIZE + 268435456)) || die "not enough available memory to keep a ${SIZE_MIB} MiB file in the page cache"

pin_prefixes "$PIN"

TMP=$(mktemp -d "$PARENT_DIR/tulip-bench-files.XXXXXX")
RUNS=$TMP/runs.jsonl
: >"$RUNS"
declare -A PIDS=() PORTS=() SKIP=()

stop_server() {
    local name=$1 pid=${PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    unset "PIDS[$name]"
    terminate "$pid" "$name ($pid)"
}

stop_servers() {
    local name
    for name in "${!PIDS[@]}"; do stop_server "$name"; done
}
install_traps

probe() {
    "$PYTHON" - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.close()
PY
}

# ---------------------------------------------------------------------------------------------------
# Build

if wants tulipd; then
    resolve_tulipd "$SKIP_BUILD"
    if [[ -n $TULIPD_SKIP ]]; then SKIP[tulipd]=$TULIPD_SKIP; fi
fi

# ---------------------------------------------------------------------------------------------------
# The file

ROOT=$TMP/root
mkdir -p "$ROOT"
FILE=$ROOT/big.bin
log "writing $SIZE_MIB MiB of random bytes to $FILE"
timeout "$CREATE_TIMEOUT" head -c "$SIZE" /dev/urandom >"$FILE" || die "could not write $FILE"
[[ $(stat -c %s "$FILE") == "$SIZE" ]] || die "$FILE has the wrong size"
allocated=$(($(stat -c %b "$FILE") * $(stat -c %B "$FILE")))
((allocated >= SIZE)) || die "$FILE is sparse ($allocated of $SIZE bytes allocated)"
# Into the page cache before any measurement (written pages are cached already; this makes sure).
cat "$FILE" >/dev/null

# ---------------------------------------------------------------------------------------------------
# Servers: started once, each serves every round's fetch.

# start_server NAME: sets PIDS[NAME] and PORTS[NAME], or SKIP[NAME] with the reason.
start_server() {
    local name=$1 port out=$TMP/$1.out err=$TMP/$1.err pid
    local -a command
    port=$(free_port tcp)
    case $name in
        tulipd)
            tulipd_config "$TMP/tulipd.json" <<JSON
[{"name":"files","protocol":"files","tcp":{"host":"127.0.0.1","port":$port},"options":{"root":"$ROOT"}}]
JSON
            command=("$TULIPD" run --config "$TMP/tulipd.json")
            ;;
        py-sendfile) command=("$PYTHON" "$HELPER" serve --mode sendfile --root "$ROOT" --port "$port") ;;
        py-readwrite) command=("$PYTHON" "$HELPER" serve --mode readwrite --root "$ROOT" --port "$port") ;;
    esac
    "${SERVER_PREFIX[@]}" "${command[@]}" >"$out" 2>"$err" </dev/null &
    pid=$!
    PIDS[$name]=$pid
    local ready=0
    wait_ready "$pid" serves "$name" "$out" "$port" || ready=$?
    if ((ready == 0)); then
        PORTS[$name]=$port
        return 0
    fi
    stop_server "$name"
    if ((ready == 1)); then
        SKIP[$name]="exited before it was ready: $(tail -n 3 "$err" | tr '\n' ' ')"
    else
        SKIP[$name]="not ready after ${READY_TIMEOUT}s: $(tail -n 3 "$err" | tr '\n' ' ')"
    fi
}

# serves NAME OUT PORT: the server accepts a connection on PORT (and, unless tulipd, said `ready` in OUT).
serves() {
    if [[ $1 == tulipd ]] || grep -qx ready "$2"; then
        probe "$3"
    else
        return 1
    fi
}

for name in tulipd py-sendfile py-readwrite; do
    if wants "$name" && [[ -z ${SKIP[$name]:-} ]]; then start_server "$name"; fi
done

# ---------------------------------------------------------------------------------------------------
# Measure

RECORD_MERGE_KEY=result

# measure NAME ROUND: one transfer of the whole file, appended to $RUNS.
measure() {
    local name=$1 round=$2 rc=0
    local -a common=(method="$name" round="$round")
    if [[ -n ${SKIP[$name]:-} ]]; then
        record "${common[@]}" status=skipped note="${SKIP[$name]}"
        return 0
    fi
    case $name in
        tulipd | py-sendfile | py-readwrite)
            if [[ -z ${PIDS[$name]:-} ]] || ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
                record "${common[@]}" status=failed note="server is gone"
                return 0
            fi
            timeout "$STEP_TIMEOUT" "${CLIENT_PREFIX[@]}" "$PYTHON" "$HELPER" fetch --port "${PORTS[$name]}" \
                --path big.bin --expect-size "$SIZE" --server-pid "${PIDS[$name]}" \
                >"$TMP/run.json" 2>"$TMP/run.err" || rc=$?
            ;;
        cat)
            timeout "$STEP_TIMEOUT" "${CLIENT_PREFIX[@]}" "$PYTHON" "$HELPER" local --expect-size "$SIZE" -- \
                sh -c 'exec cat "$1" >/dev/null' sh "$FILE" >"$TMP/run.json" 2>"$TMP/run.err" || rc=$?
            ;;
        dd)
            timeout "$STEP_TIMEOUT" "${CLIENT_PREFIX[@]}" "$PYTHON" "$HELPER" local --expect-size "$SIZE" -- \
                dd if="$FILE" of=/dev/null bs=1M status=none >"$TMP/run.json" 2>"$TMP/run.err" || rc=$?
            ;;
    esac
    if ((rc != 0)); then
        local note
        note="exit $rc: $(tail -n 2 "$TMP/run.err" | tr '\n' ' ')"
        log "$name: $note"
        record "${common[@]}" status=failed note="$note"
        return 0
    fi
    record "${common[@]}" status=ok result="$TMP/run.json"
}

STARTED=$(utc_now)
LOADAVG=$(loadavg)
for ((round = 1; round <= REPEAT; round++)); do
    for name in "${METHODS[@]}"; do
        log "round $round/$REPEAT: $name"
        measure "$name" "$round"
    done
done

mkdir -p "$(dirname "$OUTPUT")"
REPORTED=1
"$PYTHON" "$SCRIPT_DIR/files-report.py" --runs "$RUNS" --output "$OUTPUT" \
    --meta started="$STARTED" loadavg_at_start="$LOADAVG" size_bytes="$SIZE" repeat="$REPEAT" \
    pinned="$PIN" cpus="$(nproc)" kernel="$(uname -r)" \
    filesystem="$(df -PT "$TMP" | awk 'NR == 2 { print $2 }')" \
    client="python3 files_bench.py fetch (recv_into a 1 MiB bytearray, discarded)" \
    python="$(python_version)" \
    git_head="$(git_head)"
