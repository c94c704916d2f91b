"""RUN/.lock is honoured only for a live scaleinv trainer on this host (issue 28).

Honoured: same host, PID alive, its start time and command line those recorded. Taken over with
one accurate line: a dead PID, a reused PID (other start time), a live PID that is not the
trainer (PID 1, a planted lock without start time / command), malformed files. Refused: a lock
of another host (cannot be checked)."""
import json
import os
import socket
import subprocess
import sys

import pytest

from sibert.runlock import LOCK_NAME, RunLock, RunLocked, _start_ticks, holder_status, is_stale, lock_holder

HOST = socket.gethostname()


def _take(run, content):
    (run / LOCK_NAME).write_text(content if isinstance(content, str) else json.dumps(content))
    logs = []
    with RunLock(run, logs.append):
        assert lock_holder(run)["pid"] == os.getpid()
    assert not (run / LOCK_NAME).exists()
    assert len(logs) == 1 and "\n" not in logs[0], logs
    return logs[0]


def test_own_live_lock_is_honoured(tmp_path):
    with RunLock(tmp_path):
        info = lock_holder(tmp_path)
        assert holder_status(info)[0] == "live" and not is_stale(info)
        assert info["cmdline"] and info["start_ticks"] == _start_ticks(os.getpid())
        with pytest.raises(RunLocked, match=f"PID {os.getpid()} on {HOST}"):
            RunLock(tmp_path).acquire()


def test_live_pid_that_is_not_the_trainer_is_taken_over(tmp_path):
    # PID 1 is alive but never a trainer: without start ticks (the planted lock) ...
    line = _take(tmp_path, {"pid": 1, "host": HOST})
    assert "stale lock of PID 1" in line and "no start time" in line and "process gone" not in line
    # ... with PID 1's real start ticks but no command line: its command is not scaleinv's
    line = _take(tmp_path, {"pid": 1, "host": HOST, "start_ticks": _start_ticks(1)})
    assert "stale lock of PID 1" in line and "not a scaleinv trainer" in line
    # a live process whose command line differs from the one the lock records
    me = json.loads(RunLock(tmp_path)._payload())
    line = _take(tmp_path, {**me, "cmdline": ["python", "-m", "scaleinv.cli", "train", "--out", "elsewhere"]})
    assert f"stale lock of PID {os.getpid()}" in line and "not the trainer that wrote the lock" in line


def test_reused_and_dead_pids_named_accurately(tmp_path):
    me = json.loads(RunLock(tmp_path)._payload())
    line = _take(tmp_path, {**me, "start_ticks": me["start_ticks"] + 1})
    assert "reused by another process" in line and "process gone" not in line
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    line = _take(tmp_path, {"pid": dead.pid, "host": HOST, "start_ticks": 5})
    assert f"stale lock of PID {dead.pid} (process gone)" in line


@pytest.mark.parametrize("content, needle", [
    ({"pid": "abc", "host": HOST}, "pid 'abc' is not a process id"),
    ([1, 2, 3], "JSON list, not an object"),
    ({"pid": 10 ** 30, "host": HOST}, "is not a process id"),
    ({"pid": -5, "host": HOST}, "is not a process id"),
    ({"pid": True, "host": HOST}, "is not a process id"),
    ({"pid": 123}, "host None"),
    ("null", "JSON null"),
    ("{not json", "empty or not JSON"),
    ("", "empty or not JSON"),
], ids=["pid-abc", "list", "huge-pid", "negative", "bool", "no-host", "null", "torn", "empty"])
def test_malformed_lock_is_stale_one_line(tmp_path, content, needle):
    line = _take(tmp_path, content)
    assert line.startswith("took over a stale lock of a malformed lock file (malformed lock file") and needle in line


def test_other_host_refused(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid"}))
    assert holder_status(lock_holder(tmp_path))[0] == "foreign"
    with pytest.raises(RunLocked, match="elsewhere.invalid"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("content", [{"pid": "abc", "host": HOST}, [1], {"pid": 10 ** 30, "host": HOST}, {"pid": 1, "host": HOST}])
def test_cli_does_not_refuse_a_stale_lock(tmp_path, content):
    """``scaleinv train``'s up-front check agrees: a malformed / planted lock is not 'in use'."""
    import argparse

    from scaleinv.cli.train import add_arguments, build_config
    (tmp_path / LOCK_NAME).write_text(json.dumps(content))
    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = build_config(p.parse_args(["--out", str(tmp_path), "--set", "steps=3"]))
    assert cfg.steps == 3
