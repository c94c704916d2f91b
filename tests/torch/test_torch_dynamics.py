"""scaleinv.torch.dynamics against hand-computed values on a two-layer model (float64, NumPy
formulas from the weights and gradients captured independently of the hook), and the log drawn
by ``scaleinv plot``."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed: the scaleinv[torch] extra (torch==2.13.0) "
                                            "is needed for the scaleinv.torch tests")

from scaleinv.torch.dynamics import Dynamics  # noqa: E402
from scaleinv.torch.optim import SGDWD, RelativeGlobalClip  # noqa: E402
from scaleinv.torch.rotational import Rotational  # noqa: E402

LR, WD = 0.1, 0.01


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4, bias=True), torch.nn.ReLU(),
                               torch.nn.Linear(4, 2, bias=False)).double()


def _batch(t):
    g = torch.Generator().manual_seed(100 + t)
    return torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)


def _train(model, opt, dyn, steps, capture=None):
    for t in range(steps):
        x, y = _batch(t)
        opt.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        if capture is not None:
            capture.append(({n: p.detach().numpy().copy() for n, p in model.named_parameters()},
                            {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()},
                            float(loss.detach())))
        dyn.observe(loss)
        opt.step()


def _angle(a, b):
    return math.acos(np.clip(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))


def test_hand_computed_values_two_layer_sgdwd(tmp_path):
    lr = 0.5  # large enough that relative global clipping fires on some logged steps, not on others
    model = _model()
    decay = [model[0].weight, model[2].weight]
    opt = SGDWD([{"params": decay, "weight_decay": WD}, {"params": [model[0].bias], "weight_decay": 0.0}], lr=lr)
    cap = []
    with Dynamics(model, opt, tmp_path, every=3, per_neuron="full") as dyn:
        _train(model, opt, dyn, 7, capture=cap)
        after = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 3, 6]
    clipped_seen = []
    for r in rows:
        t = r["step"]
        w, g, loss = cap[t]
        w_next = cap[t + 1][0] if t + 1 < len(cap) else after
        assert r["loss"] == pytest.approx(loss, rel=1e-15)
        g_all = math.sqrt(sum(np.sum(g[k] ** 2) for k in ("0.weight", "2.weight")))
        thr = math.sqrt(2 * 2.0 * WD / lr) * math.sqrt(sum(np.sum(w[k] ** 2) for k in ("0.weight", "2.weight")))
        assert r["clipped"] == bool(g_all > thr)
        clipped_seen.append(r["clipped"])
        for name in ("0.weight", "2.weight"):
            a, b, gr = w[name], w_next[name], g[name]
            norm_g = np.linalg.norm(gr)
            factor = min(1.0, thr / g_all)  # the optimizer's own update, by hand
            np.testing.assert_allclose(b, (1 - lr * WD) * a - lr * factor * gr, rtol=1e-13, atol=1e-15)
            pre = f"layer/{name}/"
            assert r[pre + "norm"] == pytest.approx(np.linalg.norm(a), rel=1e-14)
            assert r[pre + "grad_norm"] == pytest.approx(norm_g, rel=1e-14)
            assert r[pre + "lr_eff"] == pytest.approx(lr / np.sum(a**2), rel=1e-14)
            assert r[pre + "angle"] == pytest.approx(_angle(a, b), rel=1e-7)
            assert r[pre + "rel_update"] == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-13)
            assert r[pre + "pred_angle"] == pytest.approx(math.sqrt(2 * lr * WD), rel=1e-15)
            rows_ang = [_angle(a[i], b[i]) for i in range(a.shape[0])]
            pre = f"neuron/{name}/"
            assert r[pre + "angle_rms"] == pytest.approx(np.sqrt(np.mean(np.square(rows_ang))), rel=1e-7)
            assert r[pre + "angle_max"] == pytest.approx(max(rows_ang), rel=1e-7)
            assert r[pre + "norm_min"] == pytest.approx(np.linalg.norm(a, axis=1).min(), rel=1e-14)
            # per_neuron="full": one value per neuron (row)
            np.testing.assert_allclose(r[pre + "norm"], np.linalg.norm(a, axis=1), rtol=1e-14)
            np.testing.assert_allclose(r[pre + "grad_norm"], np.linalg.norm(gr, axis=1), rtol=1e-14)
            np.testing.assert_allclose(r[pre + "lr_eff"], lr / np.sum(a**2, axis=1), rtol=1e-14)
            np.testing.assert_allclose(r[pre + "angle"], rows_ang, rtol=1e-7, atol=1e-7)  # arccos: ~1e-8 near 0
            np.testing.assert_allclose(r[pre + "rel_update"],
                                       np.linalg.norm(b - a, axis=1) / np.linalg.norm(a, axis=1), rtol=1e-13)
        # the group / top-level keys are over the concatenated decayed weights
        a = np.concatenate([w[k].ravel() for k in ("0.weight", "2.weight")])
        b = np.concatenate([w_next[k].ravel() for k in ("0.weight", "2.weight")])
        assert r["x_norm"] == pytest.approx(np.linalg.norm(a), rel=1e-14)
        assert r["angular_update"] == pytest.approx(_angle(a, b), rel=1e-7)
        assert r["lr"] == lr and r["pred_angle"] == pytest.approx(math.sqrt(2 * lr * WD))
        # the bias group: no weight decay -> no prediction, not clipped, bias has no neuron rows
        assert r["layer/0.bias/pred_angle"] is None and r["group/1/clipped"] is False
        assert "neuron/0.bias/angle_rms" not in r
    assert True in clipped_seen and False in clipped_seen, clipped_seen
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["optimizer"] == "sgd-wd-rgc" and cfg["weight_decay"] == WD


@pytest.mark.parametrize("make, expected", [
    (lambda ps: torch.optim.AdamW(ps, lr=LR, betas=(0.8, 0.99), weight_decay=WD),
     math.sqrt(2 * LR * WD * 0.2 / 1.8)),
    (lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, weight_decay=WD), math.sqrt(2 * LR * WD / 1.9)),
    (lambda ps: RelativeGlobalClip(torch.optim.SGD(ps, lr=LR, weight_decay=WD)), math.sqrt(2 * LR * WD)),
    (lambda ps: Rotational(torch.optim.AdamW(ps, lr=LR, weight_decay=WD), target=0.03), 0.03),
])
def test_predicted_angle_follows_the_optimizer(tmp_path, make, expected):
    model = _model()
    opt = make(list(model.parameters()))
    with Dynamics(model, opt, tmp_path, every=1) as dyn:
        _train(model, opt, dyn, 2)
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert rows[-1]["layer/2.weight/pred_angle"] == pytest.approx(expected, rel=1e-14)


def test_adam_l2_prediction_uses_the_gradient(tmp_path):
    from scaleinv import theory
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WD)
    cap = []
    with Dynamics(model, opt, tmp_path) as dyn:
        _train(model, opt, dyn, 1, capture=cap)
    r = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    w, g, _ = cap[0]
    sigma = np.linalg.norm(g["2.weight"]) * np.linalg.norm(w["2.weight"])
    assert r["layer/2.weight/pred_angle"] == pytest.approx(
        float(theory.equilibrium_angle_adam_l2(LR, WD, 0.9, sigma, 8)), rel=1e-12)


def test_scaleinv_plot_draws_the_log(tmp_path):
    from scaleinv.cli import main
    model = _model()
    opt = SGDWD(model.parameters(), lr=LR, weight_decay=WD)
    with Dynamics(model, opt, tmp_path / "run", every=2) as dyn:
        _train(model, opt, dyn, 10)
    out = tmp_path / "curves.png"
    assert main(["plot", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_bad_arguments():
    model = _model()
    opt = SGDWD(model.parameters(), lr=LR, weight_decay=WD)
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        Dynamics(model, opt, "/tmp/unused-scaleinv-dyn", every=0)
    with pytest.raises(ValueError, match="per_neuron must be False, True or 'full'"):
        Dynamics(model, opt, "/tmp/unused-scaleinv-dyn", per_neuron="rows")
    with pytest.raises(ValueError, match="group must be in"):
        Dynamics(model, opt, "/tmp/unused-scaleinv-dyn", group=3)
