# `make test` and `make demo` set up everything on a fresh machine: .venv is created when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo venv bench ablation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs tests

demo: $(STAMP)
	$(BIN)/hieratok demo

# the CPU ablation of configs/ablations/cpu.yaml, run like a benchmark (not part of the tests)
ablation: $(STAMP)
	$(BIN)/hieratok ablate --config configs/ablations/cpu.yaml

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf demo_out .pytest_cache
