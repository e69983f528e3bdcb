#!/usr/bin/env bash
# Synthesize the vocabulary (the 35 Speech Commands words plus the ~500 everyday
# words of speechlstm/assets/vocabulary.txt, every installed voice, CLIPS per
# word) into SYNTH (default data/synth_vocab). Seeded, and an interrupted run
# continues: `make encoder` and bench/ablation.py's vocabulary variants share it.
set -euo pipefail
cd "$(dirname "$0")/.."
SL=.venv/bin/speechlstm
PY=.venv/bin/python
SYNTH=${SYNTH:-data/synth_vocab}
CLIPS=${CLIPS:-20}
words=$($PY -c "
from speechlstm.labels import SC35_WORDS
from pathlib import Path
vocab = [w for w in Path('speechlstm/assets/vocabulary.txt').read_text().split('\n') if w and not w.startswith('#')]
print(','.join(list(SC35_WORDS) + [w for w in vocab if w not in SC35_WORDS]))")
$SL data synth --words "$words" --clips "$CLIPS" --unknown-clips 0 --seed 0 --out "$SYNTH"
