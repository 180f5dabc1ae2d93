#!/usr/bin/env python3
"""Turns a hyperfine JSON export into bench/results/<scenario>.json and a table.

    report.py TITLE OUT HYPERFINE_JSON[:HYPERFINE_JSON...] [a/b<=target ...]

A ratio spec `a/b<=0.75` is the median of command `a` over that of `b`, with its target
(`a/b` alone: reported, with no target).
Commands that could not run come in SKIPPED_TSV (name TAB reason) and are reported as such.
Extra measurements (not hyperfine's) come as JSON in EXTRA_JSON: {"name": {"value": ..,
"unit": ..}} and are copied under "measurements".
"""
import json
import os
import platform
import re
import sys
import time


def main():
    title, out, hf, *specs = sys.argv[1:]
    results = {}
    for path in hf.split(":"):
        if not os.path.exists(path):
            continue
        for r in json.load(open(path))["results"]:
            results[r["command"]] = {
                "median_ms": r["median"] * 1e3,
                "mean_ms": r["mean"] * 1e3,
                "stddev_ms": (r["stddev"] or 0) * 1e3,
                "min_ms": r["min"] * 1e3,
                "max_ms": r["max"] * 1e3,
                "runs": len(r["times"]),
            }
    skipped = {}
    for line in os.environ.get("SKIPPED_TSV", "").splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            skipped[k] = v
    measurements = json.loads(os.environ.get("EXTRA_JSON") or "{}")
    values = {k: v["median_ms"] for k, v in results.items()}
    values.update({k: v["value"] for k, v in measurements.items()})
    ratios = {}
    for spec in specs:
        m = re.fullmatch(r"([^/]+)/([^<]+)(?:<=([0-9.]+))?", spec)
        if not m:
            sys.exit(f"report.py: bad ratio spec {spec!r} (want a/b<=target, or a/b)")
        a, b = m.group(1), m.group(2)
        target = float(m.group(3)) if m.group(3) else None
        entry = {"target": target}
        if a in values and b in values and values[b] > 0:
            entry["ratio"] = values[a] / values[b]
            entry["met"] = None if target is None else entry["ratio"] <= target
        else:
            missing = [x for x in (a, b) if x not in values]
            entry["ratio"] = None
            entry["met"] = None
            entry["why"] = "; ".join(f"{x}: {skipped.get(x, 'no result')}" for x in missing)
        ratios[f"{a}/{b}"] = entry
    doc = {
        "benchmark": title,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count()},
        "results": results,
        "measurements": measurements,
        "ratios": ratios,
        "skipped": skipped,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"\n{title}")
    for k, v in results.items():
        print(f"  {k:<28} {v['median_ms']:>9.2f} ms  (mean {v['mean_ms']:.2f} ± {v['stddev_ms']:.2f})")
    for k, v in measurements.items():
        print(f"  {k:<28} {v['value']:>9.2f} {v['unit']}")
    for k, v in skipped.items():
        print(f"  {k:<28} skipped: {v[:100]}")
    for k, v in ratios.items():
        if v["ratio"] is None:
            print(f"  ratio {k:<22} n/a (target <= {v['target']}): {v['why'][:100]}")
        elif v["target"] is None:
            print(f"  ratio {k:<22} {v['ratio']:.3f}")
        else:
            verdict = "met" if v["met"] else "NOT met"
            print(f"  ratio {k:<22} {v['ratio']:.3f} (target <= {v['target']}: {verdict})")
    print(f"  wrote {out}")


if __name__ == "__main__":
    main()
