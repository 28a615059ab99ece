"""The layout as a contract beside .importlinter (which checks the layers): no module takes
another module's private names, the heavy libraries stay in the modules that own them, and no
module grows past the size one reader can hold (issue 21)."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "mosaicdb"
# the only modules (or packages, by prefix) that may import each library (docs/ARCHITECTURE.md)
OWNERS = {
    "faiss": ("mosaicdb.store.vecindex",),
    "pyvips": ("mosaicdb.imaging", "mosaicdb.index.decode", "mosaicdb.output"),
}
MAX_LINES = 500
# still being split (issue 21): each leaves this list when it is
TOO_LONG_FOR_NOW: set[str] = set()


def _name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return sorted(PKG.rglob("*.py"))


def _imports():
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom | ast.Import):
                yield _name(path), node


def _owned(mod: str, owners: tuple[str, ...]) -> bool:
    return any(mod == o or mod.startswith(o + ".") for o in owners)


def test_no_module_imports_another_modules_private_names():
    bad = [
        f"{mod}: from {node.module} import {a.name}"
        for mod, node in _imports()
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("mosaicdb")
        and node.module != mod
        for a in node.names
        if a.name.startswith("_") and not a.name.startswith("__")
    ]
    assert bad == []


def test_imports_are_absolute():
    bad = [
        f"{mod}: from {'.' * node.level}{node.module or ''}"
        for mod, node in _imports()
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert bad == []


def test_faiss_and_pyvips_are_imported_only_by_their_owners():
    bad = []
    for mod, node in _imports():
        is_import = isinstance(node, ast.Import)
        names = [a.name for a in node.names] if is_import else [node.module or ""]
        for name in names:
            top = name.split(".")[0]
            if top in OWNERS and not _owned(mod, OWNERS[top]):
                bad.append(f"{mod} imports {name}")
    assert bad == []


def test_no_module_is_over_500_lines():
    long = {_name(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= TOO_LONG_FOR_NOW


def test_every_package_is_shipped():
    """pyproject lists the packages by hand (migrations/ ships inside the package): a new
    package left out would be missing from an installed mosaicdb."""
    import tomllib

    listed = set(
        tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {_name(p) for p in PKG.rglob("__init__.py")}
    assert on_disk <= listed
