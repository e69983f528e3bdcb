# speechlstm: the commands the README shows. Every target sets up first (cheap
# when already done), so each works on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
SUBSET ?= ../shared/data/speech_commands_subset

.PHONY: demo install test lint default-model bench-accuracy bench-synthetic bench-inference bench-streaming bench-cells bench-long-lag clean

# The README's first command: set up, then synthesize -> train -> export -> transcribe.
demo: install
	bash scripts/demo.sh

install:
	bash scripts/setup.sh

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

default-model: install
	bash scripts/default_model.sh

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
