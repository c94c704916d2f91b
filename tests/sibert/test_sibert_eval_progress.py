"""A long held-out evaluation shows its progress on stderr, never on stdout (issue 28: an
``eval_batches`` in the thousands was silent for minutes). ``sibert.train.evaluate`` with a
stand-in evaluation step (so no compilation): the sums are still the batches' sums."""
import numpy as np
import pytest

from sibert.config import apply_overrides, preset
from sibert.train import EVAL_PROGRESS_MIN_BATCHES, evaluate, make_mesh


class _Data:
    def heldout_batch(self, j, batch_size):
        return {k: np.full((batch_size, 4), j, np.int32) for k in ("tokens", "mlm_positions", "mlm_labels",
                                                                    "mlm_weights")}


def _eval_fn(params, batch):
    j = float(np.asarray(batch["tokens"]).ravel()[0])
    return {"loss_sum": 2.0 * (j + 1), "correct": 1.0, "n": j + 1}


@pytest.mark.parametrize("batches, progress, lines", [(40, True, 10), (EVAL_PROGRESS_MIN_BATCHES - 1, True, 0),
                                                      (40, False, 0)])
def test_long_evaluation_progress_on_stderr_only(capsys, batches, progress, lines):
    cfg = apply_overrides(preset("tiny", "sibert"), {"eval_batches": batches, "progress": progress, "batch_size": 8})
    res = evaluate(_eval_fn, None, _Data(), cfg, make_mesh(), "eval at step 7")
    out, err = capsys.readouterr()
    n = sum(j + 1 for j in range(batches))
    assert res["heldout_loss"] == pytest.approx(2.0) and res["heldout_accuracy"] == pytest.approx(batches / n)
    assert out == ""                                         # stdout holds only a command's JSON summary
    got = [l for l in err.splitlines() if l.startswith("eval at step 7: ")]
    assert len(got) == lines, err
    if lines:
        assert got[-1].startswith(f"eval at step 7: {batches}/{batches} batch (100%)"), got[-1]
        assert got[0].startswith("eval at step 7: 4/40 batch (10%)"), got[0]
