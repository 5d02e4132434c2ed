# `make test` and `make demo` set up everything on a fresh machine: .venv is created when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo venv bench gpu-check ablation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs --durations=25 tests

demo: $(STAMP)
	$(BIN)/hieratok demo

# the CPU ablation of configs/ablations/cpu.yaml, run like a benchmark (not part of the tests)
ablation: $(STAMP)
	$(BIN)/hieratok ablate --config configs/ablations/cpu.yaml

# bench/gpu_check*.py are not quick benchmarks: they have their own target below
bench: $(STAMP)
	for b in bench/*.py; do case $$b in bench/gpu_check*) continue;; esac; \
	  echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

# every CUDA path and the figures only a GPU gives, as one JSON line (at most 8 minutes on one H200);
# `.venv/bin/python bench/gpu_check.py --cpu` is the same check at tiny sizes (tests/test_gpu_check.py)
# On a GPU image that already holds the packages (no registry to install from): make gpu-check GPU_PYTHON=python3
GPU_PYTHON ?=
GPU_CHECK_ARGS ?=
gpu-check: $(if $(GPU_PYTHON),,$(STAMP))
	$(or $(GPU_PYTHON),$(BIN)/python) bench/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf demo_out .pytest_cache
