"""Shared test configuration: a hypothesis profile for JAX (compile time breaks the default
200 ms deadline; few examples so the suite fits 2 CPU cores)."""
import os

from hypothesis import HealthCheck, settings

from scaleinv.compile_cache import enable

enable()   # persistent JAX compilation cache, inherited by CLI subprocesses (SCALEINV_COMPILE_CACHE=0: off)

settings.register_profile(
    "jax", deadline=None, max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "10")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
settings.load_profile("jax")
