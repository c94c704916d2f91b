"""Fast checks of the notebook plumbing: ``scaleinv figures`` arguments, the NOTEBOOK_* switches,
and that every notebook ends with an assertion cell (a figure without a check is not allowed)."""
from __future__ import annotations

import argparse

import jupytext
import pytest

from scaleinv.cli import figures as figures_cli
from toyproblems.experiments import notebook_env


def _args(**kw):
    p = argparse.ArgumentParser()
    figures_cli.add_arguments(p)
    return p.parse_args([f"--{k}={v}" for k, v in kw.items()])


def test_only_rejects_unknown_notebook(tmp_path):
    from scaleinv.usage import UsageError
    with pytest.raises(UsageError, match="no notebook starts with"):
        figures_cli.run(_args(only="99", **{"fig-dir": str(tmp_path)}))


def test_notebook_quick_switch_is_validated(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTEBOOK_FIG_DIR", str(tmp_path / "f"))
    monkeypatch.setenv("NOTEBOOK_QUICK", "yes")
    with pytest.raises(ValueError, match="NOTEBOOK_QUICK must be 0 or 1"):
        notebook_env()
    monkeypatch.setenv("NOTEBOOK_QUICK", "1")
    quick, fig_dir, save = notebook_env()
    assert quick is True and fig_dir == tmp_path / "f" and fig_dir.is_dir()


@pytest.mark.parametrize("path", figures_cli.find_notebooks(), ids=lambda p: p.stem)
def test_notebook_ends_with_checks(path):
    nb = jupytext.read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    last = code[-1].source
    assert last.count("assert ") >= 3 and 'print("all checks passed")' in last, path.name
    assert any("save(fig" in c.source for c in code), f"{path.name} saves no figure"
