# make demo   sample library → index → render, in demo-out/ (SQLite store, no set-up needed)
# make test   ruff + pytest
# make bench  benchmarks on real photos (see bench/README.md)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MOSAIC := $(VENV)/bin/mosaicdb --home demo-out/store

.PHONY: install test lint demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check mosaicdb tests bench migrations examples

test: lint
	$(VENV)/bin/pytest -q

$(VENV)/.demo: $(VENV)/.installed
	$(PY) -m pip install -q scikit-image   # demo photos only; not a mosaicdb dependency
	touch $@

demo: $(VENV)/.demo
	$(PY) examples/sample_library.py demo-out/photos -n 400 --target demo-out/target.jpg
	$(MOSAIC) index demo-out/photos
	$(MOSAIC) index demo-out/photos
	@echo "store: demo-out/store"

bench: install
	bash bench/run_all.sh

clean:
	rm -rf demo-out .pytest_cache .ruff_cache
