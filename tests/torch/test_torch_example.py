"""examples/torch_sibert_encoder.py runs end to end (short): the scale-invariance check passes,
training lowers the loss, the dynamics log is written and ``scaleinv plot`` draws it."""
import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed: the scaleinv[torch] extra (torch==2.13.0) "
                                            "is needed for the scaleinv.torch tests")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "torch_sibert_encoder.py"


def test_torch_example_trains_logs_and_plots(tmp_path):
    spec = importlib.util.spec_from_file_location("torch_sibert_encoder", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s = mod.main(["--out", str(tmp_path), "--steps", "40", "--every", "10"])
    assert s["logged_rows"] == 4 and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4
    assert s["last_loss"] < s["first_loss"]
    assert s["predicted_angle"] == pytest.approx(0.1)          # sqrt(2 * 0.5 * 0.01)
    assert s["encoder_norm_last"] < s["encoder_norm_first"]    # weight decay at work from a large init
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "config.json").read_text())["optimizer"] == "sgd-wd-rgc"
