"""Array namespace shared by the theory modules."""
import numpy as np


def _xp(x):
    """Array namespace: jax.numpy for JAX arrays/tracers, numpy otherwise."""
    mod = type(x).__module__
    if mod.startswith("jax") or mod.startswith("jaxlib"):
        import jax.numpy as jnp

        return jnp
    return np
