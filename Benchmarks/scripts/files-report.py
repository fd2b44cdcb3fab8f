#!/usr/bin/env python3
"""Turns bench-files.sh's runs into the Markdown table (stdout) and the JSON results file.

Each input line is one transfer of the whole file (a fetch from a server, or a local command), or a
skipped/failed marker. Rows are methods in first-seen order; a row shows the medians of its runs and is
failed if any run failed.

GiB/s vs cat = GiB/s ÷ cat's GiB/s (cat reads the page cache with no socket: the ceiling). CPU/GiB vs
py-sendfile = server CPU s/GiB ÷ the Python sendfile server's (the same kernel path without an event
loop: above 1× is what tulipd adds).

Exit status: 0 when every row that was not skipped measured fine and at least one did, else 1.
"""

import statistics
import sys

from report_common import (
    NOISY_SPREAD,
    finish_row,
    fmt_ratio,
    group_runs,
    parse_args,
    print_report,
    ratio,
    spread,
    write_results,
)

LABELS = {
    "tulipd": ("tulipd `files` (sendfile)", "TCP fetch"),
    "py-sendfile": ("Python os.sendfile server", "TCP fetch"),
    "py-readwrite": ("Python readv + sendall server, 1 MiB", "TCP fetch"),
    "cat": ("`cat FILE > /dev/null`", "local"),
    "dd": ("`dd if=FILE of=/dev/null bs=1M`", "local"),
}
GIB = 1 << 30


def cpu_seconds(run):
    """The CPU of whatever produced the bytes: the server for a fetch, the command itself otherwise."""
    return run["server_cpu_seconds"] if "server_cpu_seconds" in run else run["process_cpu_seconds"]


def make_rows(runs):
    rows = []
    for _, row, ok, group in group_runs(runs, key=lambda run: run["method"], fields=lambda m: {"method": m}):
        if ok:
            row["gib_per_second"] = statistics.median(r["gib_per_second"] for r in ok)
            per_gib = [cpu_seconds(r) / (r["bytes"] / GIB) for r in ok]
            row["cpu_seconds_per_gib"] = statistics.median(per_gib)
            if all("client_cpu_seconds" in r for r in ok):
                row["client_cpu_seconds_per_gib"] = statistics.median(
                    r["client_cpu_seconds"] / (r["bytes"] / GIB) for r in ok
                )
            speeds = [r["gib_per_second"] for r in ok]
            row["gib_per_second_spread"] = max(speeds) / min(speeds) - 1
            row["cpu_seconds_per_gib_spread"] = spread(per_gib)
        rows.append(finish_row(row, group))
    return rows


def main():
    args, runs, meta = parse_args("bench-files.sh")
    rows = make_rows(runs)

    ok = {r["method"]: r for r in rows if r["status"] == "ok"}
    cat = ok.get("cat")
    sendfile = ok.get("py-sendfile")
    for row in rows:
        if row["status"] != "ok":
            continue
        row["throughput_ratio_vs_cat"] = ratio(row["gib_per_second"], cat and cat["gib_per_second"])
        if row["method"] in ("tulipd", "py-sendfile", "py-readwrite"):
            row["cpu_per_gib_ratio_vs_py_sendfile"] = ratio(
                row["cpu_seconds_per_gib"], sendfile and sendfile["cpu_seconds_per_gib"]
            )

    lines = [
        "| method | path | GiB/s | CPU s/GiB (server or command) | client CPU s/GiB | GiB/s vs cat "
        "| CPU/GiB vs py-sendfile |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    noisy = []
    for row in rows:
        label, path = LABELS.get(row["method"], (row["method"], ""))
        if row["status"] != "ok":
            lines.append(f"| {label} | {path} | {row['status']} | | | | |")
            notes.append(f"- {label}: {row['status']}: {row.get('note', '')}")
            continue
        client = row.get("client_cpu_seconds_per_gib")
        lines.append(
            f"| {label} | {path} | {row['gib_per_second']:.2f} | {row['cpu_seconds_per_gib']:.3f} "
            f"| {'—' if client is None else f'{client:.3f}'} | {fmt_ratio(row['throughput_ratio_vs_cat'])} "
            f"| {fmt_ratio(row['cpu_per_gib_ratio_vs_py_sendfile']) if 'cpu_per_gib_ratio_vs_py_sendfile' in row else '—'} |"
        )
        row_spread = max(row["gib_per_second_spread"], row["cpu_seconds_per_gib_spread"] or 0)
        if row_spread > NOISY_SPREAD:
            noisy.append(f"{label} {row_spread * 100:.0f}%")

    size = int(meta.get("size_bytes", "0"))
    summary = (
        f"Files: one {size / GIB:g} GiB file of random bytes on {meta.get('filesystem', '?')}, in the page "
        f"cache; median of {meta.get('repeat', '?')} round(s); client for the TCP fetches: "
        f"{meta.get('client', '?')}; server CPU = utime+stime of the whole server process over the fetch "
        f"(process CPU clock), a command's CPU = its own rusage; {meta.get('cpus', '?')} CPUs, load average "
        f"at start {meta.get('loadavg_at_start', '?')}."
    )
    print_report(
        summary, lines, notes, noisy, "a row's runs", meta, one_round_note=False, noisy_in=" in GiB/s or CPU/GiB"
    )
    return write_results(args.output, "files", meta, rows)

if __name__ == "__main__":
    sys.exit(main())
