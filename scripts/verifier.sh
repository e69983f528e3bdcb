#!/usr/bin/env bash
# Build the opt-in second stage for `live --verifier` (docs/streaming.md): a
# speech-embedding model (Google's speech_embedding from openwakeword 0.4.0 +
# a BiLSTM head) trained on the default model's data plus the hard negatives
# the shipped default fires on in the TRAINING speakers' non-command audio,
# exported to one ONNX file. It carries the embedding's weights (licence: see
# `speechlstm info OUT`), so it is built on your machine, never shipped.
#
#   make verifier   # -> models/sc12.verifier.onnx and models/sc12.verifier.detector.toml
#   speechlstm live --verifier models/sc12.verifier.onnx --verifier-threshold 0.8 \
#       --detector models/sc12.verifier.detector.toml
set -euo pipefail
cd "$(dirname "$0")/.."
SL=.venv/bin/speechlstm
PY=.venv/bin/python
SC=${SC:-../shared/data/speech_commands_subset}
REAL=${REAL:-data/sc12_real}
STREAMS=${STREAMS:-data/streams}
MINED=${MINED:-data/mined_r1}
RUN=${RUN:-runs/verifier}
OUT=${OUT:-models/sc12.verifier.onnx}
start=$(date +%s)
# The default model's data (as make default-model builds it).
SC="$SC" SYNTH=data/synth_sc12 REAL="$REAL" bash scripts/sc12_data.sh
# Two hours of the training speakers' non-command words over noise; every
# window the shipped model fires on at 0.5 becomes an `_unknown_` clip.
$PY bench/streaming.py --write-streams "$STREAMS" --mining-minutes 120 --skip-report > /dev/null
$SL data mine "$STREAMS/train_negatives.wav" --threshold 0.5 --out "$MINED"
rm -rf "$RUN"
$SL train "$REAL" --add data/synth_sc12 --add data/vocab_unknown --add "$MINED" \
  --config recipes/sc12.recipe.toml --frontend embedding --out "$RUN"
mkdir -p "$(dirname "$OUT")"
$SL export "$RUN" -o "$OUT" --force
$SL info "$OUT"
# The first stage's settings for the pair, tuned on the validation speakers'
# streams with the verifier's rulings (the default model's own stay as they are).
$SL tune-detector --commands "$STREAMS/validation_commands.wav" \
  --truth "$STREAMS/validation_truth.csv" --negatives "$STREAMS/validation_negatives.wav" \
  --verifier "$OUT" --verifier-threshold 0.8 --write "${OUT%.onnx}.detector.toml" --force
echo "verifier built in $(( $(date +%s) - start )) s"
