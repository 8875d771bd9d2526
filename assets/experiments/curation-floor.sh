#!/usr/bin/env bash
# The similarity floor against the paper's rule (quotas alone) and entropy alone, for seed
# models of several strengths (BENCHMARKS.md, "Curation", "The similarity floor").
# In $WORK (default ./curation-floor): a synthetic pool of 300 images (`s5 synth
# --pool-images 300`), seed models trained for each of STEPS steps of
# assets/configs/train-synth.ron, a curation per seed model (256 px patches, 8 prototypes,
# budget 150), three selections each, evaluated against the pool's truth. Prints one
# Markdown table row per seed model and rule. A stopped script continues where it stopped.
# Usage (from the repository root): assets/experiments/curation-floor.sh [STEPS...]
set -euo pipefail
root=$(pwd)
S5=${S5:-$root/target/release/s5}
WORK=${WORK:-curation-floor}
STEPS=${*:-"60 120 200"}
mkdir -p "$WORK" && cd "$WORK"
[ -f data/synth/pool/truth.ron ] || "$S5" synth --out data/synth --pool-images 300 >/dev/null
share() { # the selection's out-of-distribution share, in percent, and the OOD patches by kind
  "$S5" curate evaluate --out "$1" --truth data/synth/pool/truth.ron --json | python3 -c '
import json, sys
e = json.load(sys.stdin)
ood = {k["kind"]: k["selected_patches"] for k in e["kinds"] if k["kind"] != "InDomain"}
selected = sum(k["selected_patches"] for k in e["kinds"])
cells = [f"{selected}", f"{100 * e['"'"'selected_ood_share'"'"']:.1f} %", f"{100 * e['"'"'pool_ood_share'"'"']:.1f} %"]
print(" | ".join(cells + [str(ood[k]) for k in sorted(ood)]))'
}
echo "| seed steps | rule | selected | selection OOD | pool OOD | cloud | haze | other domain | sea | sensor noise |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for steps in $STEPS; do
  seed=seed-$steps
  if [ -f "$seed/manifest.json" ]; then  # goes on if it stopped; a finished run stays
    "$S5" train --quiet --resume --out "$seed" >/dev/null
  else
    "$S5" train --quiet --config "$root/assets/configs/train-synth.ron" --steps "$steps" \
      --out "$seed" >/dev/null
  fi
  cur=curate-$steps
  "$S5" curate run --model "$seed" --spec data/synth/pool/pool.ron --patch-px 256 --clusters 8 \
    --budget 150 --truth data/synth/pool/truth.ron --out "$cur" >/dev/null 2>&1
  echo "| $steps | similarity floor (default) | $(share "$cur") |"
  "$S5" curate select --out "$cur" --budget 150 --no-floor >/dev/null
  echo "| $steps | quotas alone (the paper's) | $(share "$cur") |"
  "$S5" curate select --out "$cur" --budget 150 --no-floor --ignore-clusters >/dev/null
  echo "| $steps | entropy alone | $(share "$cur") |"
done
