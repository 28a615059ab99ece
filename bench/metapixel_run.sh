#!/usr/bin/env bash
# metapixel (Debian package `metapixel` 1.0.2) as a peer for the render benchmark.
#
#   metapixel_run.sh check                                   install if missing; exit 0 or 3
#   metapixel_run.sh prepare LIBDIR METALIB PX               metapixel-prepare -r, PX×PX tiles
#   metapixel_run.sh render METALIB TARGET OUT PX SCALE [N]  metapixel --metapixel, -s SCALE
#
# Exit 3 (one line on stderr) when metapixel is missing and cannot be installed with apt-get.
#
# Output size (measured with metapixel 1.0.2): metapixel scales the input by SCALE, truncates
# to whole pixels, and rounds each side UP to a whole number of tiles:
#     out_w = ceil(floor(W * SCALE) / PX) * PX        (same for the height)
# e.g. 100×63 at -s 1.29, PX 8 → 129×81 → 136×88; at -s 1.285 → 128×80 → 128×80.
# So the target needs no resizing when SCALE = N*PX / W exactly and H*SCALE is a multiple of PX:
# t1_eveningglow.jpg (2560×1600), 200 tiles of 64 px across → SCALE 5 → 12800×8000 = 200×125
# tiles, the same grid as the seed recipe and mosaicdb (rows = round(N * H / W) = 125).
# With the optional 6th argument N (tiles across), the target is first resized with pyvips (to a
# temporary PNG; that time counts as part of the render) to
#     W' = floor(N*PX / SCALE),  H' = floor(rows*PX / SCALE),  rows = round(N * H / W)
# whenever W' × H' differs from W × H, so that the output is exactly N*PX × rows*PX
# (needs SCALE < PX). metapixel's tiles are squashed to PX×PX at prepare time, not cropped.
#
# Matching uses metapixel's defaults (subpixel metric, local search, minimum distance 5 between
# repeats of a tile, which needs at least ~121 tiles); extra options can be passed in the
# environment, e.g. METAPIXEL_OPTS="-d 0" for plain nearest-tile matching.
#
# metapixel-prepare exits 0 even when it skips files, and re-running it into the same METALIB
# appends duplicate entries, so `prepare` refuses a METALIB that already has tables.mxt and
# reports how many files were skipped.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-$HERE/../.venv/bin/python}"
[ -x "$PY" ] || PY=python3

ensure_metapixel() {
    if command -v metapixel >/dev/null 2>&1 && command -v metapixel-prepare >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "metapixel: not installed and no apt-get on this machine" >&2
        exit 3
    fi
    if ! apt-get install -y -qq metapixel >/dev/null 2>&1; then
        if ! { apt-get update -qq >/dev/null 2>&1 &&
               apt-get install -y -qq metapixel >/dev/null 2>&1; }; then
            echo "metapixel: not installed and 'apt-get install -y metapixel' failed" >&2
            exit 3
        fi
    fi
    command -v metapixel >/dev/null 2>&1 || {
        echo "metapixel: apt-get install succeeded but the metapixel binary is missing" >&2
        exit 3
    }
}

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

cmd="${1:-}"
[ -n "$cmd" ] || usage
shift

case "$cmd" in
check)
    ensure_metapixel
    metapixel --version
    ;;
prepare)
    [ $# -eq 3 ] || usage
    lib="$1" metalib="$2" px="$3"
    ensure_metapixel
    [ -d "$lib" ] || { echo "no such folder: $lib" >&2; exit 2; }
    if [ -e "$metalib/tables.mxt" ]; then
        echo "$metalib/tables.mxt exists: re-preparing would duplicate entries" >&2
        exit 2
    fi
    mkdir -p "$metalib"
    log="$(metapixel-prepare -r "$lib" "$metalib" --width "$px" --height "$px")"
    skipped="$(grep -c '^Error running metapixel' <<<"$log" || true)"
    [ -s "$metalib/tables.mxt" ] || { echo "metapixel-prepare wrote no tables.mxt" >&2; exit 1; }
    n="$(grep -c '(small-image ' "$metalib/tables.mxt" || true)"
    echo "prepared $n tiles (${px}x${px}) into $metalib, skipped $skipped files"
    ;;
render)
    [ $# -eq 5 ] || [ $# -eq 6 ] || usage
    metalib="$1" target="$2" out="$3" px="$4" scale="$5" across="${6:-}"
    ensure_metapixel
    [ -s "$metalib/tables.mxt" ] || { echo "no tables.mxt in $metalib" >&2; exit 2; }
    input="$target"
    tmpdir=""
    if [ -n "$across" ]; then
        # Resize the target only if its size would not give exactly across*px wide
        # (metapixel-imagesize + awk, so no Python start-up is timed when none is needed).
        read -r w h < <(metapixel-imagesize "$target")
        [ "${w:-0}" -gt 0 ] || { echo "cannot read the size of $target" >&2; exit 2; }
        resized="$(awk -v W="$w" -v H="$h" -v px="$px" -v s="$scale" -v n="$across" '
            function fl(v) { return v < 0 ? -int(-v) : int(v) }
            function out(v,  m) { m = fl(v * s); return (m % px ? fl(m / px) + 1 : m / px) * px }
            BEGIN {
                rows = sprintf("%.0f", n * H / W) + 0; if (rows < 1) rows = 1
                w2 = fl(n * px / s); h2 = fl(rows * px / s)
                if (s >= px || out(w2) != n * px || out(h2) != rows * px) {
                    printf "SCALE %s cannot give %dx%d with %d px tiles\n", s, n * px,
                        rows * px, px > "/dev/stderr"
                    exit 1
                }
                if (w2 != W || h2 != H) print w2, h2
            }')"
        if [ -n "$resized" ]; then
            tmpdir="$(mktemp -d)"
            trap 'rm -rf "$tmpdir"' EXIT
            read -r w2 h2 <<<"$resized"
            "$PY" - "$target" "$tmpdir/target.png" "$w2" "$h2" <<'EOF'
import sys
import pyvips
src, dst, w, h = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pyvips.Image.thumbnail(src, w, height=h, size="force").write_to_file(dst)
EOF
            input="$tmpdir/target.png"
        fi
    fi
    # shellcheck disable=SC2086  # METAPIXEL_OPTS is a list of options
    metapixel -l "$metalib" -w "$px" -h "$px" -s "$scale" ${METAPIXEL_OPTS:-} \
        --metapixel "$input" "$out" >/dev/null
    [ -s "$out" ] || { echo "metapixel wrote no $out" >&2; exit 1; }
    ;;
*)
    usage
    ;;
esac
