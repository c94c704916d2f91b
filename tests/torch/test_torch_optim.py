"""scaleinv.torch.optim against its JAX/optax twins: same toy, same initial weights, same noise,
1,000 float64 steps -> the same trajectory (max relative difference per step <= 1e-10; the
measured values are ~1e-14, printed with -s)."""
import copy
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed: the scaleinv[torch] extra (torch==2.13.0) "
                                            "is needed for the scaleinv.torch tests")

sys.path.insert(0, str(Path(__file__).parent))
from _torch_toy import make_toy, max_rel_diff, run_jax, run_torch, torch_params  # noqa: E402

from scaleinv import optim as jopt  # noqa: E402
from scaleinv import rotational as jrot  # noqa: E402
from scaleinv import theory  # noqa: E402
from scaleinv.torch.optim import SGDWD, ClipStats, RelativeGlobalClip  # noqa: E402
from scaleinv.torch.rotational import Rotational, equilibrium_target  # noqa: E402

STEPS = 1000
TOL = 1e-10
LR, WD, C = 0.05, 0.01, 2.0
SI_MASK = {"W1": True, "W2": True, "head": False}


@pytest.fixture(scope="module")
def toy():
    return make_toy(STEPS, seed=0)


@pytest.fixture(scope="module")
def jax_rgc(toy):
    return run_jax(toy, jopt.sgd_wd_rgc(LR, WD, C=C, mask=SI_MASK), STEPS, with_clip_state=True)


def _groups(p, wd_head=0.0):
    return [{"params": [p["W1"], p["W2"]], "weight_decay": WD}, {"params": [p["head"]], "weight_decay": wd_head}]


def _check_clip_agreement(jax_traj, jax_clipped, traj, stats, label):
    diff = max_rel_diff(traj, jax_traj)
    clipped = np.array([s[0].clipped for s in stats])
    print(f"\n{label}: max relative trajectory difference over {STEPS} steps {diff:.2e}; "
          f"clipped {int(clipped.sum())}/{STEPS} steps (JAX {int(jax_clipped.sum())})")
    assert diff <= TOL, f"{label}: torch and JAX trajectories differ by {diff:.3g} > {TOL:g}"
    # both regimes are exercised, and the clip decisions agree step by step
    assert 0 < clipped.sum() < STEPS, f"clipping fired on {clipped.sum()} of {STEPS} steps: toy not informative"
    np.testing.assert_array_equal(clipped, jax_clipped)
    assert all(s[1].clipped is False and s[1].threshold == float("inf") for s in stats), "head group was clipped"
    assert stats[-1][0].num_clipped == int(clipped.sum()) and stats[-1][0].count == STEPS


def test_sgdwd_matches_optax_sgd_wd_rgc(toy, jax_rgc):
    jax_traj, jax_clipped = jax_rgc
    p = torch_params(toy)
    opt = SGDWD(_groups(p), lr=LR, C=C)
    traj, stats = run_torch(toy, p, opt, STEPS, on_step=lambda o: o.clip_stats())
    _check_clip_agreement(jax_traj, jax_clipped, traj, stats, "SGDWD vs sgd_wd_rgc")


def test_clip_wrapper_on_torch_sgd_matches_optax(toy, jax_rgc):
    jax_traj, jax_clipped = jax_rgc
    p = torch_params(toy)
    opt = RelativeGlobalClip(torch.optim.SGD(_groups(p), lr=LR), C=C)
    traj, stats = run_torch(toy, p, opt, STEPS, on_step=lambda o: o.clip_stats())
    _check_clip_agreement(jax_traj, jax_clipped, traj, stats, "RelativeGlobalClip(torch SGD) vs sgd_wd_rgc")


def test_sgdwd_without_clipping_matches_sgd_wd(toy):
    jax_traj = run_jax(toy, jopt.sgd_wd(LR, WD, mask=SI_MASK), 200)
    p = torch_params(toy)
    traj, stats = run_torch(toy, p, SGDWD(_groups(p), lr=LR, clip=False), 200,
                            on_step=lambda o: o.clip_stats())
    assert max_rel_diff(traj, jax_traj) <= TOL
    assert not any(s[0].clipped for s in stats)


def test_rotational_adamw_per_neuron_matches_jax(toy):
    b1, b2 = 0.9, 0.999
    jax_traj = run_jax(toy, jrot.rotational_adamw(LR, WD, b1=b1, b2=b2, neuron_axis=0), STEPS)
    p = torch_params(toy)
    inner = torch.optim.AdamW(list(p.values()), lr=LR, betas=(b1, b2), eps=1e-8, weight_decay=WD)
    opt = Rotational(inner)
    traj, _ = run_torch(toy, p, opt, STEPS)
    diff = max_rel_diff(traj, jax_traj)
    print(f"\nRotational(AdamW) vs rotational_adamw: max relative difference {diff:.2e}")
    assert diff <= TOL
    # the wrapper really rotates: neuron norms fixed, RMS angle ~ the AdamW equilibrium angle
    n0 = np.linalg.norm(traj["W1"][0], axis=1)  # the initial norms (REQ rescales the centred rows to them)
    np.testing.assert_allclose(np.linalg.norm(traj["W1"][-1], axis=1), n0, rtol=1e-12)
    a, b = traj["W1"][-2], traj["W1"][-1]
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    eta_r = float(theory.equilibrium_angle_adamw(LR, WD, b1))
    assert equilibrium_target(inner, inner.param_groups[0]) == pytest.approx(eta_r, rel=1e-15)
    np.testing.assert_allclose(np.sqrt(np.mean(np.arccos(np.clip(cos, -1, 1)) ** 2)), eta_r, rtol=0.1)


def test_rotational_sgdm_per_neuron_matches_jax(toy):
    mom = 0.9
    jax_traj = run_jax(toy, jrot.rotational_sgdm(LR, WD, momentum=mom, neuron_axis=0), STEPS)
    p = torch_params(toy)
    inner = torch.optim.SGD(list(p.values()), lr=LR, momentum=mom, weight_decay=WD)
    opt = Rotational(inner)
    # the L2 term was moved out of the rotational weights' momentum (REQ), the head keeps it
    assert [len(g["params"]) for g in opt.param_groups] == [1, 2]
    assert opt.param_groups[1]["weight_decay"] == 0.0 and opt.param_groups[1]["rotational_weight_decay"] == WD
    traj, _ = run_torch(toy, p, opt, STEPS)
    diff = max_rel_diff(traj, jax_traj)
    print(f"\nRotational(SGD momentum) vs rotational_sgdm: max relative difference {diff:.2e}")
    assert diff <= TOL


def test_rotational_per_tensor_on_sgdwd_matches_jax(toy):
    eta_r = float(theory.equilibrium_angle_sgd(LR, WD))
    jax_opt = jrot.rotational(jopt.sgd_wd_rgc(LR, WD, C=C, mask=SI_MASK), eta_r, per_neuron=False,
                              inner_learning_rate=LR)
    jax_traj = run_jax(toy, jax_opt, STEPS)
    p = torch_params(toy)
    opt = Rotational(SGDWD(_groups(p), lr=LR, C=C), per_neuron=False)
    traj, _ = run_torch(toy, p, opt, STEPS)
    diff = max_rel_diff(traj, jax_traj)
    print(f"\nRotational(SGDWD, per tensor) vs rotational(sgd_wd_rgc): max relative difference {diff:.2e}")
    assert diff <= TOL
    np.testing.assert_allclose(np.linalg.norm(traj["W2"][-1]), np.linalg.norm(traj["W2"][1]), rtol=1e-12)


def test_state_dict_round_trip_continues_identically(toy):
    def fresh():
        p = torch_params(toy)
        return p, Rotational(RelativeGlobalClip(torch.optim.AdamW(_groups(p, 0.0), lr=LR, weight_decay=WD)),
                             target=0.02)

    p_a, a = fresh()
    run_torch(toy, p_a, a, 5)
    p_b, b = fresh()
    with torch.no_grad():
        for k in p_b:
            p_b[k].copy_(p_a[k])
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as torch.save/torch.load would
    assert b.count == 5 and b.optimizer.clip_stats() == a.optimizer.clip_stats()
    sub = dict(toy, idx=toy["idx"][5:], noise={k: v[5:] for k, v in toy["noise"].items()})
    ta, _ = run_torch(sub, p_a, a, 5)
    tb, _ = run_torch(sub, p_b, b, 5)
    assert max_rel_diff(tb, ta) == 0.0


def test_lr_scheduler_is_followed_by_clip_threshold(toy):
    p = torch_params(toy)
    opt = RelativeGlobalClip(torch.optim.SGD(_groups(p), lr=LR), C=C)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    run_torch(toy, p, opt, 1)
    s0 = opt.clip_stats()[0]
    sched.step()
    x = float(torch.sqrt(p["W1"].detach().square().sum() + p["W2"].detach().square().sum()))
    run_torch(toy, p, opt, 1)
    s1 = opt.clip_stats()[0]
    assert opt.param_groups[0]["lr"] == pytest.approx(LR / 2)
    assert s1.threshold == pytest.approx(np.sqrt(2 * C * WD / (LR / 2)) * x, rel=1e-12)
    assert s1.count == s0.count + 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1.0), "lr must be > 0"),
    (dict(lr=0.1, weight_decay=-0.1), "weight_decay must be >= 0"),
    (dict(lr=0.1, weight_decay=0.1, C=1.0), "C must be > 1"),
    (dict(lr=0.1, weight_decay=0.0, clip=True), "needs weight_decay > 0"),
])
def test_sgdwd_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGDWD([torch.zeros(3, requires_grad=True)], **kwargs)


def test_rotational_needs_a_target_it_can_compute():
    w = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(ValueError, match="pass target="):
        Rotational(torch.optim.Adam([w], lr=0.1, weight_decay=0.1))
    with pytest.raises(ValueError, match="needs weight_decay > 0"):
        Rotational(torch.optim.AdamW([w], lr=0.1, weight_decay=0.0))
    assert isinstance(Rotational(torch.optim.Adam([w], lr=0.1), target=0.01), torch.optim.Optimizer)
    assert ClipStats._fields == ("count", "clipped", "grad_norm", "threshold", "num_clipped")


def test_clip_edge_cases_match_the_jax_definition():
    """Zero weights, eta = 0 and non-finite gradients: the defined results of
    scaleinv.optim.relative_global_clip (threshold 0 / inf; NaN poisons the group, not clipped)."""
    from scaleinv.torch.optim import relative_clip_

    def one(w, g, lr):
        p = torch.tensor(w, dtype=torch.float64)
        p.grad = torch.tensor(g, dtype=torch.float64)
        clipped, gn, thr = relative_clip_([p], lr, WD, C)
        return clipped, p.grad.numpy(), thr

    clipped, g, thr = one([0.0, 0.0], [0.0, 0.0], LR)
    assert not clipped and thr == 0.0 and np.all(g == 0)
    clipped, g, thr = one([0.0, 0.0], [1.0, 2.0], LR)
    assert clipped and np.all(g == 0)
    clipped, g, thr = one([1.0, 0.0], [1e6, 0.0], 0.0)
    assert not clipped and thr == float("inf") and g[0] == 1e6
    clipped, g, _ = one([1.0, 0.0], [np.inf, 1.0], LR)
    assert not clipped and np.all(np.isnan(g))
