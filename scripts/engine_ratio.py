"""Reads interleaved runs of benches/differential (both engines, same
changes), checks that every run produced the same view and the same number of
output changes, and prints each engine's rates (min/median/max) and the
ratio. Exits non-zero when the engines disagree: a ratio between engines that
compute different things means nothing."""
import re
import statistics
import sys

RATE = re.compile(r"^(cdcview|differential-dataflow): (\d+) changes in ([\d.]+) s = (\d+) changes/s; (\d+) changes per CPU-second")
OUTPUT = re.compile(r"^output changes: (\d+); view rows: (\d+); view digest: ([0-9a-f]+)")
MEMORY = re.compile(r"^peak resident memory: (\d+) kB")

runs = {"cdcview": [], "differential-dataflow": []}
outputs = set()
engine = None
for line in open(sys.argv[1]):
    if m := RATE.match(line):
        engine = m.group(1)
        runs[engine].append({"wall": int(m.group(4)), "cpu": int(m.group(5))})
    elif m := OUTPUT.match(line):
        outputs.add(m.groups())
    elif (m := MEMORY.match(line)) and engine:
        runs[engine][-1]["rss"] = int(m.group(1)) // 1024

if not runs["cdcview"] or not runs["differential-dataflow"]:
    sys.exit(f"{sys.argv[1]}: runs of both engines are needed")
if len(outputs) != 1:
    sys.exit(f"the engines disagree (output changes, view rows, digest): {sorted(outputs)}")
changes, rows, digest = outputs.pop()
print(f"both engines: {changes} output changes, {rows} view rows, view digest {digest}, in every run")


def spread(values):
    return f"{min(values):,} / {int(statistics.median(values)):,} / {max(values):,}"


for name, rs in runs.items():
    print(f"{name:>22}: {len(rs)} runs, changes/s min/median/max wall {spread([r['wall'] for r in rs])}; "
          f"per CPU-second {spread([r['cpu'] for r in rs])}; peak RSS {spread([r.get('rss', 0) for r in rs])} MiB")
for key, label in (("wall", "wall clock"), ("cpu", "per CPU-second")):
    pairs = [c[key] / d[key] for c, d in zip(runs["cdcview"], runs["differential-dataflow"])]
    print(f"ratio cdcview / differential-dataflow, {label}, run by run: "
          f"min {min(pairs):.2f}x, median {statistics.median(pairs):.2f}x, max {max(pairs):.2f}x")
