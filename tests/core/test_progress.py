"""scaleinv.progress: a bar that does not redraw every step, sparse plain lines in a log."""
import io

from scaleinv.progress import Progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_log_file_gets_at_most_21_lines_for_100_steps():
    f = io.StringIO()                       # not a terminal
    p = Progress(100, "train sibert/sgd-wd-rgc", file=f)
    for i in range(100):
        p.update(1, loss=f"{7 - i / 100:.3f}")
    p.close()
    lines = f.getvalue().splitlines()
    assert p.lines == len(lines) == 20     # every 5 steps, the last one at 100/100
    assert lines[-1].startswith("train sibert/sgd-wd-rgc: 100/100 step (100%)") and "loss=6.010" in lines[-1]
    assert "\r" not in f.getvalue()


def test_resumed_run_counts_from_initial():
    f = io.StringIO()
    p = Progress(100, "t", file=f, initial=60)
    for _ in range(40):
        p.update(1)
    lines = f.getvalue().splitlines()
    assert lines[0].startswith("t: 65/100") and lines[-1].startswith("t: 100/100") and len(lines) == 8


def test_items_are_announced_in_a_log():
    f = io.StringIO()
    p = Progress(3, "scaleinv verify", unit="claim", file=f, every=1)
    for name in ("claim_a", "claim_b", "claim_c"):
        p.item(name)
        p.update(1)
    out = f.getvalue().splitlines()
    assert out[0] == "scaleinv verify: [1/3] claim_a ..." and out[2] == "scaleinv verify: [2/3] claim_b ..."
    assert out[-1].startswith("scaleinv verify: 3/3 claim (100%)")


def test_terminal_bar_does_not_redraw_every_step():
    f = _Tty()
    p = Progress(1000, "t", file=f)
    for i in range(1000):                  # microseconds apart: within tqdm's 0.5 s mininterval
        p.update(1, loss=f"{i:.3f}")
    p.close()
    redraws = f.getvalue().count("\r")
    assert 1 <= redraws <= 10, redraws      # initial draw + close (+ at most a few timed refreshes)


def test_disabled_writes_nothing():
    f = io.StringIO()
    p = Progress(10, "t", file=f, enabled=False)
    p.item("x")
    for _ in range(10):
        p.update(1)
    assert f.getvalue() == ""
