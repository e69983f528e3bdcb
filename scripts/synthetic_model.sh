#!/usr/bin/env bash
# The synthetic-only preset: the 12-class model trained on synthesized speech
# alone (no human recording), what users of custom words get today. Written to
# runs/synthetic/sc12_synthetic.int8.onnx; bench/synthetic_to_real.py reports
# it on real speakers. Every step is seeded.
set -euo pipefail
cd "$(dirname "$0")/.."
SL=.venv/bin/speechlstm
DATA=${DATA:-data/synth_sc12}
RUN=${RUN:-runs/synthetic}
$SL data synth --preset sc12 --clips 300 --seed 0 --out "$DATA"
rm -rf "$RUN"
$SL train "$DATA" --out "$RUN" --config recipes/sc12_synthetic.recipe.toml --device cpu
$SL export "$RUN/best.pt" -o "$RUN/sc12_synthetic.int8.onnx" --int8
$SL info "$RUN/sc12_synthetic.int8.onnx"
