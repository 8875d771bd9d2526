#!/usr/bin/env bash
# Table-3-shaped experiment on the synthetic domains: SDF per domain, MDF, MoE-MDF at three P,
# from the same S4P start, two seeds, in $WORK (default ./table3), which must hold synth/ (`s5
# synth --out $WORK/synth`) and s4p/ (an S4P run of this backbone, e.g. assets/configs/s4p-synth.ron).
# Usage: table3.sh [steps] [seeds...]; then table3.py in $WORK prints the table. A stopped
# script continues where it stopped.
set -euo pipefail
mkdir -p "${WORK:-table3}" && cd "${WORK:-table3}"
S5=${S5:-s5}
STEPS=${1:-100}; shift || true
SEEDS=${*:-"1 2"}
mkdir -p configs runs
for seed in $SEEDS; do
  for mode in 'Sdf("synth-urban")' 'Sdf("synth-rural")' 'Sdf("synth-suburb")' Mdf 'MoeMdf(16)' 'MoeMdf(32)' 'MoeMdf(64)'; do
    name=$(echo "$mode" | tr -d '()"' | tr 'A-Z' 'a-z' | sed 's/synth-/-/')-s$seed
    cfg=configs/$name.ron
    cat > "$cfg" <<RON
(
    datasets: [
        (spec: "synth/urban/urban.ron", train_split: "train", val_split: Some("val"), metric: MF1),
        (spec: "synth/rural/rural.ron", train_split: "train", val_split: Some("val")),
        (spec: "synth/suburb/suburb.ron", train_split: "train", val_split: Some("val")),
    ],
    model: (
        backbone: Custom((dim: 96, depth: 4, heads: 3, patch_px: 16, mlp_ratio: 4, pos_grid_px: 128,
            drop_path: 0.0, feature_blocks: (0, 1, 2, 3), ffn: Dense, activation: Gelu)),
        decoder_channels: 32,
        drop_path: 0.05,
    ),
    steps: $STEPS,
    batch: 4,
    optimizer: (lr: 5e-4, weight_decay: 0.05, clip_grad_norm: Some(5.0)),
    augment: (crop_px: 128),
    val: (every_steps: 50, sample_images: 2),
    checkpoint_every: 50,
    seed: $seed,
    recipe: Finetune((mode: $mode)),
)
RON
    if [ -e "runs/$name/DONE" ]; then continue; fi
    resume=(); [ -e "runs/$name/manifest.json" ] && ls runs/$name/checkpoints/step-* >/dev/null 2>&1 && resume=(--resume)
    echo "== $name $(date +%T)"
    if [ ${#resume[@]} -gt 0 ]; then
      $S5 finetune --quiet --resume --out "runs/$name"
    else
      $S5 finetune --quiet --init s4p --config "$cfg" --out "runs/$name"
    fi
    touch "runs/$name/DONE"
  done
done
echo "== all done $(date +%T)"
