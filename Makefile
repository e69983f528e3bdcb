# speechlstm: the commands the README shows. Every target sets up first (cheap
# when already done), so each works on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
SUBSET ?= ../shared/data/speech_commands_subset

.PHONY: install test lint bench-accuracy clean

install:
	bash scripts/setup.sh

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench-accuracy: install
	SPEECHLSTM_SUBSET=$(SUBSET) $(PY) bench/accuracy_real.py

clean:
	rm -rf runs bench/out build dist *.egg-info
