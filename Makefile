# Two entry points: `make pipeline` (dvc repro) and `make test`. Both set up .venv first, with
# the exact versions of requirements.lock; `make lock` re-resolves them from requirements.txt.
VENV := .venv
BIN := $(VENV)/bin
# The stages run `python -m stages.<name>`: the venv's python must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: pipeline test test-fast lock

$(VENV)/.installed: requirements.lock
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	touch $@

pipeline: $(VENV)/.installed
	$(BIN)/dvc repro

# The full suite on two workers (pytest-xdist; a test file's tests share one). test-fast: the
# tests marked neither slow nor real_data (no dvc, no training run), to run while editing.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow and not real_data"

lock:
	rm -rf .venv-lock
	python3 -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet -r requirements.txt
	{ head -n 2 requirements.lock; .venv-lock/bin/python -m pip freeze; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .venv-lock
