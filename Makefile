# ResUNet-CMB: `make demo` runs the main job on a small default (every output under results/), `make test` runs the
# test suite, `make images` redraws the tracked example figure images/example_map_set.png.
# Each creates the virtual environment .venv on first use (Python >= 3.10 is the only prerequisite), installing the
# requirement files, which repeat the dependencies declared in pyproject.toml, then the project itself (editable).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Test processes for `make test` (pytest-xdist; each test file runs whole in one of them). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed
REQS := requirements.txt datapipe_requirements.txt tensorflowtraining_requirements.txt requirements-dev.txt pyproject.toml

.PHONY: venv test test-slow demo demo-images images lint spectra bench mpi clean

venv: $(STAMP)

$(STAMP): $(REQS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is required (set PYTHON=python3.x)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=77"
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# `make test`: every test but the few marked slow (about 7 minutes on a 2-core CPU). `make test-slow`: those, the
# long end-to-end runs of the full network (under TensorFlow and JAX, distributed, the GPU script's dry run; about
# 6 minutes). CI (.ci/run) runs both.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m slow

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The demo's example figure (map set 1, paper settings, seed 2021), simulated afresh in a temporary folder.
images: $(STAMP)
	$(BIN)/python scripts/make_example_figure.py

# The demo, then its figures shown in README.md copied into images/ (make demo alone writes only under results/).
demo-images: $(STAMP)
	$(BIN)/python scripts/demo.py --update-images

lint: $(STAMP)
	$(BIN)/ruff check .

# Recompute the cached CAMB spectra shipped in datapipe/data/ (about 45 s on a 2-core CPU).
spectra: $(STAMP)
	$(BIN)/python -m datapipe.spectra --regenerate

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_datapipe.py

# mpi4py for MPI-sharded simulation (datapipe/mpi.py); needs an MPI library first (see requirements-mpi.txt).
mpi: $(STAMP)
	$(BIN)/python -m pip install -q -r requirements-mpi.txt

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
