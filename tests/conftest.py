"""Shared test configuration: a hypothesis profile for JAX (compile time breaks the default
200 ms deadline; few examples so the suite fits 2 CPU cores)."""
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings

from scaleinv.compile_cache import enable
from scaleinv.threefry import unroll_on_cpu

enable()   # persistent JAX compilation cache, inherited by CLI subprocesses (SCALEINV_COMPILE_CACHE=0: off)
unroll_on_cpu()   # threefry without its rolled loop from the first test on, as toyproblems does (same numbers)

# proofs_check's derivations (~15 s of sympy) computed once per test session and shared with the
# notebook kernel that renders them (notebook 07) through a file in a fresh folder, removed at the
# end (proofs_check.report, PROOFS_CHECK_SHARE); nothing is reused from an earlier session
_SHARE_DIR = None
if not os.environ.get("PROOFS_CHECK_SHARE"):
    _SHARE_DIR = tempfile.mkdtemp(prefix="scaleinv-tests-")
    os.environ["PROOFS_CHECK_SHARE"] = os.path.join(_SHARE_DIR, "derivations.pickle")


def pytest_unconfigure(config):
    if _SHARE_DIR is not None:
        shutil.rmtree(_SHARE_DIR, ignore_errors=True)

settings.register_profile(
    "jax", deadline=None, max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "10")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
settings.load_profile("jax")
