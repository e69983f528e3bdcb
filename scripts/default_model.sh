#!/usr/bin/env bash
# Rebuild the shipped default model (speechlstm/assets/sc12.int8.onnx) from
# synthetic speech only. Every step is seeded: the same command gives the same
# file on the same stack (CPU, torch 2.11, onnxruntime as installed).
set -euo pipefail
cd "$(dirname "$0")/.."
SL=.venv/bin/speechlstm
DATA=${DATA:-data/synth_sc12}
RUN=${RUN:-runs/default}
$SL data synth --preset sc12 --clips 300 --seed 0 --out "$DATA"
rm -rf "$RUN"
$SL train "$DATA" --out "$RUN" --config speechlstm/assets/sc12.recipe.toml --device cpu
$SL export "$RUN/best.pt" -o speechlstm/assets/sc12.int8.onnx --int8
$SL info speechlstm/assets/sc12.int8.onnx
