#!/usr/bin/env bash
# Synthesize the vocabulary (the 35 Speech Commands words plus the ~500 everyday
# words of recipes/vocabulary.txt, the voices of synth.vocabulary_config,
# CLIPS per word) into SYNTH (default data/synth_vocab). Seeded, and an interrupted run
# continues: `make encoder` and the default model's `_unknown_` words share it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SYNTH=${SYNTH:-data/synth_vocab}
CLIPS=${CLIPS:-20}
# The voice set is pinned (synth.vocabulary_config): voices installed later
# (make voices) would otherwise change every clip's draw and add clips.
$PY - "$SYNTH" "$CLIPS" <<'PYEOF'
import sys
from pathlib import Path

from speechlstm.labels import SC35_WORDS
from speechlstm.data.synth import synthesize_dataset, vocabulary_config

out, clips = Path(sys.argv[1]), int(sys.argv[2])
lines = Path("recipes/vocabulary.txt").read_text().split("\n")
vocab = [w for w in lines if w and not w.startswith("#")]
words = tuple(SC35_WORDS) + tuple(w for w in vocab if w not in SC35_WORDS)
counts = synthesize_dataset(vocabulary_config(words, clips), out)
print(f"{out}: {counts['clips']} clips ({counts['made']} made now), {counts['voices']} voices")
PYEOF
