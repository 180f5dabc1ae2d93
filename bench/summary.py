#!/usr/bin/env python3
"""Collects bench/results/*.json into one table (results/summary.md, printed) and a plot of
every rootbox/peer ratio against its target (results/summary.png, drawn with gnuplot).

    bench/summary.py [RESULTS_DIR]
"""
import json
import os
import shutil
import subprocess
import sys


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    results = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "results")
    rows = []
    for name in sorted(os.listdir(results)):
        if not name.endswith(".json") or name == "summary.json":
            continue
        doc = json.load(open(os.path.join(results, name)))
        for ratio, v in doc.get("ratios", {}).items():
            if isinstance(v, (int, float)):  # an older report: a bare ratio
                v = {"ratio": v, "target": None, "met": None}
            rows.append({
                "scenario": name[:-5],
                "ratio": ratio,
                "value": v.get("ratio"),
                "target": v.get("target"),
                "met": v.get("met"),
                "why": v.get("why", ""),
                "date": doc.get("date", ""),
            })
    lines = ["| scenario | ratio | value | target | met |", "|---|---|---|---|---|"]
    for r in rows:
        value = f"{r['value']:.3f}" if r["value"] is not None else f"n/a ({r['why'][:60]})"
        target = f"<= {r['target']}" if r["target"] is not None else "-"
        met = {True: "met", False: "**NOT met**", None: "-"}[r["met"]]
        lines.append(f"| {r['scenario']} | {r['ratio']} | {value} | {target} | {met} |")
    table = "\n".join(lines) + "\n"
    open(os.path.join(results, "summary.md"), "w").write(table)
    json.dump(rows, open(os.path.join(results, "summary.json"), "w"), indent=2)
    print(table)
    plotted = [r for r in rows if r["value"] is not None and r["target"]]
    if not plotted:
        return
    if not shutil.which("gnuplot"):
        print("summary.py: gnuplot not installed (apt-get install gnuplot-nox): no summary.png")
        return
    data = os.path.join(results, "summary.dat")
    with open(data, "w") as f:
        for r in plotted:
            label = f"{r['scenario']}: {r['ratio']}".replace('"', "'").replace("_", "-")
            # value relative to its target: below 1 is a target met.
            f.write(f"\"{label}\" {r['value'] / r['target']:.4f}\n")
    png = os.path.join(results, "summary.png")
    script = f"""
set terminal pngcairo size 1200,{200 + 28 * len(plotted)} noenhanced font ",10"
set output "{png}"
set title "rootbox / peer, as a fraction of its target (< 1: target met)"
set style fill solid 0.7
set yrange [-0.5:{len(plotted) - 0.5}]
set xrange [0:*]
set ytics nomirror
set grid xtics
set arrow from 1, graph 0 to 1, graph 1 nohead lc rgb "red" dt 2
set lmargin 48
plot "{data}" using ($2*0.5):0:($2*0.5):(0.35):yticlabels(1) with boxxyerror lc rgb "#3a7bd5" notitle
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"summary.py: gnuplot failed: {e}")
        return
    finally:
        os.unlink(data)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
