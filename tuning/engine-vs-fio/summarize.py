#!/usr/bin/env python3
"""Median MB/s per run label from a results JSON-lines file, and each run's ratio to fio.

Usage: summarize.py results.jsonl [--csv] [--sort]

Prints a markdown table (or CSV with --csv), rows in first-seen order (--sort: fio runs first,
then raw, then engine, each by name). MB/s is 10^6 bytes per second for every tool (fio's
bw_bytes; the engine's and raw writer's bytes / seconds). The ratio columns divide a run's
median by the median of `fio-qd4` (and `fio-qd1`) from the same file, i.e. from the same
session, alternated with the other runs. "avg req KiB" is the median over runs of the average
size of a completed write request on the block device (/proc/diskstats) during the run;
"dev/own" the median ratio of bytes the device wrote during the run to the bytes the run
wrote (above 1: rewrites of partial pages, metadata, or another process writing meanwhile).
"""
import json
import statistics
import sys

TOOL_ORDER = {"fio": 0, "raw": 1, "engine": 2}


def main() -> None:
    path = sys.argv[1]
    as_csv = "--csv" in sys.argv[2:]
    sort = "--sort" in sys.argv[2:]
    runs: dict[str, list[dict]] = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line:
            row = json.loads(line)
            runs.setdefault(row["run"], []).append(row)

    def median_of(rows: list[dict], key: str):
        values = [float(r[key]) for r in rows if r.get(key) is not None]
        return statistics.median(values) if values else None

    medians = {name: median_of(rows, "mb_per_s") for name, rows in runs.items()}
    qd4 = medians.get("fio-qd4")
    qd1 = medians.get("fio-qd1")
    names = list(runs)
    if sort:
        names.sort(key=lambda n: (TOOL_ORDER.get(runs[n][0].get("tool", ""), 9), n))
    header = ["run", "n", "median MB/s", "min", "max", "vs fio-qd4", "vs fio-qd1", "avg req KiB", "dev/own"]
    table = []
    for name in names:
        rows = runs[name]
        values = [float(r["mb_per_s"]) for r in rows]
        med = medians[name]
        req = median_of(rows, "dev_avg_write_kib")
        amp = [r["dev_mb_written"] * 1e6 / r["bytes"] for r in rows if r.get("dev_mb_written") is not None]
        table.append([
            name,
            str(len(values)),
            f"{med:.0f}",
            f"{min(values):.0f}",
            f"{max(values):.0f}",
            f"{med / qd4:.0%}" if qd4 else "-",
            f"{med / qd1:.0%}" if qd1 else "-",
            f"{req:.0f}" if req is not None else "-",
            f"{statistics.median(amp):.2f}" if amp else "-",
        ])
    if as_csv:
        print(",".join(header))
        for r in table:
            print(",".join(r))
        return
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in table:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
