"""Dynamics(..., tensorboard=DIR): every numeric field of every metrics.jsonl row is a scalar
event (tag = key, step = row step), read back with TensorBoard's EventAccumulator and equal to
the JSONL value rounded to float32 (TensorBoard's simple_value)."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: pip install 'scaleinv[torch]'")
pytest.importorskip("tensorboardX", reason="tensorboardX not installed: pip install 'scaleinv[tensorboard]'")
pytest.importorskip("tensorboard", reason="tensorboard not installed (its EventAccumulator reads the events)")

from scaleinv.tensorboard import TensorBoardError, read_scalars, scalars  # noqa: E402
from scaleinv.torch.dynamics import Dynamics  # noqa: E402
from scaleinv.torch.optim import SGDWD  # noqa: E402


def _run(tmp_path, steps=3, every=1):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = SGDWD([{"params": [model[0].weight, model[2].weight], "weight_decay": 0.1},
                 {"params": [model[0].bias, model[2].bias], "weight_decay": 0.0}], lr=0.3)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    with Dynamics(model, opt, tmp_path / "run", every=every, per_neuron="full", tensorboard=tmp_path / "tb") as dyn:
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            dyn.observe(loss)
            opt.step()
    return [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


def test_dynamics_events_equal_jsonl(tmp_path):
    rows = _run(tmp_path, steps=4, every=2)
    ev = read_scalars(tmp_path / "tb")
    want = {}
    for r in rows:
        for tag, v in scalars(r).items():
            want.setdefault(tag, {})[r["step"]] = np.float32(v)
    assert [r["step"] for r in rows] == [0, 2]
    assert {"loss", "x_norm", "lr_eff", "angular_update", "pred_angle", "layer/0.weight/angle",
            "group/1/norm", "neuron/2.weight/angle_mean", "clipped"} <= set(want)
    assert set(ev) == set(want)
    for tag in want:
        assert ev[tag] == {s: float(v) for s, v in want[tag].items()}, tag
    # lists (per-neuron "full") and None (no pred_angle for the no-decay group) are not events
    assert "neuron/0.weight/angle" not in ev and rows[0]["group/1/pred_angle"] is None
    assert "group/1/pred_angle" not in ev


def test_dynamics_unwritable_tensorboard_dir(tmp_path):
    (tmp_path / "file").write_text("x")
    model = torch.nn.Linear(2, 2)
    opt = SGDWD(model.parameters(), lr=0.1, weight_decay=0.1)
    with pytest.raises(TensorBoardError, match="not a directory"):
        Dynamics(model, opt, tmp_path / "run", tensorboard=tmp_path / "file" / "tb")
    assert not (tmp_path / "run").exists()
