#!/usr/bin/env python3
"""Turns bench-udp.sh's runs into the Markdown table (stdout) and the JSON results file.

Each input line is one run: a fresh server, one UDPEchoLoad measurement (its JSON merged in), or a
skipped/failed marker. Rows are servers in first-seen order; a row shows the medians of its runs and is
failed if any run failed.

Ratios are against raw NIO in the same run, as in echo-report.py: throughput ratio = datagrams/s ÷ raw
datagrams/s (above 1× is faster than raw), CPU ratio = server CPU µs per datagram ÷ raw's (above 1×
costs more CPU than raw; the target for tulipd is at most 1.10×), user ratio = the same for user time.

Exit status: 0 when every row that was not skipped measured fine and at least one did, else 1.
"""

import statistics
import sys

from report_common import (
    NOISY_SPREAD,
    add_ratios,
    exit_statuses_after_sigterm,
    finish_row,
    fmt_ratio,
    group_runs,
    parse_args,
    print_report,
    spread,
    write_results,
)

LABELS = {
    "raw": "raw NIO",
    "tulipd": "tulipd (echo, no rate limit)",
    "tulipd-rl": "tulipd (echo, rate limit on, never hit)",
}
TARGET_CPU_RATIO = 1.10


def make_rows(runs):
    rows = []
    for _, row, ok, group in group_runs(
        runs, key=lambda run: run["server"], fields=lambda server: {"server": server, "transport": "udp"}
    ):
        if ok:
            row["datagrams_per_second"] = statistics.median(r["datagrams_per_second"] for r in ok)
            row["server_cpu_us_per_datagram"] = statistics.median(r["server_cpu_us_per_datagram"] for r in ok)
            row["server_user_us_per_datagram"] = statistics.median(r["server_user_us_per_datagram"] for r in ok)
            row["server_cpu_utilization"] = statistics.median(
                r["server_cpu_seconds"] / r["server_cpu_sample_seconds"] for r in ok
            )
            row["lost_in_window"] = sum(r["lost_in_window"] for r in ok)
            row["lost"] = sum(r["lost"] for r in ok)
            row["late"] = sum(r["late"] for r in ok)
            row["server_cpu_us_per_datagram_spread"] = spread([r["server_cpu_us_per_datagram"] for r in ok])
            exit_statuses_after_sigterm(row, ok)
        rows.append(finish_row(row, group))
    return rows


def main():
    args, runs, meta = parse_args("bench-udp.sh")
    rows = make_rows(runs)

    base = next((r for r in rows if r["server"] == "raw" and r["status"] == "ok"), None)
    for row in rows:
        if row["status"] != "ok":
            continue
        add_ratios(
            row,
            base,
            [
                ("throughput_ratio_vs_raw", "datagrams_per_second"),
                ("cpu_per_datagram_ratio_vs_raw", "server_cpu_us_per_datagram"),
                ("user_per_datagram_ratio_vs_raw", "server_user_us_per_datagram"),
            ],
        )

    lines = [
        "| server | transport | datagrams/s | CPU µs/dgram | user µs/dgram | server CPU | lost "
        "| dgrams/s vs raw | CPU/dgram vs raw | user/dgram vs raw |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    noisy = []
    for row in rows:
        label = LABELS.get(row["server"], row["server"])
        if row["status"] != "ok":
            lines.append(f"| {label} | udp | {row['status']} | | | | | | | |")
            notes.append(f"- {label}: {row['status']}: {row.get('note', '')}")
            continue
        lines.append(
            f"| {label} | udp | {row['datagrams_per_second']:,.0f} "
            f"| {row['server_cpu_us_per_datagram']:.2f} | {row['server_user_us_per_datagram']:.2f} "
            f"| {row['server_cpu_utilization'] * 100:.0f}% | {row['lost_in_window']} "
            f"| {fmt_ratio(row['throughput_ratio_vs_raw'])} | {fmt_ratio(row['cpu_per_datagram_ratio_vs_raw'])} "
            f"| {fmt_ratio(row['user_per_datagram_ratio_vs_raw'])} |"
        )
        cpu_spread = row.get("server_cpu_us_per_datagram_spread")
        if cpu_spread is not None and cpu_spread > NOISY_SPREAD:
            noisy.append(f"{label} {cpu_spread * 100:.0f}%")
        if "server_exit_statuses_after_sigterm" in row:
            notes.append(
                f"- {label}: exit status after SIGTERM {row['server_exit_statuses_after_sigterm']} (expected 0)"
            )
        if row["server"].startswith("tulipd") and row["cpu_per_datagram_ratio_vs_raw"] is not None:
            verdict = "meets" if row["cpu_per_datagram_ratio_vs_raw"] <= TARGET_CPU_RATIO else "misses"
            notes.append(
                f"- {label} {verdict} the target (CPU/dgram ≤ {TARGET_CPU_RATIO:.2f}× raw NIO): "
                f"{fmt_ratio(row['cpu_per_datagram_ratio_vs_raw'])}"
            )

    summary = (
        f"UDP echo: {meta.get('sockets', '?')} sockets × {meta.get('size', '?')} B datagrams ping-pong, "
        f"{meta.get('window', '?')} in flight per socket, {meta.get('timeout_ms', '?')} ms loss timeout, "
        f"{meta.get('warmup_seconds', '?')} s warm-up + {meta.get('duration_seconds', '?')} s measured, "
        f"median of {meta.get('repeat', '1')} round(s); datagrams/s = round trips; CPU = server "
        f"utime+stime over the measured window; lost = datagrams timed out in the window, all rounds; "
        f"{meta.get('cpus', '?')} CPUs, load average at start {meta.get('loadavg_at_start', '?')}."
    )
    print_report(summary, lines, notes, noisy, "CPU µs/dgram of a row's runs", meta, one_round_note=True)
    return write_results(args.output, "udp-echo", meta, rows)

if __name__ == "__main__":
    sys.exit(main())
