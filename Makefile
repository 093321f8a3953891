# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo demo-hsm test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

$(VENV)/.test-installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,demo]'
	touch $@

demo: $(VENV)/.demo-installed
	rm -rf demo-project  # the demo never deletes (a planted marker proves nothing): this target owns the name
	$(BIN)/mlspec demo demo-project

# The same demo, its pipeline key on a SoftHSM2 token (apt-get install softhsm2).
demo-hsm: $(VENV)/.test-installed
	MLSPEC=$(BIN)/mlspec bash examples/softhsm-demo.sh demo-project-hsm

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.test-installed
	$(BIN)/ruff check mlspec_attest tests benchmarks docs/verify_standalone.py
	$(BIN)/mypy

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo-project demo-project-hsm demo-project-hsm-token build *.egg-info
