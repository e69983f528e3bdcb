#!/usr/bin/env bash
# The wheel as a user gets it: build it, install it into a fresh virtual
# environment outside the checkout (the base install: no torch), and run
# `speechlstm info`, `speechlstm transcribe` and the Python API there with the
# bundled default model. `make test-wheel`; CI runs it.
#
# WHEEL_VENV: where the fresh environment goes (default: a temporary folder,
# removed at the end). PYTHON: the interpreter to build it with.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
VENV=${WHEEL_VENV:-$WORK/venv}

echo "check-wheel: building the wheel" >&2
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation . -w "$WORK/dist" 2>/dev/null \
  || "$PYTHON" -m pip wheel -q --no-deps . -w "$WORK/dist"
wheel=$(ls "$WORK"/dist/speechlstm-*.whl)
echo "check-wheel: $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)" >&2

# The shipped models and the encoder must be inside.
"$PYTHON" - "$wheel" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
needed = ["speechlstm/assets/sc12.int8.onnx", "speechlstm/assets/sc12_synthetic.int8.onnx",
          "speechlstm/assets/sc12_mined.int8.onnx", "speechlstm/assets/sc12.verifier.head.onnx",
          "speechlstm/assets/sc12.verifier.detector.toml",
          "speechlstm/assets/encoder.safetensors", "speechlstm/cli/main.py", "speechlstm/api.py"]
missing = [n for n in needed if n not in names]
if missing:
    sys.exit(f"check-wheel: the wheel lacks {missing}")
stray = sorted(n for n in names if n.startswith(("tests/", "bench/", "cli/")))
if stray:
    sys.exit(f"check-wheel: the wheel holds files outside the package: {stray[:5]}")
EOF

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q "$wheel"
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "check-wheel: the base install brought torch" >&2; exit 1
fi

# Outside the checkout, so nothing is imported from the source tree.
cd "$WORK"
cp "$ROOT/data/samples/yes.wav" "$ROOT/data/samples/stop.wav" .
"$VENV/bin/speechlstm" info
out=$("$VENV/bin/speechlstm" transcribe --json yes.wav stop.wav)
echo "$out"
echo "$out" | grep -q '"path": "yes.wav", "label": "yes"' || { echo "check-wheel: transcribe yes.wav" >&2; exit 1; }
echo "$out" | grep -q '"path": "stop.wav", "label": "stop"' || { echo "check-wheel: transcribe stop.wav" >&2; exit 1; }
"$VENV/bin/python" - <<'EOF'
import numpy as np
import soundfile as sf
import speechlstm
from speechlstm import Detector, Recognizer

where = speechlstm.__file__
assert "/site-packages/" in where, f"imported from {where}, not the installed wheel"
r = Recognizer()
samples, rate = sf.read("yes.wav", dtype="int16")
p = r.predict(samples, sample_rate=rate)
assert p.label == "yes", p
stream = np.concatenate([np.zeros(16000, np.int16), samples, np.zeros(16000, np.int16)])
labels = [e.label for e in Detector().run([stream])]
assert labels == ["yes"], labels
print(f"check-wheel: the API from {where}: predict {p.label} {p.score:.3f}, detector {labels}")
EOF
echo "check-wheel: ok" >&2
