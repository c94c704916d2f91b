"""`scaleinv plot` draws a PNG from run directories and rejects a directory without metrics."""
import numpy as np
import json

from scaleinv.cli import main


def _fake_run(d, n=30, clip_every=7):
    d.mkdir()
    with open(d / "metrics.jsonl", "w") as f:
        for s in range(n):
            f.write(json.dumps({"step": s, "loss": 9 - s / 10, "x_norm": 20 - s / 5, "clipped": s % clip_every == 0,
                                "angular_update": 0.05 / (1 + s), "lr": 1.0, "lr_eff": 1 / (20 - s / 5) ** 2}) + "\n")
    (d / "eval.jsonl").write_text(json.dumps({"step": n, "heldout_loss": 7.0, "heldout_accuracy": 0.1}) + "\n")


def test_plot_png(tmp_path, capsys):
    _fake_run(tmp_path / "a")
    _fake_run(tmp_path / "b", clip_every=3)
    out = tmp_path / "fig" / "c.png"
    assert main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--labels", "x,y"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plot_missing_metrics(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


def test_predicted_angle_matches_theory():
    from scaleinv.cli.plot import predicted_angle
    sgd = predicted_angle({"optimizer": "sgd-wd-rgc", "weight_decay": 0.01}, [0.1, 0.01])
    np.testing.assert_allclose(sgd, [np.sqrt(2 * 0.1 * 0.01), np.sqrt(2 * 0.01 * 0.01)], rtol=1e-12)
    adam = predicted_angle({"optimizer": "adamw", "weight_decay": 0.01, "adam_b1": 0.9}, [1e-3])
    np.testing.assert_allclose(adam, [np.sqrt(2 * 1e-3 * 0.01 * 0.1 / 1.9)], rtol=1e-12)
    assert predicted_angle({"optimizer": "sgd", "weight_decay": 0.0}, [0.1]) is None
