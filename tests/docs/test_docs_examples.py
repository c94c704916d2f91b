"""The code examples of the documentation site run as written (docs/site/*.md), and the
explorer's settings are validated (toyproblems.explorer).

The site itself is built strictly by `.ci/run` (`mkdocs build --strict`, docs extra); here only
what a reader would copy: every ```python block of the pages listed below is executed in a fresh
namespace and its test functions are called.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["docs/site/api/testing.md", "docs/site/getting-started.md"]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks(page: str):
    text = (ROOT / page).read_text()
    return [b for b in BLOCK.findall(text) if "--8<--" not in b]


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page):
    found = blocks(page)
    assert found, f"{page}: no python example found"
    for code in found:
        ns: dict = {"__name__": "docs_example"}
        exec(compile(code, page, "exec"), ns)
        tests = [v for k, v in ns.items() if k.startswith("test_") and callable(v)]
        for t in tests:
            t()


def test_testing_example_catches_a_non_invariant_loss():
    """The page's assertion is not vacuous: a loss that is 2-homogeneous in w fails it."""
    import jax.numpy as jnp

    from scaleinv.testing import assert_scale_invariant_loss

    params = {"w": jnp.ones((4, 3)), "head": jnp.ones(3)}
    with pytest.raises(AssertionError):
        assert_scale_invariant_loss(lambda p: jnp.sum((p["w"] @ p["head"]) ** 2), params,
                                    mask={"w": True, "head": False})


@pytest.mark.parametrize("kw, field", [
    (dict(problem="mlp"), "problem"), (dict(optimizer="lion"), "optimizer"), (dict(eta=0.0), "eta"),
    (dict(optimizer="sgd_wd", weight_decay=0.0), "weight_decay"), (dict(optimizer="sgd_wd_clip", C=1.0), "C"),
    (dict(noise=0.0), "noise"), (dict(problem="normalized_mf", noise=1.0), "noise"), (dict(steps=5), "steps"),
])
def test_explorer_rejects_bad_settings(kw, field):
    from toyproblems.explorer import Settings, explore

    with pytest.raises(ValueError, match=field):
        explore(Settings(), **kw)
