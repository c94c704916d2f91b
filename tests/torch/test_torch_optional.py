"""torch stays optional: ``import scaleinv`` and the JAX modules work without it, and
``import scaleinv.torch`` then fails with a one-line hint naming the extra. Runs with or
without torch installed (torch is hidden by a ``sys.modules['torch'] = None`` entry)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HIDE = "import sys; sys.modules['torch'] = None\n"


def _run(code):
    return subprocess.run([sys.executable, "-c", HIDE + code], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_jax_side_imports_without_torch():
    out = _run("import scaleinv, scaleinv.optim, scaleinv.rotational, scaleinv.theory, scaleinv.testing\n"
               "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\nprint('ok')")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_sibert_export_side_imports_without_torch():
    out = _run("import sibert.export, sibert.model_card, sibert.hf\n"
               "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\nprint('ok')")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("module", ["scaleinv.torch.optim", "scaleinv.torch.sibert"])
def test_scaleinv_torch_without_torch_names_the_extra(module):
    out = _run(f"try:\n    import {module}\nexcept ImportError as e:\n    print(str(e))\n"
               "else:\n    print('imported')")
    assert out.returncode == 0, out.stderr[-2000:]
    msg = out.stdout.strip()
    assert len(msg.splitlines()) == 1, msg
    assert "scaleinv[torch]" in msg and "torch==2.13.0" in msg, msg
