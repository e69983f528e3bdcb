#!/usr/bin/env bash
# Rebuild the shipped default model (speechlstm/assets/sc12.int8.onnx): real
# speech (the Speech Commands clips listed in data/sc12_clips.csv, taken from
# the tree given as SC: the project's subset, or the official v0.02 archive
# from `speechlstm data download speech-commands`) plus synthesized speech:
# the sc12 preset's ten commands, and 497 everyday words
# (recipes/vocabulary.txt, scripts/synth_vocab.sh; `make encoder`
# shares them) whose clips outside the 35 Speech Commands words join as
# `_unknown_` (scripts/vocab_unknown.py: the negatives a stream meets),
# exported to int8. The recipe distils features from the speech embedding
# (openwakeword 0.4.0's files, installed by the train extra); its per-clip
# embeddings are cached under ~/.cache/speechlstm/embedding. Every step is seeded: the same command gives the same
# file on the same stack (CPU, torch 2.11, onnxruntime as installed).
#
# The detector defaults stored in the model are recipes/sc12.detector.toml:
# `speechlstm tune-detector` chose them for this recipe's model on streams of
# validation speakers (the most commands matched within 1 false alarm an hour
# of real non-command speech and noise and a 300 ms median latency; a label's
# own threshold at most 0.05 under the global one, and only where it adds no
# false alarm). A changed recipe needs a new tuning (docs/models/sc12.md):
#   speechlstm data streams "$SC" -o data/streams --split validation
#   speechlstm tune-detector -m MODEL --commands data/streams/validation_commands.wav \
#     --truth data/streams/validation_truth.csv \
#     --negatives data/streams/validation_negatives.wav --write recipes/sc12.detector.toml
set -euo pipefail
cd "$(dirname "$0")/.."
SL=.venv/bin/speechlstm
SC=${SC:-../shared/data/speech_commands_subset}
SYNTH=${SYNTH:-data/synth_sc12}
REAL=${REAL:-data/sc12_real}
RUN=${RUN:-runs/default}
RECIPE=${RECIPE:-recipes/sc12.recipe.toml}
start=$(date +%s)
SC="$SC" SYNTH="$SYNTH" REAL="$REAL" bash scripts/sc12_data.sh
rm -rf "$RUN"
$SL train "$REAL" --add "$SYNTH" --add data/vocab_unknown --out "$RUN" --config "$RECIPE" \
  --device cpu
$SL export "$RUN/best.pt" -o speechlstm/assets/sc12.int8.onnx --int8 \
  --detector recipes/sc12.detector.toml
$SL info speechlstm/assets/sc12.int8.onnx
echo "default model rebuilt in $(( $(date +%s) - start )) s"
