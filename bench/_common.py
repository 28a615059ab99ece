"""Helpers shared by the benchmark scripts: the real-photo data set, and running a command
while sampling the peak RSS of its whole process tree (or, for one process, asking the kernel)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SHARED = ROOT.parent / "shared" / "bench"
VENV_BIN = Path(sys.executable).parent


def ensure_lib2k() -> tuple[Path, Path]:
    """The 2,000-tile real-photo library and the targets (built once, reused)."""
    lib, targets = DATA / "lib2k", DATA / "targets"
    if not (lib.exists() and (targets / "t1_eveningglow.jpg").exists()):
        if not SHARED.exists():
            sys.exit(f"need {SHARED} (get_photos.sh, make_dataset.py) to build the data set")
        subprocess.run(
            [
                "bash",
                str(SHARED / "get_photos.sh"),
                str(DATA / "photos"),
                str(DATA / ".venv-bench"),
            ],
            check=True,
        )
        subprocess.run(
            [
                sys.executable,
                str(SHARED / "make_dataset.py"),
                str(DATA / "photos"),
                str(lib),
                "-n",
                "2000",
                "--targets",
                str(targets),
            ],
            check=True,
        )
    return lib, targets


def _tree_rss(pid: int) -> int:
    """Sum of RSS (bytes) of pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            ppid = int(parts[1])
            rss[int(d)] = int(parts[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(ppid, []).append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def run_measured(
    cmd: list[str], env: dict | None = None, cwd=None, tree: bool = True
) -> tuple[float, int, str]:
    """Run cmd; return (wall seconds, peak RSS of the process tree in bytes, stdout).

    `tree=False` is for a command that is one process: its peak RSS then comes from the
    kernel as it ends (wait4), and no sampling thread takes CPU from it. On 2 cores the
    sampler (reading every /proc/*/stat 20 times a second) added ~0.15 s to the 2 s of a
    command that keeps both cores busy (`check` at 1M photos, measured)."""
    if not tree:
        return _run_single(cmd, env, cwd)
    t0 = time.perf_counter()
    p = subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(p.pid))
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:3]}… failed ({p.returncode}): {err[-2000:]}")
    return wall, peak, out


def machine() -> str:
    import pyvips

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
    )


def mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def _run_single(cmd: list[str], env: dict | None, cwd) -> tuple[float, int, str]:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=out, stderr=err, text=True
        )
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[:3]}… failed ({p.returncode}): {err.read()[-2000:]}")
        return wall, usage.ru_maxrss * 1024, out.read()
