"""The layering of docs/ARCHITECTURE.md, checked on the source: the library ``scaleinv/`` imports
no wing (only its console layer ``scaleinv/cli/`` names them), and no package imports another
package's private (``_x``) names. Reads the files with ``ast``; imports nothing."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WINGS = ("toyproblems", "proofs_check", "sibert", "benchmarks")
PACKAGES = ("scaleinv",) + WINGS
CALLERS = PACKAGES + ("notebooks", "examples")


def _imports(path: Path):
    """(module, imported names) of every import statement in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names]


def _files(*tops):
    for top in tops:
        yield from sorted((ROOT / top).rglob("*.py"))


def test_library_imports_no_wing():
    core = [p for p in _files("scaleinv") if "cli" not in p.relative_to(ROOT / "scaleinv").parts[:1]]
    assert len(core) > 10
    bad = [f"{p.relative_to(ROOT)}: {mod}" for p in core for mod, _ in _imports(p)
           if mod.split(".")[0] in WINGS]
    assert not bad, "the library must not import a wing (move the code to the wing or to scaleinv/cli):\n" + "\n".join(bad)


@pytest.mark.parametrize("top", CALLERS)
def test_no_private_name_crosses_a_package(top):
    bad = []
    for p in _files(top):
        for mod, names in _imports(p):
            other = mod.split(".")[0]
            if other not in PACKAGES or other == top:
                continue
            private = [n for n in names if n.startswith("_")]
            private += [part for part in mod.split(".")[1:] if part.startswith("_") and part != "__init__"]
            if private:
                bad.append(f"{p.relative_to(ROOT)}: from {mod} import {', '.join(private)}")
    assert not bad, "import public names only across packages:\n" + "\n".join(bad)


# the repository stands alone: nothing cites the project's background folder outside it
OUTSIDE = re.compile(r"(?<![\w/.])seeds/|\.\./shared|DESIGN\.md")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".json", ".cfg", ".txt", ".yml", ".yaml"}


def test_nothing_cites_a_file_outside_the_repository():
    me = Path(__file__).resolve()
    files = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for top in CALLERS + ("docs", "tests", "tools", "experiments"):
        files += [p for p in sorted((ROOT / top).rglob("*")) if p.suffix in TEXT_SUFFIXES and p.is_file()]
    assert len(files) > 50
    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()[:120]}"
           for p in files if p.resolve() != me
           for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
           if OUTSIDE.search(line)]
    assert not bad, ("cite in-repo sources (docs/PAPER_NOTES.md, docs/CONVENTIONS.md), not files outside the "
                     "repository:\n" + "\n".join(bad[:40]))
