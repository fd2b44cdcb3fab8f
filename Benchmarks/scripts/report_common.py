"""What echo-report.py, udp-report.py and files-report.py share: reading the runs, grouping them into
rows with a status, medians and spreads, ratios, printing the table and notes, writing the JSON file
and the exit status.
"""

import argparse
import json
import sys

NOISY_SPREAD = 0.20


def ratio(value, base):
    if value is None or not base:
        return None
    return value / base


def fmt_ratio(value):
    return "n/a" if value is None else f"{value:.2f}×"


def spread(values):
    """max/min - 1 of the values, None when the smallest is not positive."""
    return max(values) / min(values) - 1 if min(values) > 0 else None


def parse_args(driver):
    """--runs (JSON lines written by DRIVER), --output and --meta KEY=VALUE...; returns (args, runs, meta)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", required=True, help=f"JSON lines written by {driver}")
    parser.add_argument("--output", required=True, help="where to write the JSON results")
    parser.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    runs = [json.loads(line) for line in open(args.runs) if line.strip()]
    meta = dict(item.split("=", 1) for item in args.meta)
    return args, runs, meta


def group_runs(runs, key, fields):
    """Rows in first-seen order of key(run): yields (group key, row, ok runs, all runs of the group).

    row starts as fields(group key) plus its status (failed if any run failed, skipped if none ran, else
    ok) and, when not ok, the note of the first failed (or skipped) run. The caller adds its medians and
    then row["runs"] via finish_row.
    """
    groups = {}
    for run in runs:
        groups.setdefault(key(run), []).append(run)
    for group_key, group in groups.items():
        row = fields(group_key)
        failed = [r for r in group if r["status"] == "failed"]
        ok = [r for r in group if r["status"] == "ok"]
        if failed:
            row.update(status="failed", note=failed[0].get("note", ""))
        elif not ok:
            row.update(status="skipped", note=group[0].get("note", ""))
        else:
            row["status"] = "ok"
        yield group_key, row, ok, group


def finish_row(row, group):
    """Keeps the runs that were not skipped in the row."""
    row["runs"] = [r for r in group if r["status"] != "skipped"]
    return row


def exit_statuses_after_sigterm(row, ok):
    """Records the servers' non-zero exit statuses after SIGTERM, if any."""
    exits = sorted({r.get("server_exit_status") for r in ok} - {0, None, ""})
    if exits:
        row["server_exit_statuses_after_sigterm"] = exits


def print_report(summary, lines, notes, noisy, noisy_subject, meta, one_round_note, noisy_in=""):
    """The summary line, the table, then the notes (the noisy rows and, if asked, a one-round warning).

    The noisy note reads "NOISY_SUBJECT differ by more than 20%NOISY_IN, max/min".
    """
    print(summary)
    print()
    print("\n".join(lines))
    if noisy:
        notes.append(
            f"- noisy ({noisy_subject} differ by more than {NOISY_SPREAD * 100:.0f}%{noisy_in}, max/min; "
            f"medians shown): " + ", ".join(noisy)
        )
    if one_round_note and meta.get("repeat", "1") == "1":
        notes.append("- one round only: on a shared 2-core machine use --repeat 3 or more before acting on a ratio")
    if notes:
        print()
        print("\n".join(notes))


def write_results(output, benchmark, meta, rows):
    """Writes the JSON results file; returns the exit status: 0 when no row failed and one measured."""
    with open(output, "w") as out:
        json.dump({"benchmark": benchmark, "meta": meta, "rows": rows}, out, indent=2, ensure_ascii=False)
        out.write("\n")
    print(f"\nJSON: {output}", file=sys.stderr)

    measured = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    return 1 if failed or not measured else 0


def add_ratios(row, base, keys):
    """row[ratio key] = row[value key] ÷ base[value key] for each (ratio key, value key) in keys;
    None when there is no base or its value is zero."""
    for ratio_key, value_key in keys:
        row[ratio_key] = ratio(row[value_key], base and base[value_key])
