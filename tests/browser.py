"""Headless Chromium for the viewer's browser test and bench/bench_viewer.py: Debian's
/usr/bin/chromium (packages chromium and chromium-driver), driven by Playwright, with flags
that keep it from reaching the network or using a GPU on a build machine."""

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
