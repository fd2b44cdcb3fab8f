#!/usr/bin/env python3
"""Turns bench-echo.sh's runs into the Markdown table (stdout) and the JSON results file.

Each input line is one run: a fresh server, one EchoLoad measurement (its JSON merged in), or a
skipped/failed marker. Rows are (server, transport) pairs in first-seen order; a row shows the medians
of its runs and is failed if any run failed.

Ratios are against raw NIO on the same transport: throughput ratio = msgs/s ÷ raw msgs/s (above 1× is
faster than raw), CPU ratio = server CPU µs per message ÷ raw's (above 1× costs more CPU than raw; the
target for tulipd is at most 1.10×), user ratio = the same for user time alone.

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

LABELS = {"raw": "raw NIO", "tulipd": "tulipd (echo)", "asyncio": "asyncio (CPython)", "uvloop": "uvloop"}
TARGET_CPU_RATIO = 1.10


def make_rows(runs):
    rows = []
    for _, row, ok, group in group_runs(
        runs,
        key=lambda run: (run["server"], run["transport"]),
        fields=lambda k: {"server": k[0], "transport": k[1]},
    ):
        if ok:
            row["messages_per_second"] = statistics.median(r["messages_per_second"] for r in ok)
            row["server_cpu_us_per_message"] = statistics.median(r["server_cpu_us_per_message"] for r in ok)
            row["server_user_us_per_message"] = statistics.median(r["server_user_us_per_message"] for r in ok)
            row["server_cpu_utilization"] = statistics.median(
                r["server_cpu_seconds"] / r["server_cpu_sample_seconds"] for r in ok
            )
            row["server_cpu_us_per_message_spread"] = spread([r["server_cpu_us_per_message"] for r in ok])
            exit_statuses_after_sigterm(row, ok)
        rows.append(finish_row(row, group))
    return rows


def main():
    args, runs, meta = parse_args("bench-echo.sh")
    rows = make_rows(runs)

    raw = {r["transport"]: r for r in rows if r["server"] == "raw" and r["status"] == "ok"}
    for row in rows:
        if row["status"] != "ok":
            continue
        add_ratios(
            row,
            raw.get(row["transport"]),
            [
                ("throughput_ratio_vs_raw", "messages_per_second"),
                ("cpu_per_message_ratio_vs_raw", "server_cpu_us_per_message"),
                ("user_per_message_ratio_vs_raw", "server_user_us_per_message"),
            ],
        )

    lines = [
        "| server | transport | msgs/s | CPU µs/msg | user µs/msg | server CPU "
        "| msgs/s vs raw | CPU/msg vs raw | user/msg vs raw |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    noisy = []
    for row in rows:
        label = LABELS.get(row["server"], row["server"])
        if row["status"] != "ok":
            lines.append(f"| {label} | {row['transport']} | {row['status']} | | | | | | |")
            notes.append(f"- {label} over {row['transport']}: {row['status']}: {row.get('note', '')}")
            continue
        lines.append(
            f"| {label} | {row['transport']} | {row['messages_per_second']:,.0f} "
            f"| {row['server_cpu_us_per_message']:.2f} | {row['server_user_us_per_message']:.2f} "
            f"| {row['server_cpu_utilization'] * 100:.0f}% "
            f"| {fmt_ratio(row['throughput_ratio_vs_raw'])} | {fmt_ratio(row['cpu_per_message_ratio_vs_raw'])} "
            f"| {fmt_ratio(row['user_per_message_ratio_vs_raw'])} |"
        )
        cpu_spread = row.get("server_cpu_us_per_message_spread")
        if cpu_spread is not None and cpu_spread > NOISY_SPREAD:
            noisy.append(f"{label} {row['transport']} {cpu_spread * 100:.0f}%")
        if "server_exit_statuses_after_sigterm" in row:
            notes.append(
                f"- {label} over {row['transport']}: exit status after SIGTERM "
                f"{row['server_exit_statuses_after_sigterm']} (expected 0)"
            )
        if row["server"] == "tulipd" and row["cpu_per_message_ratio_vs_raw"] is not None:
            verdict = "meets" if row["cpu_per_message_ratio_vs_raw"] <= TARGET_CPU_RATIO else "misses"
            notes.append(
                f"- tulipd over {row['transport']} {verdict} the target "
                f"(CPU/msg ≤ {TARGET_CPU_RATIO:.2f}× raw NIO): {fmt_ratio(row['cpu_per_message_ratio_vs_raw'])}"
            )

    summary = (
        f"Echo: {meta.get('connections', '?')} connections × {meta.get('size', '?')} B ping-pong, "
        f"{meta.get('warmup_seconds', '?')} s warm-up + {meta.get('duration_seconds', '?')} s measured, "
        f"median of {meta.get('repeat', '1')} round(s); CPU = server utime+stime over the measured window; "
        f"{meta.get('cpus', '?')} CPUs, load average at start {meta.get('loadavg_at_start', '?')}."
    )
    print_report(summary, lines, notes, noisy, "CPU µs/msg of a row's runs", meta, one_round_note=True)
    return write_results(args.output, "echo", meta, rows)


if __name__ == "__main__":
    sys.exit(main())
