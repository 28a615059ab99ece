"""The layout as a contract beside .importlinter (which checks the layers): no module takes
another module's private names, and the heavy libraries stay in the modules that own them."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "mosaicdb"
# the only modules that may import each library (docs/ARCHITECTURE.md)
OWNERS = {"faiss": {"vecindex"}, "pyvips": {"imaging"}}


def _imports():
    for path in sorted(PKG.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                yield path.stem, node
            elif isinstance(node, ast.Import):
                yield path.stem, node


def test_no_module_imports_another_modules_private_names():
    bad = [
        f"{mod}: from {'.' * node.level}{node.module or ''} import {a.name}"
        for mod, node in _imports()
        if isinstance(node, ast.ImportFrom) and node.level
        for a in node.names
        if a.name.startswith("_") and not a.name.startswith("__")
    ]
    assert bad == []


def test_faiss_and_pyvips_are_imported_only_by_their_owners():
    bad = []
    for mod, node in _imports():
        names = (
            [a.name for a in node.names] if isinstance(node, ast.Import)
            else [node.module or ""] if not node.level else []
        )
        for name in names:
            top = name.split(".")[0]
            if top in OWNERS and mod not in OWNERS[top]:
                bad.append(f"{mod} imports {name}")
    assert bad == []
