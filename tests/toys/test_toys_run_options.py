"""toyproblems.run options (issue 27, "one runner"): ``record``, ``loss_takes_step``, ``active_steps``,
``Trace.final_state`` and ``oracle_loss``, each against values computed by hand (dyadic numbers:
every value below is exact in binary floating point, so the comparisons are exact)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from toyproblems.run import Step, oracle_loss, run, sweep


def _quad(x, key=None):
    return 0.5 * jnp.sum(x**2)          # gradient = x


X0 = np.array([1.0, 2.0])
# optax.sgd(0.5, momentum=0.25) on 0.5 ||x||^2 from (1, 2): m_{t+1} = g_t + 0.25 m_t, u_t = -0.5 m_{t+1}
HAND_X = np.array([[1.0, 2.0], [0.5, 1.0], [0.125, 0.25], [-0.03125, -0.0625]])        # x_0 .. x_3
HAND_M = np.array([[1.0, 2.0], [0.75, 1.5], [0.3125, 0.625]])                           # m_1 .. m_3


def _all_fields(st: Step):
    return {"t": st.t, "x": st.x, "grad": st.grad, "update": st.update, "x_new": st.x_new,
            "trace": st.state[0].trace, "loss": st.loss}


def test_record_sees_every_field_of_a_3_step_sgd_momentum_run():
    with jax.enable_x64(True):
        tr = run(_quad, optax.sgd(0.5, momentum=0.25), jnp.asarray(X0), 3, jax.random.PRNGKey(0),
                 record=_all_fields)
    e = jax.tree.map(np.asarray, tr.extra)
    np.testing.assert_array_equal(e["t"], [0, 1, 2])
    np.testing.assert_array_equal(e["x"], HAND_X[:3])
    np.testing.assert_array_equal(e["grad"], HAND_X[:3])                    # g_t = x_t
    np.testing.assert_array_equal(e["update"], -0.5 * HAND_M)
    np.testing.assert_array_equal(e["x_new"], HAND_X[1:])
    np.testing.assert_array_equal(e["trace"], HAND_M)                       # s_{t+1}: after the update
    np.testing.assert_array_equal(e["loss"], 0.5 * np.sum(HAND_X[:3] ** 2, axis=1))
    np.testing.assert_array_equal(np.asarray(tr.final), HAND_X[3])
    # the record changes nothing else: the built-in trace equals the run without it
    with jax.enable_x64(True):
        plain = run(_quad, optax.sgd(0.5, momentum=0.25), jnp.asarray(X0), 3, jax.random.PRNGKey(0))
    assert plain.extra is None
    for f in ("loss", "sq_norm", "grad_norm", "angle", "final"):
        np.testing.assert_array_equal(np.asarray(getattr(tr, f)), np.asarray(getattr(plain, f)), err_msg=f)


def test_record_with_stride_is_the_full_record_sampled():
    with jax.enable_x64(True):
        full = run(_quad, optax.sgd(0.5, momentum=0.25), jnp.asarray(X0), 4, jax.random.PRNGKey(0), record=_all_fields)
        strided = run(_quad, optax.sgd(0.5, momentum=0.25), jnp.asarray(X0), 4, jax.random.PRNGKey(0),
                      record=_all_fields, record_every=2)
    for k in ("t", "x", "grad", "update", "x_new", "trace", "loss"):
        np.testing.assert_array_equal(np.asarray(strided.extra[k]), np.asarray(full.extra[k])[::2], err_msg=k)
    np.testing.assert_array_equal(np.asarray(strided.extra["t"]), [0, 2])


def test_final_state_is_the_state_after_the_last_step():
    with jax.enable_x64(True):
        tr = run(_quad, optax.sgd(0.5, momentum=0.25), jnp.asarray(X0), 3, jax.random.PRNGKey(0))
        tr2 = run(_quad, optax.sgd(0.5, momentum=0.25), jnp.asarray(X0), 4, jax.random.PRNGKey(0), record_every=2)
    np.testing.assert_array_equal(np.asarray(tr.final_state[0].trace), HAND_M[-1])
    # 4 steps: m_4 = x_3 + 0.25 m_3 (through the silent steps of the strided loop)
    np.testing.assert_array_equal(np.asarray(tr2.final_state[0].trace), HAND_X[3] + 0.25 * HAND_M[2])
    with jax.enable_x64(True):
        adam = run(_quad, optax.adam(0.1), jnp.asarray(X0), 5, jax.random.PRNGKey(0))
    assert int(adam.final_state[0].count) == 5


def test_loss_takes_step_gives_the_loss_the_step_index():
    """L_t(x) = 0.5 ||x - t c||^2 with plain SGD(lr 1): x_{t+1} = t c, the gradient at step t is x_t - t c."""
    c = jnp.asarray([1.0, -2.0])

    def loss(x, key, t):
        return 0.5 * jnp.sum((x - t * c) ** 2)

    with jax.enable_x64(True):
        tr = run(loss, optax.sgd(1.0), jnp.asarray(X0), 3, jax.random.PRNGKey(0), loss_takes_step=True,
                 record=lambda st: (st.x_new, st.grad))
    x_new, g = (np.asarray(a) for a in tr.extra)
    cn = np.asarray(c)
    np.testing.assert_array_equal(x_new, [0 * cn, 1 * cn, 2 * cn])
    np.testing.assert_array_equal(g, [X0 - 0 * cn, 0 * cn - 1 * cn, 1 * cn - 2 * cn])
    with pytest.raises(TypeError):       # without the flag the loss is called (x, key): the option is not ignored
        run(loss, optax.sgd(1.0), jnp.asarray(X0), 3, jax.random.PRNGKey(0))


@pytest.mark.parametrize("record_every", [1, 2])
def test_active_steps_freezes_iterate_and_state_per_vmapped_config(record_every):
    """SGD(0.5) on 0.5||x||^2 halves x each step: after n active steps of 4, x = x0 / 2^n, the momentum
    state stops too, and the trace still has 4 entries (angle 0 on the frozen steps)."""
    def one(n):
        return run(_quad, optax.sgd(0.5, momentum=0.0), jnp.asarray(X0), 4, jax.random.PRNGKey(0),
                   active_steps=n, record_every=record_every, record=lambda st: st.x_new)

    with jax.enable_x64(True):
        tr = jax.jit(jax.vmap(one))(jnp.asarray([0, 1, 3, 4]))
    final = np.asarray(tr.final)
    np.testing.assert_array_equal(final, [X0, X0 / 2, X0 / 8, X0 / 16])
    np.testing.assert_array_equal(np.asarray(tr.final_state[0].trace), [0 * X0, X0, X0 / 4, X0 / 8])
    assert np.asarray(tr.sq_norm).shape == (4, 4 // record_every)
    sq0 = np.asarray(tr.sq_norm)[0]                      # config 0 never moves: ||x0||^2 = 5 at every entry
    np.testing.assert_array_equal(sq0, np.full(4 // record_every, sq0[0]))
    np.testing.assert_allclose(sq0[0], 5.0, rtol=1e-15)
    if record_every == 1:
        np.testing.assert_array_equal(np.asarray(tr.extra)[2], [X0 / 2, X0 / 4, X0 / 8, X0 / 8])


def test_oracle_loss_has_the_field_as_its_gradient_bit_for_bit():
    """Any field, also one that is not a gradient (curl) and one depending on key and t."""
    def field(x, key, t):
        return {"a": jnp.sin(x["a"]) * x["b"][0] + jax.random.normal(key, x["a"].shape) / 3.0 + t,
                "b": jnp.exp(-x["b"]) * jnp.sum(x["a"])}

    with jax.enable_x64(True):
        x = {"a": jax.random.normal(jax.random.PRNGKey(1), (5,)), "b": jax.random.normal(jax.random.PRNGKey(2), (3,))}
        k = jax.random.PRNGKey(3)
        for t in (0, 7):
            got = jax.grad(oracle_loss(field))(x, k, t)
            want = field(x, k, t)
            for name in ("a", "b"):
                np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)
        # jitted, inside the runner: the gradient the runner records is the field
        tr = run(oracle_loss(lambda y, key: 0.1 * y + 1.0), optax.sgd(1.0), jnp.asarray(X0), 2,
                 jax.random.PRNGKey(0), record=lambda st: st.grad)
    np.testing.assert_array_equal(np.asarray(tr.extra), [0.1 * X0 + 1.0, 0.1 * (X0 - (0.1 * X0 + 1.0)) + 1.0])


def test_sweep_passes_record_and_loss_takes_step_per_configuration():
    def loss(x, key, t):
        return 0.5 * jnp.sum(x**2) * (t + 1.0)           # gradient (t + 1) x

    with jax.enable_x64(True):
        p0 = jnp.asarray([X0, 2 * X0])
        tr = sweep(lambda lr: optax.sgd(lr), loss, p0, 2, jax.random.PRNGKey(0), {"lr": jnp.asarray([0.25, 0.125])},
                   record=lambda st: st.grad, loss_takes_step=True)
        one = run(loss, optax.sgd(0.125), 2 * jnp.asarray(X0), 2, jax.random.PRNGKey(0),
                  record=lambda st: st.grad, loss_takes_step=True)
    g = np.asarray(tr.extra)
    # config 0: x1 = x0 - 0.25 x0 = 0.75 x0; g_1 = 2 x1
    np.testing.assert_array_equal(g[0], [X0, 2 * 0.75 * X0])
    np.testing.assert_array_equal(g[1], np.asarray(one.extra))


def test_record_must_be_callable():
    with pytest.raises(ValueError, match="record"):
        run(_quad, optax.sgd(0.1), jnp.asarray(X0), 2, jax.random.PRNGKey(0), record=3)
