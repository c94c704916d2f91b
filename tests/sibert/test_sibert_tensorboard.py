"""``scaleinv train --tensorboard DIR``: the metrics.jsonl / eval.jsonl rows as TensorBoard scalar
events (``train/<key>``, ``eval/<key>`` at the row's step), read back with TensorBoard's
EventAccumulator and equal to the JSONL values rounded to float32; a bad DIR is refused with one
line, exit 2, nothing written."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from scaleinv.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import set_args, tiny_overrides  # noqa: E402


def _needs_tb():
    pytest.importorskip("tensorboardX", reason="tensorboardX not installed: pip install 'scaleinv[tensorboard]'")
    pytest.importorskip("tensorboard", reason="tensorboard not installed (its EventAccumulator reads the events)")


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_tensorboard_events_equal_jsonl(tmp_path, capsys):
    _needs_tb()
    from scaleinv.tensorboard import read_scalars, scalars

    out, tb = tmp_path / "run", tmp_path / "tb"
    argv = ["train", "--out", str(out), "--tensorboard", str(tb)] + set_args(
        tiny_overrides(tmp_path / "cache", steps=4, eval_every=2, ckpt_every=4))
    assert main(argv) == 0, capsys.readouterr().err
    want = {}
    for kind in ("train", "eval"):
        for r in _jsonl(out / ("metrics.jsonl" if kind == "train" else "eval.jsonl")):
            for tag, v in scalars(r, prefix=f"{kind}/").items():
                want.setdefault(tag, {})[r["step"]] = float(np.float32(v))
    ev = read_scalars(tb)
    assert {"train/loss", "train/x_norm", "train/angular_update", "eval/heldout_loss"} <= set(want)
    assert want["train/loss"].keys() == {0, 1, 2, 3} and want["eval/heldout_loss"].keys() == {2, 4}
    assert set(ev) == set(want)
    for tag in want:
        assert ev[tag] == want[tag], tag


@pytest.mark.parametrize("case", ["under_a_file", "is_a_file"])
def test_unwritable_tensorboard_dir_exit_2_nothing_written(tmp_path, capsys, case):
    (tmp_path / "f").write_text("x")
    tb = tmp_path / "f" / "tb" if case == "under_a_file" else tmp_path / "f"
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--tensorboard", str(tb)] + set_args(tiny_overrides(tmp_path / "cache"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("scaleinv train: error: --tensorboard: ") and err.count("\n") == 1, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_tensorboard_without_tensorboardx_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--tensorboard", str(tmp_path / "tb")] + set_args(
        tiny_overrides(tmp_path / "cache"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--tensorboard" in err and "scaleinv[tensorboard]" in err and err.count("\n") == 1, err
    assert not out.exists() and not (tmp_path / "tb").exists()
