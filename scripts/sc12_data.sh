#!/usr/bin/env bash
# The default model's training data (shared by default_model.sh and verifier.sh;
# every step skips what is already there): the sc12 preset synthesized
# (SYNTH), the everyday vocabulary and its non-command words as `_unknown_`,
# and the Speech Commands clips listed in data/sc12_clips.csv linked from SC
# into REAL.
set -euo pipefail
cd "$(dirname "$0")/.."
SL=.venv/bin/speechlstm
PY=.venv/bin/python
SC=${SC:-../shared/data/speech_commands_subset}
SYNTH=${SYNTH:-data/synth_sc12}
REAL=${REAL:-data/sc12_real}
$SL data synth --preset sc12 --clips 300 --seed 0 --out "$SYNTH"
# Named explicitly: SYNTH above is in this script's environment when a caller
# passes it, and synth_vocab.sh reads the same name for its own folder.
SYNTH=data/synth_vocab bash scripts/synth_vocab.sh
$PY scripts/vocab_unknown.py data/synth_vocab data/vocab_unknown
$PY scripts/sc_subset.py "$SC" data/sc12_clips.csv "$REAL"
