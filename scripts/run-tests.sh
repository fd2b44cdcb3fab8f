#!/usr/bin/env bash
# Runs the Swift test suites, the black-box suite and the systemd suite (unit files, then the
# shipped units under the real systemd in a container: needs root), then prints one closing
# line: "N passed, N failed". Exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

swift_log=$(mktemp)
py_log=$(mktemp)
systemd_log=$(mktemp)
trap 'rm -f "$swift_log" "$py_log" "$systemd_log"' EXIT

status=0
swift build --build-tests || exit 1
swift test --skip-build 2>&1 | tee "$swift_log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

TULIPD="$PWD/.build/debug/tulipd" python3 -m pytest tests/blackbox -q -p no:cacheprovider 2>&1 | tee "$py_log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

TULIPD="$PWD/.build/debug/tulipd" python3 -m pytest tests/systemd -q -p no:cacheprovider 2>&1 | tee "$systemd_log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# Counts from pytest's closing summary line ("1 failed, 5 passed, 2 errors in 14.13s").
pytest_summary() { grep -aE '[0-9]+ [a-z]+.* in [0-9.]+s' "$1" | tail -1; }
pytest_passed() { pytest_summary "$1" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0; }
pytest_failed() { pytest_summary "$1" | grep -oE '[0-9]+ (failed|errors?)' | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}'; }

swift_total=$(grep -aoE 'Test run with [0-9]+ tests?' "$swift_log" | tail -1 | grep -oE '[0-9]+' || echo 0)
swift_failed=$(grep -acE '✘ Test .* failed after' "$swift_log" || true)
py_passed=$(pytest_passed "$py_log")
py_failed=$(pytest_failed "$py_log")
systemd_passed=$(pytest_passed "$systemd_log")
systemd_failed=$(pytest_failed "$systemd_log")
passed=$(( ${swift_total:-0} - ${swift_failed:-0} + ${py_passed:-0} + ${systemd_passed:-0} ))
failed=$(( ${swift_failed:-0} + ${py_failed:-0} + ${systemd_failed:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo
echo "swift: $(( ${swift_total:-0} - ${swift_failed:-0} )) passed, ${swift_failed:-0} failed;" \
    "black-box: ${py_passed:-0} passed, ${py_failed:-0} failed;" \
    "systemd: ${systemd_passed:-0} passed, ${systemd_failed:-0} failed"
echo "$passed passed, $failed failed"
exit $status
