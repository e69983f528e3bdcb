#!/usr/bin/env bash
# Build the opt-in second stage for `live --verifier` (docs/streaming.md): a
# speech-embedding model (Google's speech_embedding from openwakeword 0.4.0 +
# a BiLSTM head) trained on the default model's data plus the hard negatives
# a default model fired on in the TRAINING speakers' non-command audio
# (scripts/mined_teacher.sh), exported to one ONNX file. It carries the
# embedding's weights (licence: see `speechlstm info OUT`), so it is built on
# your machine, never shipped.
#
#   make verifier   # -> models/sc12.verifier.onnx and models/sc12.verifier.detector.toml
#   speechlstm live --verifier models/sc12.verifier.onnx --verifier-threshold 0.8 \
#       --detector models/sc12.verifier.detector.toml
set -euo pipefail
cd "$(dirname "$0")/.."
SL=.venv/bin/speechlstm
SC=${SC:-../shared/data/speech_commands_subset}
REAL=${REAL:-data/sc12_real}
STREAMS=${STREAMS:-data/streams}
MINED=${MINED:-data/mined_r1}
RUN=${RUN:-runs/verifier}
OUT=${OUT:-models/sc12.verifier.onnx}
start=$(date +%s)
# The embedding teacher with the mined hard negatives (recipes/mined_r1.txt:
# where the default model fired in the training speakers' non-command audio).
SC="$SC" REAL="$REAL" STREAMS="$STREAMS" MINED="$MINED" RUN="$RUN" bash scripts/mined_teacher.sh
mkdir -p "$(dirname "$OUT")"
$SL export "$RUN" -o "$OUT" --force
$SL info "$OUT"
# The first stage's settings for the pair, tuned on the validation speakers'
# streams with the verifier's rulings (the default model's own stay as they are).
$SL tune-detector --commands "$STREAMS/validation_commands.wav" \
  --truth "$STREAMS/validation_truth.csv" --negatives "$STREAMS/validation_negatives.wav" \
  --verifier "$OUT" --verifier-threshold 0.8 --write "${OUT%.onnx}.detector.toml" --force
echo "verifier built in $(( $(date +%s) - start )) s"
