"""The CLI as a contract: exit codes, exact messages, --json keys, a real subprocess, and a
kill -9 in the middle of `index`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import COLOURS, noise_jpeg, solid, sqlite_db

SUMMARY_KEYS = {"scanned", "added", "updated", "removed", "unchanged", "failed", "seconds"}


def test_index_json_is_only_json(cli, lib_dir, backend):
    solid(lib_dir / "a.png", COLOURS["red"])
    (lib_dir / "bad.jpg").write_bytes(b"")
    r = cli("index", lib_dir, "--workers", "0", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert SUMMARY_KEYS <= d.keys()
    assert (d["scanned"], d["added"], d["failed"]) == (2, 2, 1)
    r = cli("errors", "--json")
    assert json.loads(r.stdout) == [
        {"path": str(lib_dir / "bad.jpg"), "error": "empty file (0 bytes)"}
    ]
    r = cli("roots", "--json")
    assert json.loads(r.stdout) == [str(lib_dir)]


def test_human_summary(cli, lib_dir):
    solid(lib_dir / "a.png", COLOURS["red"])
    r = cli("index", lib_dir, "-j", "0")
    assert r.exit_code == 0
    assert r.stdout.startswith(
        "1 file scanned: 1 added, 0 updated, 0 removed, 0 unchanged, 0 failed"
    )


def test_errors_are_one_line_exit_1(cli, tmp_path):
    r = cli("index", tmp_path / "nope")
    assert r.exit_code == 1
    assert r.output == f"Error: {tmp_path / 'nope'} does not exist\n"
    r = cli("index")
    assert (r.exit_code, r.output) == (
        1,
        "Error: no folders are registered yet: run `mosaicdb index PATH`\n",
    )
    (tmp_path / "good").mkdir()
    r = cli("index", tmp_path / "good", tmp_path / "nope")
    assert r.exit_code == 1
    assert cli("roots", "--json").stdout.strip() == "[]"  # nothing registered on a bad call
    r = cli("roots")
    assert (r.exit_code, r.stdout) == (0, "")
    assert r.stderr == "no folders are registered yet: run `mosaicdb index PATH`\n"
    (tmp_path / "f").write_text("x")
    r = cli("--home", tmp_path / "f", "roots")
    assert r.exit_code == 1
    assert r.output == f"Error: store path {tmp_path / 'f'} exists and is not a folder\n"


def test_bad_option_values_name_the_option(cli, lib_dir):
    r = cli("index", lib_dir, "--workers", "-1")
    assert (r.exit_code, r.output) == (1, "Error: --workers: must be 0 or more, got -1\n")
    r = cli("index", lib_dir, "--thumb-size", "3")
    assert (r.exit_code, r.output) == (
        1,
        "Error: --thumb-size: must be between 16 and 4096, got 3\n",
    )
    r = cli("index", lib_dir, "--workers", "many")
    assert r.exit_code == 2 and "--workers" in r.output


def test_query_commands_leave_garbage_collection_on(cli, lib_dir):
    """They run without the cyclic collector (it cost them 0.1-0.25 s at 1M photos), but an
    in-process caller gets it back, after success and after failure alike."""
    import gc

    solid(lib_dir / "a.png", COLOURS["red"])
    assert cli("index", lib_dir, "--workers", "1").exit_code == 0
    for args, code in (
        (["stats", "--json"], 0),
        (["ls", "--json"], 0),
        (["check", "--no-files"], 0),
        (["ls", "--near", "not-a-colour"], 1),
    ):
        assert cli(*args).exit_code == code, args
        assert gc.isenabled(), args


def test_check_in_process_leaves_the_environment_alone(tmp_path, lib_dir):
    """check sets OPENBLAS_NUM_THREADS=1 only in a process that ends with it: a caller's
    later numpy, and its child processes, would otherwise get one BLAS thread."""
    solid(lib_dir / "a.png", COLOURS["red"])
    code = (
        "import os, sys\n"
        "from typer.testing import CliRunner\n"
        "from mosaicdb.cli import app\n"
        "r = CliRunner().invoke(app, ['--home', sys.argv[1], 'check', '--no-files'])\n"
        "print(r.exit_code, 'numpy' in sys.modules, os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    assert _run(["index", lib_dir, "-j", "0", "-q"], tmp_path / "s").returncode == 0
    p = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")], env=env, capture_output=True, text=True
    )
    assert p.stdout == "0 True None\n", p.stderr


def test_ctrl_c_while_the_modules_load_ends_like_a_commands(monkeypatch, capsys):
    """Ctrl-C before the CLI has loaded ended with a traceback and exit -2."""
    from mosaicdb import __main__ as entry
    from mosaicdb.store import pagecheck

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(pagecheck, "start_from_argv", interrupted)
    with pytest.raises(SystemExit) as e:
        entry.main()
    assert (e.value.code, capsys.readouterr().err) == (130, "Error: interrupted\n")


def _run(args, home, **kw):
    env = {**os.environ, "MOSAICDB_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "mosaicdb", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        **kw,
    )


def test_help_is_light():
    code = (
        "import sys\n"
        "from mosaicdb.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pyvips', 'faiss', 'numpy', 'alembic') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY []" in out


def test_real_subprocess_and_python_m(tmp_path, lib_dir):
    solid(lib_dir / "a.png", COLOURS["red"])
    p = _run(["index", lib_dir, "--json", "--workers", "1"], tmp_path / "s")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["added"] == 1
    p = _run(["index", lib_dir / "missing"], tmp_path / "s")
    assert p.returncode == 1 and p.stderr.strip().startswith("Error: ")
    assert "Traceback" not in p.stderr


def test_console_exit_keeps_codes_and_output(tmp_path):
    # main() ends the process with os._exit once the output is flushed: codes and text intact
    p = _run(["renders", "--json"], tmp_path / "s")  # a mistyped --home makes no store
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == f"Error: no store in {tmp_path / 's'}: `mosaicdb index PATH` makes one\n"
    assert not (tmp_path / "s" / "catalog.sqlite").exists()
    (tmp_path / "empty").mkdir()
    assert _run(["index", tmp_path / "empty", "-q"], tmp_path / "s").returncode == 0
    p = _run(["renders", "--json"], tmp_path / "s")
    assert p.returncode == 0 and json.loads(p.stdout) == []
    p = _run(["check"], tmp_path / "s")  # a new, empty store is consistent
    assert p.returncode == 0 and p.stderr == "store is consistent\n", p.stdout + p.stderr
    p = _run(["no-such-command"], tmp_path / "s")
    assert p.returncode == 2 and "No such command" in p.stderr
    p = _run(["render", "missing.jpg", "-o", tmp_path / "o.jpg"], tmp_path / "s")
    assert p.returncode == 1 and p.stderr.startswith("Error: ") and p.stdout == ""


def test_text_output_piped(tmp_path):
    """Piped text is not cut at 80 columns, a folder name is shown as it is (not read as rich
    markup or emoji codes), and a reader that has gone (`mosaicdb stats | head -1`) ends the
    command quietly with exit 0."""
    lib = tmp_path / "[2019] :smile: a folder whose name makes the store line longer than 80"
    solid(lib / "a.png", COLOURS["red"])
    home = tmp_path / "s"
    assert _run(["index", lib, "-q", "-j", "0"], home).returncode == 0
    p = _run(["stats"], home)
    assert p.returncode == 0, p.stderr
    assert f"  root {lib}: 1 photos\n" in p.stdout
    assert f"\nstore {home}: catalog " in p.stdout and "features lab3v1\n" in p.stdout
    for command in ["stats", "ls", "roots"]:
        q = subprocess.Popen(
            [sys.executable, "-m", "mosaicdb", command],
            env={**os.environ, "MOSAICDB_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        q.stdout.close()  # gone before the command writes a line
        assert q.wait() == 0 and q.stderr.read() == b"", command


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path, lib_dir):
    n_good = 60
    for i in range(n_good):
        noise_jpeg(lib_dir / f"d{i // 20}" / f"p{i:03d}.jpg", size=(1600, 1200), seed=i)
    (lib_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    home = tmp_path / "s"
    env = {**os.environ, "MOSAICDB_HOME": str(home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mosaicdb",
            "index",
            str(lib_dir),
            "--workers",
            "1",
            "--batch-size",
            "4",
            "--quiet",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    db_path = home / "catalog.sqlite"
    deadline = time.monotonic() + 60
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            with sqlite_db(db_path, timeout=1) as c:
                committed = c.execute("SELECT count(*) FROM photos").fetchone()[0]
        except sqlite3.Error:
            continue
        if committed >= 8:
            break
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the worker dies too
    proc.wait()
    assert 8 <= committed < n_good + 1, "the kill should land in the middle of the run"

    p = _run(["index", "--json", "--workers", "2"], home)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["added"] + s["unchanged"] == n_good + 1
    with sqlite_db(db_path) as c:
        assert c.execute("SELECT count(*), count(DISTINCT path) FROM photos").fetchone() == (
            n_good + 1,
            n_good + 1,
        )
        assert c.execute("SELECT count(*) FROM photos WHERE status='ok'").fetchone()[0] == n_good
        q = "SELECT count(*) FROM features WHERE spec = ?"
        assert c.execute(q, ("lab3v1",)).fetchone()[0] == n_good
        # the re-ranking vectors are written in the same transaction as the photo
        assert c.execute(q, ("lab6v1",)).fetchone()[0] == n_good
        assert c.execute("SELECT count(*) FROM thumbnails").fetchone()[0] == n_good
    import mosaicdb
    from mosaicdb.store import vecindex as V

    with mosaicdb.open(home) as lib:
        ids = V.ids_of(V.read(lib.vector_path()))
        assert len(ids) == n_good and len(set(ids.tolist())) == n_good


def test_decoder_crash_costs_one_file(tmp_path, lib_dir):
    # the crash comes first and many batches are still queued behind it
    for i in range(80):
        solid(lib_dir / "more" / f"ok{i:02d}.png", COLOURS["red"], size=(64, 48))
    solid(lib_dir / "boom.png", COLOURS["green"])
    env = {**os.environ, "MOSAICDB_HOME": str(tmp_path / "s"), "MOSAICDB_TEST_CRASH_ON": "boom.png"}
    p = subprocess.run(
        [sys.executable, "-m", "mosaicdb", "index", str(lib_dir), "--workers", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert (s["added"], s["failed"], s["vectors"]) == (81, 1, 80)
    p = _run(["errors", "--json"], tmp_path / "s")
    assert json.loads(p.stdout) == [
        {"path": str(lib_dir / "boom.png"), "error": "the image decoder crashed on this file"}
    ]


def test_database_failure_is_one_line(cli, lib_dir, home):
    solid(lib_dir / "a.png", COLOURS["red"])
    assert cli("index", lib_dir, "-j", "0", "-q").exit_code == 0
    (home / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (home / f"catalog.sqlite{suffix}").unlink(missing_ok=True)
    r = cli("roots")
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and r.output.count("\n") == 1
    assert "Traceback" not in r.output


def test_unwritable_output_folder_is_one_line(cli, lib_dir, tmp_path):
    solid(lib_dir / "a.png", COLOURS["red"])
    cli("index", lib_dir, "-j", "0", "-q")
    r = cli("render", lib_dir / "a.png", "-o", tmp_path / "nowhere" / "x.jpg")
    assert (r.exit_code, r.output) == (
        1,
        f"Error: --output: folder {tmp_path / 'nowhere'} does not exist\n",
    )


def test_thumb_size_on_an_existing_store_says_what_it_does(cli, lib_dir, home):
    from sqlalchemy import select

    import mosaicdb
    from mosaicdb.store import schema

    solid(lib_dir / "a.png", COLOURS["red"], size=(640, 480))
    assert cli("index", lib_dir, "--workers", "0").exit_code == 0
    solid(lib_dir / "b.png", COLOURS["blue"], size=(640, 480))
    r = cli("index", lib_dir, "--workers", "0", "--thumb-size", "128")
    assert r.exit_code == 0
    assert (
        "warning: --thumb-size 128: the photo already indexed keeps its 256 px thumbnail; "
        "photos read from now on get 128 px" in r.output
    )
    solid(lib_dir / "c.png", COLOURS["green"], size=(640, 480))
    r = cli("index", "--workers", "0")  # remembered: no warning, 128 px
    assert r.exit_code == 0 and "warning" not in r.output
    with mosaicdb.open(home) as lib, lib.catalog.engine.connect() as c:
        p, t = schema.photos.c, schema.thumbnails.c
        q = select(p.path, t.height).join_from(schema.photos, schema.thumbnails)
        heights = {os.path.basename(os.fsdecode(a)): h for a, h in c.execute(q)}
    assert heights == {"a.png": 256, "b.png": 128, "c.png": 128}


def test_control_characters_in_names_are_escaped_in_text_not_in_json(cli, lib_dir):
    solid(lib_dir / "two\nlines.png", COLOURS["red"])
    (lib_dir / "red\x1b[31malert.jpg").write_bytes(b"not a jpeg")
    assert cli("index", lib_dir, "--workers", "0").exit_code == 0
    r = cli("ls")
    assert "two\\nlines.png" in r.output and "\x1b" not in r.output
    assert len(r.output.strip().splitlines()) == 2  # one line a photo
    r = cli("errors")
    assert "red\\x1b[31malert.jpg: " in r.output and "\x1b" not in r.output
    paths = {os.path.basename(x["path"]) for x in json.loads(cli("ls", "--json").output)}
    assert paths == {"two\nlines.png", "red\x1b[31malert.jpg"}  # exact
