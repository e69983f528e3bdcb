#!/usr/bin/env bash
# The README's first command (after set-up): synthesize a small command
# dataset, train a BiLSTM on it on the CPU, export it to ONNX, and transcribe
# the sample clips in data/samples/. A few minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SL=.venv/bin/speechlstm
OUT=${DEMO_DIR:-runs/demo}
WORDS=${DEMO_WORDS:-yes,no,stop,go}
rm -rf "$OUT"
mkdir -p "$OUT"
start=$(date +%s)

echo "== 1/4 synthesize '$WORDS' with every installed TTS engine"
$SL data synth --words "$WORDS" --clips 180 --unknown-clips 300 --out "$OUT/data"

echo "== 2/4 train a bidirectional LSTM on the CPU"
$SL train "$OUT/data" --out "$OUT/run" --epochs 30 --no-cache \
  --set train.patience=8 --set train.warmup_epochs=2

echo "== 3/4 export to ONNX (int8)"
$SL export "$OUT/run/best.pt" -o "$OUT/demo.int8.onnx" --int8

echo "== 4/4 transcribe the sample clips"
$SL transcribe --model "$OUT/demo.int8.onnx" --top-k 2 data/samples/*.wav

echo "demo done in $(( $(date +%s) - start )) s; model: $OUT/demo.int8.onnx"
