# Two entry points: `make pipeline` (dvc repro) and `make test`. Both set up .venv first.
VENV := .venv
BIN := $(VENV)/bin
# The stages run `python -m stages.<name>`: the venv's python must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: pipeline test

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

pipeline: $(VENV)/.installed
	$(BIN)/dvc repro

test: $(VENV)/.installed
	$(BIN)/python -m pytest
