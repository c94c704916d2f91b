"""scaleinv.tensorboard: which row fields become events, the directory check (writes nothing),
the lazy event file, and the purge marker a resumed ``scaleinv train`` writes (TensorBoard's
EventAccumulator then drops the killed session's events from that step on)."""
import math

import pytest

from scaleinv.tensorboard import ScalarWriter, TensorBoardError, check_logdir, scalars


def test_scalars_fields():
    row = {"step": 3, "loss": 1.5, "n": 2, "clipped": True, "ok": False, "none": None, "nan": math.nan,
           "inf": math.inf, "name": "x", "lst": [1.0, 2.0]}
    assert scalars(row, prefix="train/") == {"train/loss": 1.5, "train/n": 2.0, "train/clipped": 1.0,
                                             "train/ok": 0.0}


def test_check_logdir_writes_nothing(tmp_path):
    pytest.importorskip("tensorboardX", reason="tensorboardX not installed: pip install 'scaleinv[tensorboard]'")
    (tmp_path / "f").write_text("x")
    assert check_logdir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    with pytest.raises(TensorBoardError, match="not a directory"):
        check_logdir(tmp_path / "f")
    with pytest.raises(TensorBoardError, match="not a directory"):
        check_logdir(tmp_path / "f" / "tb")
    w = ScalarWriter(tmp_path / "lazy")
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no directory before the first row


def test_purge_on_resume_drops_the_killed_sessions_tail(tmp_path):
    pytest.importorskip("tensorboardX", reason="tensorboardX not installed: pip install 'scaleinv[tensorboard]'")
    pytest.importorskip("tensorboard", reason="tensorboard not installed (its EventAccumulator reads the events)")
    from scaleinv.tensorboard import read_scalars

    first = ScalarWriter(tmp_path)
    for s in range(6):  # a session killed after step 5; its last checkpoint was step 3
        first.add_row({"step": s, "loss": float(s)}, prefix="train/")
    first.close()
    resumed = ScalarWriter(tmp_path, purge=True)
    for s in (3, 4):
        resumed.add_row({"step": s, "loss": 10.0 + s}, prefix="train/")
    resumed.close()
    assert read_scalars(tmp_path) == {"train/loss": {0: 0.0, 1: 1.0, 2: 2.0, 3: 13.0, 4: 14.0}}
