# make demo   sample library → index → render, in demo-out/ (SQLite store, no set-up needed)
# make test   ruff + pytest
# make bench  mosaicdb against its peers on real photos: bench/results/quality.md, docs/compare.jpg
# make bench-all  every benchmark (see bench/README.md), the quality comparison included
# make bench-scale  the 10,000,000-vector index benchmark (builds a 12 GB synthetic catalog once)
# make bench-faults  kill/restart soak of index, render and check --repair (FAULT_CYCLES=50)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MOSAIC := $(VENV)/bin/mosaicdb --home demo-out/store

.PHONY: install test lint demo bench bench-all bench-scale bench-faults clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check mosaicdb tests bench migrations examples
	$(VENV)/bin/ruff format --check --quiet mosaicdb tests bench migrations examples
	$(VENV)/bin/lint-imports --no-cache

test: lint
	$(VENV)/bin/pytest -q

$(VENV)/.demo: $(VENV)/.installed
	$(PY) -m pip install -q scikit-image   # demo photos only; not a mosaicdb dependency
	touch $@

demo: $(VENV)/.demo
	$(PY) examples/sample_library.py demo-out/photos -n 400 --target demo-out/target.jpg
	$(MOSAIC) index demo-out/photos
	$(MOSAIC) index demo-out/photos
	$(MOSAIC) render demo-out/target.jpg -o demo-out/mosaic.jpg --tiles-across 80 --tile-size 48
	$(MOSAIC) render demo-out/target.jpg -o demo-out/mosaic-free.jpg --tiles-across 80 --tile-size 48 --repeat free
	$(MOSAIC) renders
	@echo "mosaics: demo-out/mosaic.jpg demo-out/mosaic-free.jpg   store: demo-out/store"

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install -q scipy   # the seed recipe baseline's k-d tree; not a mosaicdb dependency
	touch $@

bench: $(VENV)/.bench
	$(PY) bench/bench_quality.py

bench-all: $(VENV)/.bench
	bash bench/run_all.sh

bench-scale: $(VENV)/.bench
	$(PY) bench/bench_vectors_scale.py

FAULT_CYCLES ?= 50
bench-faults: install
	$(PY) bench/bench_faults.py -n $(FAULT_CYCLES)

clean:
	rm -rf demo-out .pytest_cache .ruff_cache
