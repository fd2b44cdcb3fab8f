#!/usr/bin/env python3
"""Turns bench-tls.sh's runs into the Markdown table (stdout) and the JSON results file.

Each input line is one client run (tls_load.py's JSON merged in) or a skipped/failed marker. Rows are
(workload, server) pairs; a row shows the medians of its runs and is failed if any run failed.
Ratios are against asyncio+ssl for the same workload: rate ratio = ops/s ÷ asyncio's (above 1× is
faster), CPU ratio = server CPU µs per operation ÷ asyncio's (below 1× costs less).

Exit status: 0 when every row that was not skipped measured fine and at least one did, else 1.
"""

import statistics
import sys

from report_common import (
    NOISY_SPREAD,
    add_ratios,
    finish_row,
    fmt_ratio,
    group_runs,
    parse_args,
    print_report,
    spread,
    write_results,
)

LABELS = {"tulipd": "tulipd (echo, TLS)", "asyncio": "asyncio + ssl", "uvloop": "uvloop + ssl"}
UNITS = {"handshakes": "handshakes/s", "echo": "round trips/s"}


def make_rows(runs):
    rows = []
    for _, row, ok, group in group_runs(
        runs,
        key=lambda run: (run["workload"], run["server"]),
        fields=lambda k: {"workload": k[0], "server": k[1]},
    ):
        if ok:
            row["operations_per_second"] = statistics.median(r["operations_per_second"] for r in ok)
            row["server_cpu_us_per_operation"] = statistics.median(r["server_cpu_us_per_operation"] for r in ok)
            row["server_cpu_utilization"] = statistics.median(r["server_cpu_seconds"] / r["seconds"] for r in ok)
            row["client_cpu_utilization"] = statistics.median(r["client_cpu_seconds"] / r["seconds"] for r in ok)
            row["rate_spread"] = spread([r["operations_per_second"] for r in ok])
        rows.append(finish_row(row, group))
    return sorted(rows, key=lambda r: (r["workload"] != "handshakes", r["server"] != "tulipd"))


def main():
    args, runs, meta = parse_args("bench-tls.sh")
    rows = make_rows(runs)
    base = {r["workload"]: r for r in rows if r["server"] == "asyncio" and r["status"] == "ok"}
    for row in rows:
        if row["status"] == "ok":
            add_ratios(
                row,
                base.get(row["workload"]),
                [
                    ("rate_ratio_vs_asyncio", "operations_per_second"),
                    ("cpu_per_operation_ratio_vs_asyncio", "server_cpu_us_per_operation"),
                ],
            )

    lines = [
        "| workload | server | ops/s | server CPU µs/op | server CPU | client CPU | ops/s vs asyncio | CPU/op vs asyncio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes, noisy = [], []
    for row in rows:
        label = LABELS.get(row["server"], row["server"])
        unit = UNITS.get(row["workload"], row["workload"])
        if row["status"] != "ok":
            lines.append(f"| {unit} | {label} | {row['status']} | | | | | |")
            notes.append(f"- {label}, {row['workload']}: {row['status']}: {row.get('note', '')}")
            continue
        lines.append(
            f"| {unit} | {label} | {row['operations_per_second']:,.0f} | {row['server_cpu_us_per_operation']:.1f} "
            f"| {row['server_cpu_utilization'] * 100:.0f}% | {row['client_cpu_utilization'] * 100:.0f}% "
            f"| {fmt_ratio(row['rate_ratio_vs_asyncio'])} | {fmt_ratio(row['cpu_per_operation_ratio_vs_asyncio'])} |"
        )
        if row["rate_spread"] is not None and row["rate_spread"] > NOISY_SPREAD:
            noisy.append(f"{label} {row['workload']} {row['rate_spread'] * 100:.0f}%")
        if row["client_cpu_utilization"] > 0.9:
            notes.append(
                f"- {label}, {row['workload']}: the Python client used "
                f"{row['client_cpu_utilization'] * 100:.0f}% of a CPU: the rate is client-bound; "
                "compare server CPU µs/op instead"
            )

    summary = (
        f"TLS: handshakes ({meta.get('concurrency', '?')} loops of connect + full handshake + close) and echo "
        f"({meta.get('connections', '?')} connections × {meta.get('size', '?')} B ping-pong), "
        f"{meta.get('warmup_seconds', '?')} s warm-up + {meta.get('duration_seconds', '?')} s measured each, "
        f"median of {meta.get('repeat', '1')} round(s); client: Python on uvloop; "
        f"{meta.get('cpus', '?')} CPUs, load average at start {meta.get('loadavg_at_start', '?')}; {meta.get('openssl', '')}."
    )
    print_report(summary, lines, notes, noisy, "ops/s of a row's runs", meta, one_round_note=True)
    return write_results(args.output, "tls", meta, rows)


if __name__ == "__main__":
    sys.exit(main())
