"""The second test stage's list (tests/conftest.py SLOW, issue 28) names only tests that exist: a
renamed test would otherwise silently move back into the first stage (not lost: CI runs both)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _slow():
    tree = ast.parse((ROOT / "tests" / "conftest.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "SLOW":
            return ast.literal_eval(node.value)
    raise AssertionError("no SLOW tuple in tests/conftest.py")


def test_every_slow_prefix_names_an_existing_file_and_test():
    slow = _slow()
    assert slow and len(set(slow)) == len(slow)
    for prefix in slow:
        path, _, name = prefix.partition("::")
        p = ROOT / path
        assert p.exists(), prefix
        if name:
            assert p.is_file() and f"def {name}" in p.read_text(), prefix
