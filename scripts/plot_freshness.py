"""Plots commit-to-visible latency over time from `cdcview bench freshness --csv` files.

Usage: plot_freshness.py OUT.png RUN.csv...   (the rate is taken from the file name)
"""
import csv
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    out, runs = sys.argv[1], sys.argv[2:]
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    for path in runs:
        rows = list(csv.DictReader(open(path)))
        t = [float(r["seconds_since_start"]) for r in rows]
        ms = [float(r["latency_ms"]) for r in rows]
        rate = re.search(r"(\d+)\.csv$", path)
        ordered = sorted(ms)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        label = f"{rate.group(1) if rate else path} tx/s (p99 {p99:.0f} ms)"
        ax.plot(t, ms, ".", markersize=2, alpha=0.5, label=label)
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("commit -> change event (ms)")
    ax.set_yscale("log")
    ax.set_title("cdcview freshness: MySQL commit to insert event on /order_details_mv/changes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(markerscale=6)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main()
