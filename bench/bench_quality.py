"""Quality benchmark (issue 7, part 2): mosaicdb against its peers on real photos, with the same
library (data/lib2k, 2,000 photos), the same grid and the same output size, measured side by
side in one run.

Tools (every one renders cols × rows cells of PX px, output exactly cols·PX × rows·PX with
rows = round(cols · H / W), the rule mosaicdb and the seed recipe use):
  seed recipe   bench/seed_recipe.py: thumbnails every photo into memory on every run (its own
                prepare / render timers, one process), mean-RGB cKDTree, one arrayjoin
  metapixel     bench/metapixel_run.sh (Debian package): metapixel-prepare once, then
                metapixel --metapixel with its defaults (min distance 5)
  mosaicraft    bench/peers/mosaicraft_run.py (PyPI, own venv data/.venv-mosaicraft):
                `mosaicraft cache` once, then `mosaicraft generate` with its default preset
                (Hungarian 1:1 placement) where its 4×-augmented pool has a tile per cell, else
                --preset fast (its own advice); at the first grid also --preset fast, so both
                placements are seen on the same grid
  mosaicdb      `mosaicdb index` once, then `mosaicdb render --tiles-across N --tile-size PX`
                with default options (--repeat varied), with --repeat free, with --blend 0.3,
                and with --min-distance 5 --max-uses 0 (metapixel's rule)

Prepared libraries (metapixel tables, mosaicraft cache, mosaicdb store) are kept in
data/quality/ and reused; their build is timed when it happens, and the timing is kept in
data/quality/prepared.json and reported as cached on later runs (--fresh rebuilds them all).
Quality is mosaicdb.quality.score: mean CIEDE2000 and SSIM on L*, 400 and 1600 px wide, target
centre-cropped to the mosaic's aspect. Peak RSS is the whole process tree (_common.py).

Writes bench/results/quality.md and docs/compare.jpg (t1, first grid: target and every mosaic,
whole and a 1:1 crop). Mosaics stay in data/quality/out/.

    python bench/bench_quality.py [--tile-size 32] [--grids 100 200] [--targets t1 t2]
        [--skip seed metapixel mosaicraft mosaicdb] [--fresh]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, ROOT, VENV_BIN, ensure_lib2k, mb, run_measured  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = DATA / "quality"
MC_VENV = DATA / ".venv-mosaicraft"
MC_RUN = HERE / "peers" / "mosaicraft_run.py"
MP_RUN = HERE / "metapixel_run.sh"
TARGETS = {"t1": "t1_eveningglow.jpg", "t2": "t2_friends.jpg", "t3": "t3_kleiber.jpg"}
TOOLS = ("seed", "metapixel", "mosaicraft", "mosaicdb")
# mosaicraft holds the whole canvas in RAM, many times over (float64 assembly buffers, float32
# copies in every post-processing filter), plus, with Hungarian placement, cells × pool float32
# distances and a float64 cost matrix. Peaks measured on this machine at 32 px: 19.1 GB for
# 6400×9600 (--preset fast, ≈ 310 bytes per output pixel), 2.2 GB for 3200×1984 with Hungarian
# (6,200 × 8,000 pairs). The estimate below is what decides a skip (--mem-limit-gb).
MC_BYTES_PER_PX = 320
MC_HUNGARIAN_BYTES_PER_PAIR = 24


TOOL_NOTES = [
    "seed recipe: every photo centre-cropped to a square; nearest tile by mean sRGB; repeats "
    "allowed.",
    "metapixel: every photo squashed to a square at prepare time; `subpixel` metric (5×5 YIQ "
    "grid per tile); the same photo never within 5 cells (its default).",
    "mosaicraft: every photo squashed to a square; pool 4× augmented (mirrored, ±10 % "
    "brightness); 191-value features (5×5 Lab means, Lab histograms, gradient and LBP "
    "histograms) plus Oklab means; default preset `vivid`: Hungarian 1:1 placement (a pool "
    "entry used once), NCC/SSIM rerank; `--preset fast`: FAISS nearest + Floyd–Steinberg error "
    "diffusion on the features, no repeat within 4 cells. Both then move each tile's colours "
    "toward its cell (vivid: MKL transfer + histogram matching; fast: Reinhard), mix 5–15 % of "
    "the target's own pixels into the cell, and post-process the whole canvas (gamma, shadow "
    "lift, CLAHE, vibrance, saturation, contrast, sharpening).",
    "mosaicdb: every photo centre-cropped to the cell's aspect (never squashed); the 16 nearest "
    "photos by 3×3 Lab means (27 values), re-ordered on a 6×6 Lab grid with lightness weighted "
    "3× and chroma compressed as CIEDE2000 weighs it (`--rerank 6`, its default); by default "
    "`--repeat varied` (no photo beside itself, none in over 1 % of the cells, one min-cost "
    "flow over the grid, then passes that make neighbours err alike in lightness); "
    "`--repeat free`: each cell its best match; `--blend A` shifts each tile's colours toward "
    "its cell's mean; `--min-distance R --max-uses 0`: the same photo never within R cells, "
    "no cap.",
]


def _err(e: Exception) -> str:
    """One line from a failed command: the last non-empty line of its message."""
    lines = [ln.strip(" │╭╮╰╯─|") for ln in str(e).splitlines()]
    lines = [ln for ln in lines if any(c.isalnum() for c in ln)]
    return (lines[-1] if lines else type(e).__name__)[:200]


def _size(path: Path) -> tuple[int, int] | None:
    import pyvips

    if not path.exists():
        return None
    im = pyvips.Image.new_from_file(str(path))  # header only
    return im.width, im.height


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for ln in f:
            if ln.startswith("MemTotal:"):
                return int(ln.split()[1]) * 1024
    return 0


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for ln in f:
            if ln.startswith("MemAvailable:"):
                return int(ln.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------------------------------------
# Prepared libraries: built once, timed when built, reused
# ---------------------------------------------------------------------------------------------
class Prepared:
    """data/quality/prepared.json: how each prepared library was built (wall, RSS, when)."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.db: dict = {}
        if path.exists() and not fresh:
            try:
                self.db = json.loads(path.read_text())
            except ValueError:
                self.db = {}

    def get(self, name: str, key: str, artefact: Path) -> dict | None:
        rec = self.db.get(name)
        if rec and rec.get("key") == key and artefact.exists():
            return rec
        return None

    def put(self, name: str, rec: dict) -> dict:
        rec = {**rec, "built": dt.datetime.now().strftime("%Y-%m-%d %H:%M")}
        self.db[name] = rec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.db, indent=1))
        tmp.replace(self.path)
        return rec


def source_fingerprint() -> str:
    """Short hash of mosaicdb's source (package + migrations): the store is rebuilt when it
    changes, and a change during the run is reported (the tree may be edited meanwhile)."""
    import hashlib

    h = hashlib.sha1()
    for p in sorted([*ROOT.glob("mosaicdb/**/*.py"), *ROOT.glob("migrations/**/*.py")]):
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:10]


def _lib_key(lib: Path) -> str:
    files = [p for p in lib.rglob("*.jpg")]
    return f"{len(files)} files, {sum(p.stat().st_size for p in files)} bytes"


def prepare_metapixel(lib: Path, px: int, prep: Prepared, key: str) -> dict:
    """{"version", "dir", "wall", "rss", "note", "cached"} or {"skipped": reason}."""
    chk = subprocess.run(["bash", str(MP_RUN), "check"], capture_output=True, text=True)
    if chk.returncode != 0:
        return {"skipped": (chk.stderr.strip().splitlines() or [f"exit {chk.returncode}"])[-1]}
    version = chk.stdout.strip().splitlines()[0]
    d = WORK / f"metapixel-{px}"
    k = f"{key}; {version}; {px} px"
    rec = prep.get("metapixel", k, d / "tables.mxt")
    cached = rec is not None
    if not cached:
        shutil.rmtree(d, ignore_errors=True)
        try:
            cmd = ["bash", str(MP_RUN), "prepare", str(lib), str(d), str(px)]
            wall, rss, out = run_measured(cmd)
        except RuntimeError as e:
            return {"skipped": f"metapixel-prepare failed: {_err(e)}", "version": version}
        note = re.sub(r" into [^,]+", "", out.strip())
        rec = prep.put("metapixel", {"key": k, "wall": wall, "rss": rss, "note": note})
    return {**rec, "version": version, "dir": d, "cached": cached}


def prepare_mosaicraft(lib: Path, px: int, prep: Prepared, key: str) -> dict:
    setup = subprocess.run(
        [sys.executable, str(MC_RUN), "setup", str(MC_VENV)], capture_output=True, text=True
    )
    if setup.returncode != 0:
        return {"skipped": (setup.stderr.strip().splitlines() or ["setup failed"])[-1]}
    version = "mosaicraft " + setup.stdout.strip().splitlines()[-1]
    py = str(MC_VENV / "bin" / "python")
    faiss_v = subprocess.run(
        [py, "-c", "import faiss; print(faiss.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    d = WORK / f"mosaicraft-{px}"
    k = f"{key}; {version}; {px} px"
    rec = prep.get("mosaicraft", k, d / f"features_{px}.npz")
    cached = rec is not None
    if not cached:
        shutil.rmtree(d, ignore_errors=True)
        try:
            wall, rss, out = run_measured([py, str(MC_RUN), "prepare", str(lib), str(d), str(px)])
        except RuntimeError as e:
            return {"skipped": f"mosaicraft cache failed: {_err(e)}", "version": version}
        rec = prep.put(
            "mosaicraft", {"key": k, "wall": wall, "rss": rss, "note": out.strip().splitlines()[-1]}
        )
    return {**rec, "version": f"{version} (faiss-cpu {faiss_v})", "dir": d, "cached": cached}


def prepare_mosaicdb(lib: Path, prep: Prepared, key: str, source: str) -> dict:
    version = importlib.metadata.version("mosaicdb")
    exe = str(VENV_BIN / "mosaicdb")
    store = WORK / "mosaicdb-store"
    k = f"{key}; mosaicdb {version}, source {source}"
    rec = prep.get("mosaicdb", k, store / "catalog.sqlite")
    cached = rec is not None
    if not cached:
        shutil.rmtree(store, ignore_errors=True)
    cmd = [exe, "--home", str(store), "index", str(lib), "--json"]
    try:
        wall, rss, out = run_measured(cmd)
    except RuntimeError as e:
        return {"skipped": f"mosaicdb index failed: {_err(e)}", "version": version}
    ix = json.loads(out)
    if cached:  # the store is current: this was a no-op re-index (reads nothing)
        rec = {**rec, "noop_wall": wall, "noop_changed": ix.get("added", 0) + ix.get("updated", 0)}
    else:
        note = f"added {ix.get('added')}, failed {ix.get('failed')}"
        rec = prep.put("mosaicdb", {"key": k, "wall": wall, "rss": rss, "note": note})
    return {**rec, "version": version, "dir": store, "exe": exe, "cached": cached}


# ---------------------------------------------------------------------------------------------
# Renders: one per tool × target × grid
# ---------------------------------------------------------------------------------------------
def run_seed(lib: Path, target: Path, out: Path, n: int, px: int) -> dict:
    cmd = [sys.executable, str(HERE / "seed_recipe.py"), str(lib), str(target), str(out)]
    cmd += ["--tiles-across", str(n), "--tile-size", str(px)]
    wall, rss, stdout = run_measured(cmd)
    r = json.loads(stdout.strip().splitlines()[-1])
    return {
        "prep_wall": r["prepare_s"],
        "prep_rss": None,
        "prep_note": "every run; own timer",
        "render_wall": r["render_s"],
        "render_rss": rss,
        "note": f"process {wall:.1f} s; RSS covers prepare + render",
        "distinct": r["distinct_tiles"],
    }


def run_metapixel(mp: dict, target: Path, out: Path, n: int, px: int, width: int) -> dict:
    scale = n * px / width
    cmd = ["bash", str(MP_RUN), "render", str(mp["dir"]), str(target), str(out), str(px)]
    wall, rss, _ = run_measured(cmd + [repr(scale), str(n)])
    return {"render_wall": wall, "render_rss": rss, "note": f"-s {scale:.4g}"}


def run_mosaicraft(
    mc: dict, target: Path, out: Path, n: int, rows: int, px: int, preset: str
) -> dict:
    py = str(MC_VENV / "bin" / "python")
    cmd = [py, str(MC_RUN), "render", str(mc["dir"]), str(target), str(out), str(px)]
    wall, rss, stdout = run_measured(cmd + [str(n), str(rows), "--preset", preset])
    r = json.loads(stdout.strip().splitlines()[-1])
    st = r["stages"]
    slow = sorted(st.items(), key=lambda kv: -kv[1])[:2]
    note = f"{r['placement']}, pool {r['pool']:,}; " + ", ".join(
        f"{k.split(' (')[0].lower()} {v:.0f} s" for k, v in slow
    )
    if r["warnings"]:
        note += "; " + "; ".join(r["warnings"])
    return {
        "render_wall": wall,
        "render_rss": rss,
        "distinct": r["distinct_photos"],
        "max_reuse": r["max_reuse"],
        "note": note,
        "command": r["command"],
        "preset": r["preset"],
    }


def run_mosaicdb(md: dict, target: Path, out: Path, n: int, px: int, extra: list[str]) -> dict:
    cmd = [md["exe"], "--home", str(md["dir"]), "render", str(target), "-o", str(out)]
    cmd += ["--tiles-across", str(n), "--tile-size", str(px), "--json", *extra]
    wall, rss, stdout = run_measured(cmd)
    r = json.loads(stdout)
    slow = sorted((r.get("timings") or {}).items(), key=lambda kv: -kv[1])[:2]
    return {
        "render_wall": wall,
        "render_rss": rss,
        "distinct": r.get("distinct_tiles"),
        "max_reuse": r.get("max_reuse"),
        "note": ", ".join(f"{k} {v:.1f} s" for k, v in slow),
    }


def mosaicraft_estimate(n: int, rows: int, px: int, pool: int, hungarian: bool) -> int:
    """Estimated peak RSS of one mosaicraft render (see MC_BYTES_PER_PX)."""
    pixels = n * rows * px * px
    est = MC_BYTES_PER_PX * pixels
    if hungarian:  # the cost matrix is gone before assembly and post-processing
        est = max(est, MC_HUNGARIAN_BYTES_PER_PAIR * n * rows * pool + 60 * pixels)
    return est + 300 * 2**20


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _prep_cell(r: dict) -> str:
    if r.get("prep_wall") is None:
        return "—"
    s = f"{r['prep_wall']:.1f} s"
    if r.get("prep_cached"):
        s += "¹"
    return s


def _rss_cell(r: dict) -> str:
    a = mb(r["prep_rss"]) if r.get("prep_rss") else "—"
    b = mb(r["render_rss"]) if r.get("render_rss") else "—"
    return f"{a} / {b}"


def table(rows: list[dict]) -> list[str]:
    out = [
        "| target | grid → output px | tool | prepare | render | peak RSS prepare / render "
        "| ΔE00 @400 | SSIM @400 | ΔE00 @1600 | SSIM @1600 | photos used (max reuse) | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["target"], r["n"]), []).append(r)
    for grp in groups.values():
        best: dict[str, float] = {}
        for w in (400, 1600):
            sc = [r["scores"][w] for r in grp if r.get("scores")]
            if sc:
                best[f"de{w}"] = min(s["delta_e"] for s in sc)
                best[f"ss{w}"] = max(s["ssim"] for s in sc)
        for r in grp:
            cells = []
            for w in (400, 1600):
                s = r.get("scores", {}).get(w)
                if s is None:
                    cells += ["—", "—"]
                    continue
                de, ss = f"{s['delta_e']:.2f}", f"{s['ssim']:.3f}"
                if s["delta_e"] == best[f"de{w}"]:
                    de = f"**{de}**"
                if s["ssim"] == best[f"ss{w}"]:
                    ss = f"**{ss}**"
                cells += [de, ss]
            used = "—"
            if r.get("distinct") is not None:
                used = f"{r['distinct']:,}"
                if r.get("max_reuse") is not None:
                    used += f" ({r['max_reuse']})"
            note = r.get("note", "")
            if r.get("size") and r["size"] != r["want"]:
                note = f"SIZE MISMATCH {r['size'][0]}×{r['size'][1]}; " + note
            if r.get("skipped"):
                note = f"skipped: {r['skipped']}"
            render = f"{r['render_wall']:.1f} s" if r.get("render_wall") is not None else "—"
            grid = f"{r['n']}×{r['rows']} → {r['want'][0]}×{r['want'][1]}"
            out.append(
                f"| {r['target']} | {grid} | {r['tool']} "
                f"| {_prep_cell(r) if not r.get('skipped') else '—'} | {render} "
                f"| {_rss_cell(r) if not r.get('skipped') else '—'} | "
                + " | ".join(cells)
                + f" | {used} | {note} |"
            )
    return out


def headline(rows: list[dict]) -> list[str]:
    """Who wins each metric at each viewing width, where mosaicdb's default render ranks, the
    best peer against mosaicdb, and mosaicdb's render RSS and wall against mosaicraft's."""
    scored = [r for r in rows if r.get("scores")]
    groups: dict[tuple, list[dict]] = {}
    for r in scored:
        groups.setdefault((r["target"], r["n"]), []).append(r)
    lines = []
    metrics = (("delta_e", min, "ΔE00", "{:.2f}"), ("ssim", max, "SSIM", "{:.3f}"))
    for w, what in ((400, "across the room"), (1600, "up close")):
        parts = []
        for metric, pick, label, fmt in metrics:
            wins: dict[str, int] = {}
            detail = []
            for (t, n), grp in groups.items():

                def val(r: dict, w: int = w, metric: str = metric) -> float:
                    return r["scores"][w][metric]

                b = pick(grp, key=val)
                wins[b["tool"]] = wins.get(b["tool"], 0) + 1
                order = sorted(grp, key=val, reverse=pick is max)
                md = next((r for r in grp if r["tool"] == "mosaicdb"), None)
                peers = [r for r in grp if not r["tool"].startswith("mosaicdb")]
                txt = f"{t}/{n}"
                if md:
                    txt += f" mosaicdb {fmt.format(val(md))} (#{order.index(md) + 1}/{len(grp)})"
                if peers:
                    bp = pick(peers, key=val)
                    txt += f" vs best peer {bp['tool']} {fmt.format(val(bp))}"
                detail.append(txt)
            won = ", ".join(
                f"{k} {v}/{len(groups)}" for k, v in sorted(wins.items(), key=lambda kv: -kv[1])
            )
            parts.append(f"best {label}: {won} — " + "; ".join(detail))
        lines.append(f"- **{w} px wide ({what})**: " + ". ".join(parts) + ".")
    ratios, walls = [], []
    for grp in groups.values():
        md = next((r for r in grp if r["tool"] == "mosaicdb"), None)
        mcs = [r for r in grp if r["tool"].startswith("mosaicraft")]
        for mc in mcs:
            if md and md.get("render_rss") and mc.get("render_rss"):
                ratios.append(md["render_rss"] / mc["render_rss"])
                walls.append(md["render_wall"] / mc["render_wall"])
    if ratios:
        lines.append(
            f"- **mosaicdb / mosaicraft render** (same target and grid, {len(ratios)} mosaicraft "
            f"rows): peak RSS ×{min(ratios):.3f}–{max(ratios):.3f} (mosaicraft needs "
            f"{1 / max(ratios):.0f}–{1 / min(ratios):.0f}× the RAM), wall "
            f"×{min(walls):.3f}–{max(walls):.3f}."
        )
    return lines


def write_report(path: Path, rows: list[dict], ctx: dict) -> None:
    cached = [f"{k} ({v})" for k, v in ctx["cached"].items()]
    lines = [
        "# Mosaic quality: mosaicdb against its peers",
        "",
        f"Generated by `bench/bench_quality.py` on {ctx['date']} "
        f"(total run {ctx['total']:.0f} s). Numbers are measured in this run, side by side; "
        "do not edit by hand.",
        "",
        f"- Machine: {ctx['machine']}; shared with other work: load average (1, 5, 15 min) "
        + " at the start, ".join(", ".join(f"{v:.1f}" for v in la) for la in ctx["load"])
        + " at the end",
        f"- Versions: {ctx['versions']}",
        f"- Library: {ctx['lib']}; same library, grid and output size for every tool "
        f"({ctx['px']} px tiles; every output checked with pyvips to be exactly "
        "cols·px × rows·px, rows = round(cols·H/W); nothing was cropped or resized after the "
        "fact).",
        "- Quality: `mosaicdb.quality.score` — mean CIEDE2000 (lower is better) and SSIM on L* "
        "(higher is better), mosaic and centre-cropped target both reduced to 400 and 1600 px "
        "wide. Best per target × grid in **bold**.",
        "- prepare = building the tool's library (mosaicdb index, metapixel-prepare, "
        "`mosaicraft cache`; the seed recipe re-thumbnails every run, its own timer); render = "
        "the whole render command (the seed recipe: its own render timer). Peak RSS: the whole "
        "process tree, sampled every 50 ms.",
    ]
    if cached:
        lines.append(
            "- ¹ prepared library reused from data/quality/: the prepare column is the timing "
            "of its fresh build, measured when it was built — " + ", ".join(cached) + "."
        )
    warn = [s for s in ctx["skipped"] if s.startswith("WARNING")]
    lines += [f"**{w}**" for w in warn] + ([""] if warn else [])
    lines += ["", "## Headline", ""] + headline(rows) + ["", "## Results", ""] + table(rows)
    lines += ["", "## How the tools differ", ""] + [f"- {t}" for t in TOOL_NOTES]
    lines += ["", "## Commands", ""] + [f"- {c}" for c in ctx["commands"]]
    if ctx["skipped"]:
        lines += ["", "## Skipped or warned", ""] + [f"- {s}" for s in ctx["skipped"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# docs/compare.jpg
# ---------------------------------------------------------------------------------------------
def compare_image(
    target: Path, panels: list[tuple[str, Path, str]], out: Path, n: int, rows: int, px: int
) -> None:
    """Target and every mosaic of one grid side by side: whole (top row) and a 1:1 crop of the
    same region (bottom row), labelled. panels: (name, mosaic path, score text)."""
    import pyvips

    from mosaicdb import imaging

    gap, pad = 12, 8
    ncol = len(panels) + 1  # about 2,400 px wide in all: crops of k×k cells
    k = max(4, min(10, (2400 - (ncol + 1) * gap) // (ncol * px)))
    col = k * px
    w, h = n * px, rows * px
    t = pyvips.Image.new_from_file(str(target)).autorot()
    t = imaging.centre_crop(t, w / h)
    t = t.resize(w / t.width, vscale=h / t.height)
    if t.bands > 3:
        t = t.extract_band(0, n=3)
    # the k×k-cell window where the target changes most (cell-mean L* spread)
    cells = t.colourspace("lab").extract_band(0).resize(1 / px).numpy()
    best, at = -1.0, (0, 0)
    for y in range(1, max(2, cells.shape[0] - k - 1)):
        for x in range(1, max(2, cells.shape[1] - k - 1)):
            s = float(cells[y : y + k, x : x + k].std())
            if s > best:
                best, at = s, (x, y)
    cx, cy = at[0] * px, at[1] * px
    vw = col
    vh = round(vw * h / w)

    def label(text: str, width: int) -> pyvips.Image:
        txt = pyvips.Image.text(text, width=width, dpi=110, font="sans")
        bg = pyvips.Image.black(width, txt.height + 2 * pad) + 255
        return bg.insert(255 - txt, 0, pad).cast("uchar")

    items = [("target (centre crop)", t, "")] + [
        (name, pyvips.Image.new_from_file(str(p)), sc) for name, p, sc in panels
    ]
    heads = [label(f"<b>{name}</b>\n{sc or ' '}", col) for name, _, sc in items]
    top = max(hd.height for hd in heads)  # every label as tall as the tallest (wrapped) one
    columns = []
    for (name, im, _sc), head in zip(items, heads, strict=True):
        if im.bands > 3:
            im = im.extract_band(0, n=3)
        full = im.thumbnail_image(vw, height=vh, size="force")
        crop = im.crop(cx, cy, col, col)
        if name.startswith("target"):
            s, side = vw / w, max(4, round(col * vw / w))
            for d in (0, 1):  # a 2 px red frame
                full = full.draw_rect(
                    [255, 0, 0],
                    round(cx * s) - d,
                    round(cy * s) - d,
                    side + 2 * d,
                    side + 2 * d,
                    fill=False,
                )
        head = head.embed(0, 0, col, top, extend="white")
        head = head.bandjoin([head, head])
        column = head.join(full.cast("uchar"), "vertical", shim=gap, background=[255])
        column = column.join(crop.cast("uchar"), "vertical", shim=gap, background=[255])
        columns.append(column)
    sheet = columns[0]
    for c in columns[1:]:
        sheet = sheet.join(c, "horizontal", shim=gap, background=[255])
    title = label(
        f"<b>{target.name}</b>, {n}×{rows} tiles of {px} px ({w}×{h}); top: whole mosaic; "
        f"bottom: 1:1 crop of the {col}×{col} px region marked on the target "
        f"(at {cx},{cy}). ΔE00 / SSIM at 400 px wide.",
        sheet.width,
    )
    title = title.bandjoin([title, title])
    sheet = title.join(sheet, "vertical", shim=gap, background=[255])
    sheet = sheet.embed(gap, gap, sheet.width + 2 * gap, sheet.height + 2 * gap, extend="white")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.cast("uchar").write_to_file(str(out), Q=85, strip=True)


# ---------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tile-size", type=int, default=32)
    ap.add_argument("--grids", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--targets", nargs="+", default=["t1", "t2"], choices=sorted(TARGETS))
    ap.add_argument("--skip", nargs="*", default=[], choices=TOOLS)
    ap.add_argument("--blend", type=float, default=0.3, help="mosaicdb --blend row (0: none)")
    ap.add_argument(
        "--min-distance",
        type=int,
        default=5,
        help="mosaicdb --min-distance row (0: none); 5 is metapixel's default",
    )
    ap.add_argument("--fresh", action="store_true", help="rebuild every prepared library")
    ap.add_argument(
        "--mem-limit-gb",
        type=float,
        default=14.0,
        help="skip a mosaicraft render whose estimated peak RSS exceeds this "
        "(default 14: these 2-core, 23.5 GiB machines are shared)",
    )
    ap.add_argument("--report", type=Path, default=HERE / "results" / "quality.md")
    ap.add_argument("--compare", type=Path, default=ROOT / "docs" / "compare.jpg")
    a = ap.parse_args()

    import pyvips

    from mosaicdb.quality import score

    t_start = time.perf_counter()
    load0 = os.getloadavg()
    source0 = source_fingerprint()
    px = a.tile_size
    lib, tdir = ensure_lib2k()
    for p in lib.rglob("*.jpg"):  # warm the page cache so every tool reads from memory
        p.read_bytes()
    key = _lib_key(lib)
    WORK.mkdir(parents=True, exist_ok=True)
    outdir = WORK / "out"
    outdir.mkdir(exist_ok=True)
    prep = Prepared(WORK / "prepared.json", a.fresh)
    skipped: list[str] = []

    print(f"library {lib}: {key}; {px} px tiles", flush=True)
    cases = []  # (target key, target path, its width, cells across, rows)
    for tk in a.targets:
        target = tdir / TARGETS[tk]
        head = pyvips.Image.new_from_file(str(target))
        for n in a.grids:
            cases.append((tk, target, head.width, n, max(1, round(n * head.height / head.width))))
    results: list[dict] = []
    mem_limit = min(a.mem_limit_gb * 2**30, _mem_available() * 0.9)
    commands: dict[str, str] = {}
    mc_pool = 0

    def run(label: str, kind: str, pre: dict | None, case: tuple, opt: dict) -> None:
        tk, target, width, n, rows = case
        want = (n * px, rows * px)
        slug = re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-")
        out = outdir / f"{tk}-{n}-{px}-{slug}.jpg"
        out.unlink(missing_ok=True)
        r: dict = {
            "tool": label,
            "kind": kind,
            "target": tk,
            "n": n,
            "rows": rows,
            "want": want,
            "out": out,
        }
        results.append(r)
        if pre is not None:
            if pre.get("skipped"):
                r["skipped"] = pre["skipped"]
                return
            r.update(prep_wall=pre["wall"], prep_rss=pre["rss"], prep_cached=pre["cached"])
        print(f"{tk} {n}×{rows}: {label} …", end=" ", flush=True)
        try:
            if kind == "seed":
                r.update(run_seed(lib, target, out, n, px))
            elif kind == "metapixel":
                r.update(run_metapixel(pre, target, out, n, px, width))
            elif kind == "mosaicraft":
                est = mosaicraft_estimate(n, rows, px, mc_pool, opt["hungarian"])
                if est > mem_limit:
                    r["skipped"] = (
                        f"estimated peak RSS {est / 2**30:.1f} GB > limit "
                        f"{mem_limit / 2**30:.1f} GB (--mem-limit-gb; this machine's "
                        f"{_mem_total() / 2**30:.1f} GiB are shared): mosaicraft holds the "
                        f"whole {want[0]}×{want[1]} canvas in RAM many times over "
                        f"(≈{MC_BYTES_PER_PX} bytes per output pixel)"
                    )
                else:
                    r.update(run_mosaicraft(pre, target, out, n, rows, px, opt["preset"]))
                    commands.setdefault(label, r["command"].replace(f"{ROOT}/", ""))
            else:
                r.update(run_mosaicdb(pre, target, out, n, px, opt["args"]))
        except (RuntimeError, OSError, ValueError, KeyError) as e:
            r["skipped"] = f"failed: {_err(e)}"
        if r.get("skipped"):
            print(r["skipped"], flush=True)
            skipped.append(f"{label}, {tk}, {n} across: {r['skipped']}")
            return
        r["size"] = _size(out)
        r["scores"] = score(str(out), str(target))
        s4 = r["scores"][400]
        print(
            f"{r['render_wall']:.1f} s, {mb(r['render_rss'])}, ΔE {s4['delta_e']:.2f} "
            f"SSIM {s4['ssim']:.3f}, size {'ok' if r['size'] == want else r['size']}",
            flush=True,
        )

    def ready(name: str, d: dict) -> None:
        print(f"{name}: {d.get('skipped') or 'ready'}", flush=True)
        if d.get("skipped"):
            skipped.append(f"{name}: {d['skipped']}")

    # Tool by tool, mosaicdb first: its index and renders run back to back, so that they see
    # one version of a source tree that may be edited meanwhile; if its source changed while
    # they ran, they are measured again (at most 3 times in all).
    md_variants = [("mosaicdb", []), ("mosaicdb --repeat free", ["--repeat", "free"])]
    if a.blend:
        md_variants.append((f"mosaicdb --blend {a.blend:g}", ["--blend", f"{a.blend:g}"]))
    if a.min_distance:  # metapixel's default rule alone (no cap), for a like-for-like row
        md_variants.append(
            (
                f"mosaicdb --min-distance {a.min_distance} --max-uses 0",
                ["--min-distance", str(a.min_distance), "--max-uses", "0"],
            )
        )
    for attempt in range(3):
        n_results, n_skipped = len(results), len(skipped)
        md = (
            prepare_mosaicdb(lib, prep, key, source0)
            if "mosaicdb" not in a.skip
            else {"skipped": "--skip mosaicdb"}
        )
        ready("mosaicdb", md)
        for case in cases:
            for label, args in md_variants:
                run(label, "mosaicdb", md, case, {"args": args})
        source_md = source_fingerprint()
        if source_md == source0 or attempt == 2:
            break
        print(
            f"mosaicdb's source changed while its rows ran ({source0} → {source_md}): "
            "measuring them again",
            flush=True,
        )
        del results[n_results:], skipped[n_skipped:]
        source0 = source_md
    if "seed" not in a.skip:
        for case in cases:
            run("seed recipe", "seed", None, case, {})
    mp = (
        prepare_metapixel(lib, px, prep, key)
        if "metapixel" not in a.skip
        else {"skipped": "--skip metapixel"}
    )
    ready("metapixel", mp)
    for case in cases:
        run("metapixel", "metapixel", mp, case, {})
    mc = (
        prepare_mosaicraft(lib, px, prep, key)
        if "mosaicraft" not in a.skip
        else {"skipped": "--skip mosaicraft"}
    )
    ready("mosaicraft", mc)
    if not mc.get("skipped"):
        import numpy as np

        with np.load(mc["dir"] / f"features_{px}.npz") as z:
            mc_pool = len(z["features"])
    for i, case in enumerate(cases):
        hung = case[3] * case[4] <= mc_pool  # its default preset needs a pool entry per cell
        label = "mosaicraft" if hung or not mc_pool else "mosaicraft --preset fast"
        run(label, "mosaicraft", mc, case, {"preset": "auto", "hungarian": hung})
        if hung and i == 0:  # both placements on the same grid
            run(
                "mosaicraft --preset fast",
                "mosaicraft",
                mc,
                case,
                {"preset": "fast", "hungarian": False},
            )
    order = {"seed": 0, "metapixel": 1, "mosaicraft": 2, "mosaicdb": 3}
    pos = {(c[0], c[3]): i for i, c in enumerate(cases)}
    results.sort(key=lambda r: (pos[(r["target"], r["n"])], order[r["kind"]]))

    cached = {}
    for name, d in (("mosaicdb index", md), ("metapixel-prepare", mp), ("mosaicraft cache", mc)):
        if d.get("cached"):
            extra = ""
            if "noop_wall" in d:
                extra = f"; no-op re-index now {d['noop_wall']:.1f} s"
            cached[name] = f"built {d['built']}{extra}"
    vips = f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    versions = [
        f"mosaicdb {md.get('version', importlib.metadata.version('mosaicdb'))} (git {git}, "
        f"source fingerprint {source0})",
        f"pyvips {pyvips.__version__} / libvips {vips}",
        mp.get("version", "metapixel: not run"),
        mc.get("version", "mosaicraft: not run"),
    ]
    cpu = ""
    with open("/proc/cpuinfo") as f:
        m = re.search(r"model name\s*:\s*(.*)", f.read())
        cpu = m.group(1).strip() if m else platform.machine()
    ctx = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {_mem_total() / 2**30:.1f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}",
        "versions": ", ".join(versions),
        "lib": f"`data/lib2k` ({key})",
        "px": px,
        "cached": cached,
        "skipped": skipped,
        "commands": [
            f"{k}: `{v}` (bench/peers/mosaicraft_run.py render; PREP.png = target "
            "centre-cropped to the grid's aspect and resized to the output size)"
            for k, v in commands.items()
        ]
        + [
            "metapixel: `bash bench/metapixel_run.sh render METALIB TARGET OUT PX SCALE N` "
            "(metapixel -l METALIB -w PX -h PX -s SCALE --metapixel)",
            "mosaicdb: `mosaicdb --home STORE index data/lib2k --json` once, then "
            "`mosaicdb --home STORE render TARGET -o OUT --tiles-across N "
            f"--tile-size {px} --json` [--repeat free | --blend {a.blend:g} | "
            f"--min-distance {a.min_distance} --max-uses 0]",
            "mosaicraft: `mosaicraft cache -t TILES -c CACHE -s PX` once (TILES: flat folder of "
            "links to the library's JPEGs; bench/peers/mosaicraft_run.py prepare)",
            "metapixel: `metapixel-prepare -r data/lib2k METALIB --width PX --height PX` once "
            "(bench/metapixel_run.sh prepare)",
            f"seed recipe: `python bench/seed_recipe.py LIB TARGET OUT --tiles-across N "
            f"--tile-size {px}`",
        ],
    }
    first = [
        r for r in results if r["target"] == "t1" and r["n"] == a.grids[0] and not r.get("skipped")
    ]
    if first:
        panels = [
            (
                r["tool"],
                r["out"],
                f"ΔE {r['scores'][400]['delta_e']:.2f} / SSIM {r['scores'][400]['ssim']:.3f}",
            )
            for r in first
        ]
        compare_image(tdir / TARGETS["t1"], panels, a.compare, a.grids[0], first[0]["rows"], px)
        print(f"wrote {a.compare}")
    ctx["total"] = time.perf_counter() - t_start
    ctx["load"] = (load0, os.getloadavg())
    if source_md != source0:
        msg = (
            f"mosaicdb's source changed while its rows ran ({source0} → {source_md}): they "
            "may mix versions; run again"
        )
        print(f"WARNING: {msg}", file=sys.stderr)
        skipped.insert(0, f"WARNING: {msg}")
    write_report(a.report, results, ctx)
    print(f"wrote {a.report} ({ctx['total']:.0f} s)")
    print("\n".join(headline(results)))


if __name__ == "__main__":
    main()
