# shellcheck shell=bash
# What bench-echo.sh, bench-udp.sh and bench-files.sh share. Sourced, not run: the driver sets
# BENCH_NAME (the prefix of its messages) and, before using the functions that need them, PYTHON,
# STOP_TIMEOUT, READY_TIMEOUT, BUILD_TIMEOUT, BENCH_DIR, ROOT_DIR, TMP and RUNS.

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
log() { echo "$BENCH_NAME: $*" >&2; }

is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_positive() { is_number "$1" && awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }

# select_names VAR OPTION KIND SHOWN LIST ALL...: sets the array VAR to the names of ALL that the
# comma-separated LIST (the value of OPTION) names, in ALL's order; dies on a name not in ALL (SHOWN
# lists the known ones in the message) or when LIST selects none.
select_names() {
    local -n selected=$1
    local option=$2 kind=$3 shown=$4 list=$5 name
    shift 5
    selected=()
    for name in "$@"; do
        if [[ ,$list, == *,$name,* ]]; then selected+=("$name"); fi
    done
    for name in ${list//,/ }; do
        [[ " $* " == *" $name "* ]] || die "$option: unknown $kind '$name' ($shown)"
    done
    ((${#selected[@]} > 0)) || die "$option selects no $kind"
}

# pin_prefixes PIN: SERVER_PREFIX and CLIENT_PREFIX, the commands servers and clients run under
# (taskset -c 0 and -c 1 with --pin, else nothing).
# shellcheck disable=SC2034 # used by the drivers
pin_prefixes() {
    SERVER_PREFIX=()
    CLIENT_PREFIX=()
    if (($1)); then
        command -v taskset >/dev/null || die "--pin needs taskset (util-linux)"
        (($(nproc) >= 2)) || die "--pin needs at least 2 CPUs"
        SERVER_PREFIX=(taskset -c 0)
        CLIENT_PREFIX=(taskset -c 1)
    fi
}

# terminate PID WHAT: SIGTERM, then SIGKILL after STOP_TIMEOUT s (logged as "WHAT still running");
# sets TERMINATED_STATUS to the process's exit status.
terminate() {
    local pid=$1 what=$2 status=0 waited=0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$what still running ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || status=$?
    # shellcheck disable=SC2034 # read by the drivers
    TERMINATED_STATUS=$status
}

# install_traps: on exit, stop_servers (the driver's), remove TMP and, when the report was not
# reached (REPORTED=0), say with which status the script stopped.
REPORTED=0
install_traps() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
bench_cleanup() {
    local status=$?
    stop_servers
    rm -rf "$TMP"
    if ((status != 0 && REPORTED == 0)); then
        echo "$BENCH_NAME: stopped with status $status before the report" >&2
    fi
}

# wait_ready PID CHECK...: polls every 0.1 s until the command CHECK... succeeds (returns 0), PID exits
# (returns 1) or READY_TIMEOUT s pass (returns 2).
wait_ready() {
    local pid=$1 waited=0
    shift
    while ((waited < READY_TIMEOUT * 10)); do
        kill -0 "$pid" 2>/dev/null || return 1
        "$@" && return 0
        sleep 0.1
        waited=$((waited + 1))
    done
    return 2
}

# start_error READY OUT ERR NOT_READY: sets START_ERROR for a server that wait_ready gave up on with
# status READY (1: it exited, with SERVER_EXIT_STATUS; else: NOT_READY after READY_TIMEOUT s), quoting
# the tails of its stdout file OUT and stderr file ERR.
start_error() {
    if (($1 == 1)); then
        START_ERROR="exited with status $SERVER_EXIT_STATUS before it was ready"
        START_ERROR+="; stdout: $(tail -n 3 "$2" | tr '\n' ' ')"
        START_ERROR+="; stderr: $(tail -n 3 "$3" | tr '\n' ' ')"
    else
        START_ERROR="$4 after ${READY_TIMEOUT}s: $(tail -n 3 "$3" | tr '\n' ' ')"
    fi
}

# client_timeout WARMUP DURATION: seconds a load client run may take, bounded on top of the client's
# own hard stop (warm-up + duration + 10 s).
client_timeout() { awk -v w="$1" -v d="$2" 'BEGIN { print int(w + d + 30) }'; }

# Server utime+stime in clock ticks: /proc/PID/stat fields 14 and 15. Field 2 may hold spaces, so
# strip through the last ") " first; field 3 then comes first, making 14 and 15 the 12th and 13th.
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    awk '{ print $12 + $13 }' <<<"$stat"
}

# free_port tcp|udp: a TCP or UDP port on 127.0.0.1 that is free now (bound and released; nothing else
# on this machine is racing for it).
free_port() {
    if [[ $1 == udp ]]; then
        "$PYTHON" -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    else
        "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    fi
}

# record KEY=VALUE...: appends one JSON object (numbers stay numbers) to $RUNS; the value of the key
# RECORD_MERGE_KEY names a JSON file whose object is merged in.
record() {
    "$PYTHON" - "$RECORD_MERGE_KEY" "$@" >>"$RUNS" <<'PY'
import json, sys
out = {}
for item in sys.argv[2:]:
    key, value = item.split("=", 1)
    if key == sys.argv[1]:
        out.update(json.load(open(value)))
        continue
    try:
        out[key] = int(value)
    except ValueError:
        out[key] = value
print(json.dumps(out))
PY
}

# build_products PRODUCT...: release builds of this package's products, one by one: the package's other
# targets (the allocation benchmarks) need the root package and ordo-one/benchmark, which these do not.
build_products() {
    local product
    for product in "$@"; do
        timeout "$BUILD_TIMEOUT" swift build -c release --package-path "$BENCH_DIR" --product "$product" >&2 \
            || die "release build of $product failed"
    done
}

# resolve_tulipd SKIP_BUILD: checks --tulipd's TULIPD, or builds tulipd (release) at the root unless
# SKIP_BUILD and points TULIPD at it; sets TULIPD_SKIP to why tulipd cannot run, or "".
resolve_tulipd() {
    TULIPD_SKIP=""
    if [[ -n $TULIPD ]]; then
        [[ -x $TULIPD ]] || die "--tulipd: $TULIPD is not an executable"
        log "using tulipd at $TULIPD (not built by this script)"
        return 0
    fi
    if (($1 == 0)); then
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
}

# tulipd_config FILE <<<LISTENERS: a tulipd config file with the listeners (a JSON array) read from
# stdin, warnings only and a 1 s shutdown grace.
tulipd_config() {
    local listeners
    listeners=$(cat)
    cat >"$1" <<JSON
{"log":{"level":"warning","format":"text"},"shutdown":{"grace_seconds":1},"listeners":$listeners}
JSON
}

utc_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ""; }
python_version() { "$PYTHON" -c 'import platform; print(platform.python_implementation(), platform.python_version())'; }
git_head() { git -C "$ROOT_DIR" rev-parse -q --verify --short HEAD 2>/dev/null || echo none; }
