#!/usr/bin/env python3
"""Table 3 of the paper, shaped on the synthetic runs in runs/: params and per-domain final
validation metrics, mean over seeds (and each seed)."""
import json, subprocess, sys, glob, os, statistics
S5 = os.environ.get("S5", "s5")
def final_val(run):
    last = None
    for line in open(f"{run}/events.jsonl"):
        e = json.loads(line)
        if e["kind"] == "val":
            last = e["metrics"]
    return last
def params(run):
    out = subprocess.run([S5, "model", "summary", "--json", "--model", run], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["total"]
seeds = sorted({r.rsplit("-s", 1)[1] for r in glob.glob("runs/*-s*") if os.path.exists(r + "/DONE")})
metric = {"urban": "synth-urban/mF1", "rural": "synth-rural/mIoU", "suburb": "synth-suburb/mIoU"}
rows = []
def cell(values):
    m = statistics.mean(values)
    return f"{100*m:.1f}" + (" (" + " / ".join(f"{100*v:.1f}" for v in values) + ")" if len(values) > 1 else "")
def collect(name_of_seed):
    per = {d: [] for d in metric}
    for s in seeds:
        for d in metric:
            run = name_of_seed(d, s)
            if not os.path.exists(run + "/DONE"):
                return None
            per[d].append(final_val(run)[metric[d]])
    return per
sdf = collect(lambda d, s: f"runs/sdf-{d}-s{s}")
if sdf:
    p = sum(params(f"runs/sdf-{d}-s{seeds[0]}") for d in metric)
    rows.append(("SDF (three models)", p, sdf))
for name, label in [("mdf", "MDF"), ("moemdf16", "MoE-MDF, P = 16 (α = 1/8)"), ("moemdf32", "MoE-MDF, P = 32 (α = 1/4)"), ("moemdf64", "MoE-MDF, P = 64 (α = 1/2)")]:
    per = collect(lambda d, s: f"runs/{name}-s{s}")
    if per:
        rows.append((label, params(f"runs/{name}-s{seeds[0]}"), per))
print(f"seeds: {', '.join(seeds)}; each cell: the last validation, mean over seeds (each seed)")
print("| method | params (M) | urban mF1 | rural mIoU | suburb mIoU | average |")
print("|---|---|---|---|---|---|")
for label, p, per in rows:
    avg = [statistics.mean(per[d][i] for d in metric) for i in range(len(seeds))]
    print(f"| {label} | {p/1e6:.3f} | {cell(per['urban'])} | {cell(per['rural'])} | {cell(per['suburb'])} | {cell(avg)} |")
