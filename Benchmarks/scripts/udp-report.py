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

import argparse
import json
import statistics
import sys

LABELS = {
    "raw": "raw NIO",
    "tulipd": "tulipd (echo, no rate limit)",
    "tulipd-rl": "tulipd (echo, rate limit on, never hit)",
}
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
        groups.setdefault(run["server"], []).append(run)
    rows = []
    for server, group in groups.items():
        row = {"server": server, "transport": "udp"}
        failed = [r for r in group if r["status"] == "failed"]
        ok = [r for r in group if r["status"] == "ok"]
        if failed:
            row.update(status="failed", note=failed[0].get("note", ""))
        elif not ok:
            row.update(status="skipped", note=group[0].get("note", ""))
        else:
            row["status"] = "ok"
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
            cpu = [r["server_cpu_us_per_datagram"] for r in ok]
            row["server_cpu_us_per_datagram_spread"] = max(cpu) / min(cpu) - 1 if min(cpu) > 0 else None
            exits = sorted({r.get("server_exit_status") for r in ok} - {0, None, ""})
            if exits:
                row["server_exit_statuses_after_sigterm"] = exits
        row["runs"] = [r for r in group if r["status"] != "skipped"]
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", required=True, help="JSON lines written by bench-udp.sh")
    parser.add_argument("--output", required=True, help="where to write the JSON results")
    parser.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    runs = [json.loads(line) for line in open(args.runs) if line.strip()]
    meta = dict(item.split("=", 1) for item in args.meta)
    rows = make_rows(runs)

    base = next((r for r in rows if r["server"] == "raw" and r["status"] == "ok"), None)
    for row in rows:
        if row["status"] != "ok":
            continue
        row["throughput_ratio_vs_raw"] = ratio(row["datagrams_per_second"], base and base["datagrams_per_second"])
        row["cpu_per_datagram_ratio_vs_raw"] = ratio(
            row["server_cpu_us_per_datagram"], base and base["server_cpu_us_per_datagram"]
        )
        row["user_per_datagram_ratio_vs_raw"] = ratio(
            row["server_user_us_per_datagram"], base and base["server_user_us_per_datagram"]
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
        spread = row.get("server_cpu_us_per_datagram_spread")
        if spread is not None and spread > NOISY_SPREAD:
            noisy.append(f"{label} {spread * 100:.0f}%")
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

    print(
        f"UDP echo: {meta.get('sockets', '?')} sockets × {meta.get('size', '?')} B datagrams ping-pong, "
        f"{meta.get('window', '?')} in flight per socket, {meta.get('timeout_ms', '?')} ms loss timeout, "
        f"{meta.get('warmup_seconds', '?')} s warm-up + {meta.get('duration_seconds', '?')} s measured, "
        f"median of {meta.get('repeat', '1')} round(s); datagrams/s = round trips; CPU = server "
        f"utime+stime over the measured window; lost = datagrams timed out in the window, all rounds; "
        f"{meta.get('cpus', '?')} CPUs, load average at start {meta.get('loadavg_at_start', '?')}."
    )
    print()
    print("\n".join(lines))
    if noisy:
        notes.append(
            f"- noisy (CPU µs/dgram of a row's runs differ by more than {NOISY_SPREAD * 100:.0f}%, max/min; "
            f"medians shown): " + ", ".join(noisy)
        )
    if meta.get("repeat", "1") == "1":
        notes.append("- one round only: on a shared 2-core machine use --repeat 3 or more before acting on a ratio")
    if notes:
        print()
        print("\n".join(notes))

    with open(args.output, "w") as out:
        json.dump({"benchmark": "udp-echo", "meta": meta, "rows": rows}, out, indent=2, ensure_ascii=False)
        out.write("\n")
    print(f"\nJSON: {args.output}", file=sys.stderr)

    measured = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    return 1 if failed or not measured else 0


if __name__ == "__main__":
    sys.exit(main())
