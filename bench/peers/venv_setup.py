"""A peer tool's own venv, made once: what `setup` of each runner in this folder does (stdlib
only, so a runner can import it under either interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def ensure(venv: Path, name: str, pin: str, version: str, probe_code: str) -> None:
    """Create `venv` and `pip install pin` unless `probe_code` run there already prints
    `version`; print the version; exit 3 with one line on stderr if it cannot be installed."""
    exe = venv / "bin" / "python"
    probe = [str(exe), "-c", probe_code]
    ok = exe.exists()
    if ok:
        p = subprocess.run(probe, capture_output=True, text=True)
        ok = p.returncode == 0 and p.stdout.strip() == version
    if not ok:
        try:
            if not exe.exists():
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", pin],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except (OSError, subprocess.CalledProcessError) as e:
            err = getattr(e, "stderr", b"") or b""
            last = [  # pip's own last words, not its warnings about where it installs
                ln
                for ln in err.decode(errors="replace").splitlines()
                if ln.strip() and not ln.startswith("WARNING: Location")
            ]
            print(f"{name}: cannot install {pin}: {last[-1] if last else e}", file=sys.stderr)
            sys.exit(3)
    print(subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip())
