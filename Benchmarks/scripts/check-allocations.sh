#!/usr/bin/env bash
# Allocation gate: runs the ordo-one/benchmark targets (`Benchmarks/<Target>`, today only
# TulipBenchmarks) and checks their `mallocCountTotal` p90 against the committed static thresholds
# in Benchmarks/Thresholds/<swift-version>/ (STYLE.md §6). See Benchmarks/README.md.
#
# Exit status: 0 when every benchmark matches its threshold; 1 on a regression (more allocations
# than the threshold), on an improvement (fewer: commit the new thresholds with --update, in the
# same change, unless --allow-improvements), on missing thresholds, or when the benchmarks fail to
# build or run; 64 on bad arguments.
#
# Usage: Benchmarks/scripts/check-allocations.sh [--update] [--allow-improvements]
#          [--swift-version X.Y] [--filter REGEX]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
SWIFT=${SWIFT:-swift}

UPDATE=0
ALLOW_IMPROVEMENTS=0
SWIFT_VERSION=""
FILTER=()
RUN_TIMEOUT=${RUN_TIMEOUT:-2400} # seconds; a first build of the benchmark package takes ~3-5 min on 2 cores

usage() {
    cat <<USAGE
Usage: $(basename "$0") [options]

  --update               rewrite Thresholds/<swift-version>/ from a fresh run instead of checking
  --allow-improvements   exit 0 when allocations only went down (default: fail, so thresholds get updated)
  --swift-version X.Y    thresholds directory to use (default: the toolchain's major.minor)
  --filter REGEX         only benchmarks whose name matches (passed to the benchmark plugin)
USAGE
}

die() { echo "check-allocations: $*" >&2; exit 1; }
log() { echo "check-allocations: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --update) UPDATE=1; shift ;;
        --allow-improvements) ALLOW_IMPROVEMENTS=1; shift ;;
        --swift-version) SWIFT_VERSION=${2:?--swift-version needs a value}; shift 2 ;;
        --filter) FILTER+=(--filter "${2:?--filter needs a value}"); shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 64 ;;
    esac
done

if [[ -z $SWIFT_VERSION ]]; then
    SWIFT_VERSION=$("$SWIFT" --version 2>/dev/null | sed -n 's/.*Swift version \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1)
    [[ -n $SWIFT_VERSION ]] || die "cannot read the Swift version from '$SWIFT --version'; pass --swift-version"
fi
[[ $SWIFT_VERSION =~ ^[0-9]+\.[0-9]+$ ]] || die "--swift-version must look like 6.3, got '$SWIFT_VERSION'"

# The benchmark tool resolves --path against the working directory, not the package: run from
# the benchmark package so that Thresholds/X.Y/ means Benchmarks/Thresholds/X.Y/.
cd "$BENCH_DIR"
THRESHOLDS="Thresholds/$SWIFT_VERSION/"

if [[ $UPDATE == 1 ]]; then
    mkdir -p "$THRESHOLDS"
    log "updating $BENCH_DIR/$THRESHOLDS"
    timeout "$RUN_TIMEOUT" "$SWIFT" package --allow-writing-to-package-directory benchmark thresholds update \
        --format metricP90AbsoluteThresholds --path "$THRESHOLDS" --no-progress "${FILTER[@]}"
    log "done; review and commit the diff under Benchmarks/$THRESHOLDS"
    exit 0
fi

if ! compgen -G "$THRESHOLDS*.p90.json" >/dev/null; then
    die "no thresholds in Benchmarks/$THRESHOLDS for Swift $SWIFT_VERSION; create them with --update"
fi

output=$(mktemp)
trap 'rm -f "$output"' EXIT

# `thresholds check` silently skips a benchmark that has no threshold file, so a new benchmark
# would go unchecked: every listed benchmark must have one. A name with a space can never match
# (the file is written with `_`, looked up with the space), so it is refused too.
if [[ ${#FILTER[@]} == 0 ]]; then
    timeout "$RUN_TIMEOUT" "$SWIFT" package benchmark list >"$output" 2>&1 || {
        cat "$output" >&2
        die "cannot list the benchmarks (build failure?)"
    }
    missing=0
    target=""
    while IFS= read -r line; do
        if [[ $line =~ ^Target\ \'(.+)\'\ available\ benchmarks:$ ]]; then
            target=${BASH_REMATCH[1]}
        elif [[ -z $line ]]; then
            target=""
        elif [[ -n $target ]]; then
            if [[ $line == *" "* ]]; then
                log "benchmark '$target:$line' has a space in its name; thresholds check cannot find its file"
                missing=1
            elif [[ ! -f "$THRESHOLDS$target.$line.p90.json" ]]; then
                log "no threshold for '$target:$line' (Benchmarks/$THRESHOLDS$target.$line.p90.json); run --update"
                missing=1
            fi
        fi
    done <"$output"
    [[ $missing == 0 ]] || die "thresholds are incomplete"
fi

log "checking against Benchmarks/$THRESHOLDS"
set +e
timeout "$RUN_TIMEOUT" "$SWIFT" package benchmark thresholds check \
    --format metricP90AbsoluteThresholds --path "$THRESHOLDS" --no-progress "${FILTER[@]}" 2>&1 | tee "$output"
rc=${PIPESTATUS[0]}
set -e

# The tool's own codes (0 equal, 2 regressions, 4 only improvements) do not survive `swift
# package`, which exits 1 for any plugin error; its verdict line and error name do.
if [[ $rc == 124 ]]; then
    die "timed out after ${RUN_TIMEOUT}s"
elif [[ $rc == 0 ]] && grep -q "is EQUAL to the defined thresholds" "$output"; then
    log "allocations match the thresholds"
elif grep -q -e "benchmarkThresholdRegression" -e "is WORSE than the defined thresholds" "$output"; then
    die "allocation regression: see the tables above; fix it, or if it is intended run --update and commit"
elif grep -q -e "benchmarkThresholdImprovement" -e "is BETTER than the defined thresholds" "$output"; then
    if [[ $ALLOW_IMPROVEMENTS == 1 ]]; then
        log "allocations improved (allowed by --allow-improvements); run --update and commit the new thresholds"
    else
        die "allocations improved: run $(basename "$0") --update and commit the new thresholds"
    fi
else
    die "the benchmarks failed to build or run, or no threshold matched (exit $rc)"
fi
