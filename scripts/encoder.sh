#!/usr/bin/env bash
# Rebuild the shipped pretrained encoder (speechlstm/assets/encoder.safetensors):
# real Speech Commands speech (the clips of data/sc12_clips.csv from the tree
# given as SC) plus synthesized speech of a large vocabulary, one class per
# word, then everything but the last layer kept (speechlstm export-encoder).
# EXCLUDE=w1,w2 leaves words out of all of it and OUT names another file
# (the custom-words measurement encoder, bench/experiment_data.py, never hears the commands);
# SETS="section.key=value ..." changes the recipe (another width, say).
set -euo pipefail
cd "$(dirname "$0")/.."
SL=.venv/bin/speechlstm
PY=.venv/bin/python
SC=${SC:-../shared/data/speech_commands_subset}
SYNTH=${SYNTH:-data/synth_vocab}
MIX=${MIX:-data/encoder_mix}
RUN=${RUN:-runs/encoder}
OUT=${OUT:-speechlstm/assets/encoder.safetensors}
EXCLUDE=${EXCLUDE:-}
CLIPS=${CLIPS:-20}
SETS=${SETS:-}
set_args=()
for item in $SETS; do set_args+=(--set "$item"); done
start=$(date +%s)
SYNTH="$SYNTH" CLIPS="$CLIPS" bash scripts/synth_vocab.sh
$PY scripts/encoder_data.py "$SC" data/sc12_clips.csv "$SYNTH" "$MIX" --exclude "$EXCLUDE"
if [ -f "$RUN/last.pt" ] && [ ! -f "$RUN/metrics.json" ] && [ -z "${FRESH:-}" ]; then
  # An interrupted build (a quarter of an hour on 2 cores) goes on where it
  # stopped (a finished one, with its metrics.json, is rebuilt: the recipe
  # may have changed); FRESH=1 starts over.
  $SL train "$MIX" --out "$RUN" --resume --device "${DEVICE:-cpu}"
else
  rm -rf "$RUN"
  $SL train "$MIX" --out "$RUN" --config recipes/encoder.recipe.toml --device "${DEVICE:-cpu}" "${set_args[@]}"
fi
$SL export-encoder "$RUN/best.pt" -o "$OUT"
echo "encoder rebuilt in $(( $(date +%s) - start )) s: $OUT"
