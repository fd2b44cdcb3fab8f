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

import argparse
import json
import statistics
import sys

LABELS = {"raw": "raw NIO", "tulipd": "tulipd (echo)", "asyncio": "asyncio (CPython)", "uvloop": "uvloop"}
TARGET_CPU_RATIO = 1.10
NOISY_SPREAD = 0.20


def ratio(value, base):
    if value is None or not base:
        return None
    return value / base


def fmt_ratio(value):
    return "n/a" if value is None else f"{value:.2f}×"


def make_rows(runs):
    groups = {}
    for run in runs:
        groups.setdefault((run["server"], run["transport"]), []).append(run)
    rows = []
    for (server, transport), group in groups.items():
        row = {"server": server, "transport": transport}
        failed = [r for r in group if r["status"] == "failed"]
        ok = [r for r in group if r["status"] == "ok"]
        if failed:
            row.update(status="failed", note=failed[0].get("note", ""))
        elif not ok:
            row.update(status="skipped", note=group[0].get("note", ""))
        else:
            row["status"] = "ok"
        if ok:
            row["messages_per_second"] = statistics.median(r["messages_per_second"] for r in ok)
            row["server_cpu_us_per_message"] = statistics.median(r["server_cpu_us_per_message"] for r in ok)
            row["server_user_us_per_message"] = statistics.median(r["server_user_us_per_message"] for r in ok)
            row["server_cpu_utilization"] = statistics.median(
                r["server_cpu_seconds"] / r["server_cpu_sample_seconds"] for r in ok
            )
            cpu = [r["server_cpu_us_per_message"] for r in ok]
            row["server_cpu_us_per_message_spread"] = max(cpu) / min(cpu) - 1 if min(cpu) > 0 else None
            exits = sorted({r.get("server_exit_status") for r in ok} - {0, None, ""})
            if exits:
                row["server_exit_statuses_after_sigterm"] = exits
        row["runs"] = [r for r in group if r["status"] != "skipped"]
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", required=True, help="JSON lines written by bench-echo.sh")
    parser.add_argument("--output", required=True, help="where to write the JSON results")
    parser.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    runs = [json.loads(line) for line in open(args.runs) if line.strip()]
    meta = dict(item.split("=", 1) for item in args.meta)
    rows = make_rows(runs)

    raw = {r["transport"]: r for r in rows if r["server"] == "raw" and r["status"] == "ok"}
    for row in rows:
        if row["status"] != "ok":
            continue
        base = raw.get(row["transport"])
        row["throughput_ratio_vs_raw"] = ratio(row["messages_per_second"], base and base["messages_per_second"])
        row["cpu_per_message_ratio_vs_raw"] = ratio(
            row["server_cpu_us_per_message"], base and base["server_cpu_us_per_message"]
        )
        row["user_per_message_ratio_vs_raw"] = ratio(
            row["server_user_us_per_message"], base and base["server_user_us_per_message"]
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
        spread = row.get("server_cpu_us_per_message_spread")
        if spread is not None and spread > NOISY_SPREAD:
            noisy.append(f"{label} {row['transport']} {spread * 100:.0f}%")
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

    print(
        f"Echo: {meta.get('connections', '?')} connections × {meta.get('size', '?')} B ping-pong, "
        f"{meta.get('warmup_seconds', '?')} s warm-up + {meta.get('duration_seconds', '?')} s measured, "
        f"median of {meta.get('repeat', '1')} round(s); CPU = server utime+stime over the measured window; "
        f"{meta.get('cpus', '?')} CPUs, load average at start {meta.get('loadavg_at_start', '?')}."
    )
    print()
    print("\n".join(lines))
    if noisy:
        notes.append(
            f"- noisy (CPU µs/msg of a row's runs differ by more than {NOISY_SPREAD * 100:.0f}%, max/min; "
            f"medians shown): " + ", ".join(noisy)
        )
    if meta.get("repeat", "1") == "1":
        notes.append("- one round only: on a shared 2-core machine use --repeat 3 or more before acting on a ratio")
    if notes:
        print()
        print("\n".join(notes))

    with open(args.output, "w") as out:
        json.dump({"benchmark": "echo", "meta": meta, "rows": rows}, out, indent=2, ensure_ascii=False)
        out.write("\n")
    print(f"\nJSON: {args.output}", file=sys.stderr)

    measured = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    return 1 if failed or not measured else 0


if __name__ == "__main__":
    sys.exit(main())
