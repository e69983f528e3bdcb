# speechlstm: the commands the README shows. Every target sets up first (cheap
# when already done), so each works on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
# The inference-only environment: the base install plus dev and mic, no torch.
INFER_VENV ?= .venv-infer
INFER_PY := $(INFER_VENV)/bin/python
SUBSET ?= ../shared/data/speech_commands_subset
# The Speech Commands tree the default model's real clips come from.
SC ?= $(SUBSET)

.PHONY: demo install voices install-inference test test-fast test-inference test-wheel check-arm lint docs default-model pair-first-stage verifier encoder synthetic-model bench-accuracy bench-synthetic bench-inference bench-streaming bench-cells bench-long-lag clean

# The README's first command: set up, then synthesize -> train -> export -> transcribe.
demo: install
	bash scripts/demo.sh

install:
	bash scripts/setup.sh

# Optional voices from Debian contrib/non-free (mbrola, pico): enables those
# sections, then installs them (scripts/setup.sh EXTRA_VOICES).
voices:
	EXTRA_VOICES=1 bash scripts/setup.sh

install-inference:
	VENV=$(INFER_VENV) EXTRAS=dev,mic bash scripts/setup.sh

# The full suite in the full install (train extra included).
test: install
	$(PY) -m pytest -q

# The quick loop while working: every test not marked `slow` (each over ~1.5 s
# on 2 cores is); CI and `make test` run the whole suite.
test-fast: install
	$(PY) -m pytest -q -m "not slow"

# Every test not marked `train`, in an environment without torch: a test that
# imports torch fails there. pytest exits 5 when it ran nothing: that is a
# broken selection here, so it fails too, with a message.
test-inference: install-inference
	@if $(INFER_PY) -c "import torch" 2>/dev/null; then \
	  echo "test-inference: torch is importable in $(INFER_VENV); remove it" >&2; exit 1; fi
	@rc=0; $(INFER_PY) -m pytest -q -m "not train" || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "test-inference: no tests ran" >&2; fi; exit $$rc

# The wheel as a user installs it: built, installed into a fresh venv outside
# the checkout, then transcribe, info and the Python API with the bundled model.
test-wheel: install
	PYTHON=$(PY) bash scripts/check_wheel.sh

# Every inference dependency resolves to aarch64 wheels (a Raspberry Pi with a
# 64-bit OS); downloads them to a temporary folder (docs/install.md).
check-arm: install
	PYTHON=$(PY) bash scripts/check_arm.sh

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# The generated parts of docs/: the settings reference in docs/training.md,
# from the field comments of speechlstm/config.py (tests/test_references.py
# fails when it is out of date).
docs: install
	$(PY) scripts/settings_reference.py

default-model: install
	SC=$(SC) bash scripts/default_model.sh

# The opt-in second stage for `live --verifier` (models/sc12.verifier.onnx): a
# speech-embedding model trained with the default model's mined false alarms.
# It carries the embedding's weights, so it is built here, never shipped.
verifier: install
	SC=$(SC) bash scripts/verifier.sh

# The first stage of the shipped pair `live --verifier sc12`
# (speechlstm/assets/sc12_mined.int8.onnx): the default recipe retrained with
# two rounds of its false alarms mined in the training speakers' negatives.
pair-first-stage: install
	SC=$(SC) bash scripts/pair_first_stage.sh

# The pretrained encoder new words start from (speechlstm/assets/encoder.safetensors),
# from the Speech Commands tree SC plus synthesized speech of a large vocabulary.
encoder: install
	SC=$(SC) bash scripts/encoder.sh

# The synthetic-only preset (no human recording), written to runs/synthetic/.
synthetic-model: install
	bash scripts/synthetic_model.sh

bench-synthetic: install
	SPEECHLSTM_SUBSET=$(SUBSET) $(PY) bench/synthetic_to_real.py

bench-inference: install
	$(PY) bench/inference.py

bench-streaming: install
	SPEECHLSTM_SUBSET=$(SUBSET) $(PY) bench/streaming.py

bench-cells: install
	SPEECHLSTM_SUBSET=$(SUBSET) $(PY) bench/cells.py

bench-long-lag: install
	$(PY) bench/long_lag.py

bench-accuracy: install
	SPEECHLSTM_SUBSET=$(SUBSET) $(PY) bench/accuracy_real.py

clean:
	rm -rf runs bench/out build dist *.egg-info
