#!/usr/bin/env bash
# Every benchmark, in order; each prints ratios measured side by side in one run.
# Data (real photos from ../shared/bench, ~1 GB with the 20k library) goes to data/ and is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY bench/bench_index.py
$PY bench/bench_render.py
$PY bench/bench_placement.py
$PY bench/bench_gigapixel.py
$PY bench/bench_queries.py
$PY bench/bench_quality.py
$PY bench/bench_viewer.py   # needs Debian's chromium (apt-get install chromium)
$PY bench/bench_postgres.py   # needs Debian's postgresql (apt-get install postgresql)
