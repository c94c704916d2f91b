"""One version: pyproject.toml's [project] version is what `scaleinv --version`, scaleinv.__version__,
CITATION.cff and CHANGELOG.md report; CITATION.cff cites the paper (Li et al., ICML 2022)."""
import re
from pathlib import Path

import pytest

import scaleinv
from scaleinv.cli import main as cli_main
from scaleinv.version import pyproject_version

ROOT = Path(__file__).resolve().parents[2]


def _toml_version():
    tomllib = pytest.importorskip("tomllib", reason="Python < 3.11: no tomllib to cross-check the regex reader")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_version_is_pyprojects(capsys):
    v = pyproject_version(ROOT / "pyproject.toml")
    assert v == _toml_version() and re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", v)
    assert scaleinv.__version__ == v
    assert cli_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"scaleinv {v}"


def test_pyproject_version_reader(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text('[build-system]\nversion = "9"\n[project]\nname = "scaleinv"\nversion = "1.2.3"\n[tool.x]\nversion = "8"\n')
    assert pyproject_version(p) == "1.2.3"
    p.write_text('[project]\nname = "other"\nversion = "1.2.3"\n')
    assert pyproject_version(p) is None
    assert pyproject_version(tmp_path / "missing.toml") is None


def test_citation_and_changelog_name_the_version():
    yaml = pytest.importorskip("yaml", reason="pyyaml not installed: CITATION.cff not parsed")
    v = scaleinv.__version__
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and str(cff["version"]) == v
    paper = cff["preferred-citation"]
    assert paper["title"] == "Robust Training of Neural Networks Using Scale Invariant Architectures"
    assert [a["family-names"] for a in paper["authors"]] == ["Li", "Bhojanapalli", "Zaheer", "Reddi", "Kumar"]
    assert paper["year"] == 2022 and "ICML 2022" in paper["collection-title"]
    assert any(i["value"] == "arXiv:2202.00980" for i in paper["identifiers"])
    assert cff["type"] == "software" and cff["license"] == "Apache-2.0"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(v)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M), \
        f"CHANGELOG.md has no section for version {v}"
