#!/usr/bin/env bash
# The speech-embedding teacher trained with the mined hard negatives (RUN,
# default runs/verifier): `make verifier` exports it as the second stage for
# `live --verifier`; `make default-model`'s student takes the soft targets of
# its moved detector windows from it (docs/models/teacher.md, lever 5).
#
# The hard negatives are the 519 windows of the training speakers' negative
# stream listed in recipes/mined_r1.txt: where the default model of
# 2026-12-03 (before lever 5) fired at 0.5 (`speechlstm data mine`). They are
# cut from the regenerated stream rather than mined again, so the teacher,
# and the default model built from it, do not depend on which default model
# is installed. To mine your own: speechlstm data mine STREAM -m MODEL --out DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
SL=.venv/bin/speechlstm
PY=.venv/bin/python
SC=${SC:-../shared/data/speech_commands_subset}
REAL=${REAL:-data/sc12_real}
STREAMS=${STREAMS:-data/streams}
MINED=${MINED:-data/mined_r1}
RUN=${RUN:-runs/verifier}
# The default model's data (as make default-model builds it).
SC="$SC" SYNTH=data/synth_sc12 REAL="$REAL" bash scripts/sc12_data.sh
# Two hours of the training speakers' non-command words over noise (seeded),
# and the validation speakers' streams the detectors are tuned on.
$PY bench/streaming.py --write-streams "$STREAMS" --mining-minutes 120 --skip-report > /dev/null
$PY scripts/mined_windows.py "$STREAMS/train_negatives.wav" recipes/mined_r1.txt "$MINED"
rm -rf "$RUN"
$SL train "$REAL" --add data/synth_sc12 --add data/vocab_unknown --add "$MINED" \
  --config recipes/sc12.recipe.toml --frontend embedding --out "$RUN"
