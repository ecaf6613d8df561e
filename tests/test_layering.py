"""Import rules between the package's layers, read from the source (every import statement, also inside functions).

The daemon runs on edge devices: it must not pull in corpus generation (``edge_dac.data``) or training.
The model is the bottom layer: it must not know the engines, the daemon, training or the command lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edge_dac"

# layer (a folder of edge_dac) -> modules no file in it may import (nor any module below them)
FORBIDDEN = {
    "daemon": ("edge_dac.data", "edge_dac.training"),
    "model": ("edge_dac.engines", "edge_dac.daemon", "edge_dac.training", "edge_dac.cli", "edge_dac.caption_cli"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) for every import statement in the file: ``from a import b, c`` gives
    ``("a", ["a.b", "a.c"])`` (``b`` may be a submodule); relative imports are resolved against the
    file's package."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            found.append((node.lineno, base, [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]))
    return found


def violations(layer: str) -> list[str]:
    def forbidden(module: str) -> bool:
        return any(module == name or module.startswith(name + ".") for name in FORBIDDEN[layer])

    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        where = path.relative_to(PACKAGE.parent)
        for line, module, names in imported_modules(path):
            hits = [module] if forbidden(module) else [name for name in names if forbidden(name)]
            bad += [f"{where}:{line} imports {hit}" for hit in hits]
    return sorted(bad)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_what_they_may(layer):
    assert (PACKAGE / layer).is_dir()
    assert violations(layer) == []


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path, monkeypatch):
    fake = tmp_path / "edge_dac"
    (fake / "daemon").mkdir(parents=True)
    (fake / "daemon" / "__init__.py").write_text("")
    (fake / "daemon" / "bad.py").write_text(
        "import os\n"
        "from edge_dac import training\n"
        "def f():\n"
        "    from edge_dac.data.catalog import load_catalog\n"
        "    from ..data import mixer\n"
        "    from . import windows\n"
    )
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert violations("daemon") == [
        "edge_dac/daemon/bad.py:2 imports edge_dac.training",
        "edge_dac/daemon/bad.py:4 imports edge_dac.data.catalog",
        "edge_dac/daemon/bad.py:5 imports edge_dac.data",
    ]


def test_the_daemon_and_the_model_run_without_transformers():
    """transformers costs a process ~20 MB of memory; the daemon captions with the model's own
    tokenizer wrapper (``CaptionTokenizer``), so neither it nor a caption pulls transformers in
    (the evaluation's SBERT still uses it). A real process: load the shipped model, caption a
    second of noise, list what was imported."""
    import subprocess
    import sys

    code = (
        "import sys, torch; import edge_dac.daemon.run; from edge_dac.model import decode, load_captioner; "
        "from edge_dac.const import default_model_dir; m = load_captioner(default_model_dir()); "
        "print(decode(m, torch.randn(1, 16000) * 0.1)[0][0].caption); "
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'transformers'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    caption, modules = result.stdout.strip().splitlines()[-2:]
    assert caption and modules == "[]", modules
