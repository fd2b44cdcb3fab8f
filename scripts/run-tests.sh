#!/usr/bin/env bash
# Runs the Swift test suites and the black-box suite, then prints one closing line:
# "N passed, N failed". Exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

swift_log=$(mktemp)
py_log=$(mktemp)
trap 'rm -f "$swift_log" "$py_log"' EXIT

status=0
swift build --build-tests || exit 1
swift test --skip-build 2>&1 | tee "$swift_log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

TULIPD="$PWD/.build/debug/tulipd" python3 -m pytest tests/blackbox -q -p no:cacheprovider 2>&1 | tee "$py_log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

swift_total=$(grep -aoE 'Test run with [0-9]+ tests?' "$swift_log" | tail -1 | grep -oE '[0-9]+' || echo 0)
swift_failed=$(grep -acE '✘ Test .* failed after' "$swift_log" || true)
py_passed=$(grep -aoE '[0-9]+ passed' "$py_log" | tail -1 | grep -oE '[0-9]+' || echo 0)
py_failed=$(grep -aoE '[0-9]+ (failed|error)' "$py_log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
[ -n "$py_failed" ] || py_failed=0
passed=$(( ${swift_total:-0} - ${swift_failed:-0} + ${py_passed:-0} ))
failed=$(( ${swift_failed:-0} + ${py_failed:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo
echo "swift: $(( ${swift_total:-0} - ${swift_failed:-0} )) passed, ${swift_failed:-0} failed; black-box: ${py_passed:-0} passed, ${py_failed:-0} failed"
echo "$passed passed, $failed failed"
exit $status
