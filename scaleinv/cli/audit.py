"""``scaleinv audit MODULE:FACTORY``: homogeneity audit of a JAX/flax or a PyTorch model.

The factory (``package.module:function`` or ``path/file.py:function``) is called with the
``--kw key=value`` arguments and returns ``(apply_fn, params, example_batch)`` or
``(apply_fn, params, example_batch, options)``; ``apply_fn(params, batch)`` returns the loss (or
``(loss, aux)``). A PyTorch factory returns ``(model, batch)`` or ``(model, batch, options)``
with ``model`` an ``nn.Module`` (audited by :func:`scaleinv.torch.audit.audit`; options may add
``loss_fn``; ``--group`` regexes match dotted parameter names; ``--x64`` converts the model and
the float batch tensors to float64). Options (target_group, target_degree, expect, groups, ...) are defaults that
the flags below override. Prints a table (rich) and the verdict; ``--json PATH`` writes the
full report, ``--markdown PATH`` a README-ready table.

Exit status: 0 if the target is met (loss ``--target-degree``-homogeneous in
``--target-group`` and every ``--expect`` holds) or no target was given, 1 otherwise, 2 on bad
arguments (one line ``scaleinv audit: error: ...``: unknown module / file / function, bad flags,
unwritable ``--json`` / ``--markdown``, checked before the audit runs; nothing written; also a
factory that raises, calls ``SystemExit`` or has not returned within ``--factory-timeout`` seconds,
default 300).

Examples::

    scaleinv audit sibert.audit_factories:sibert --json runs/audit_sibert.json
    scaleinv audit sibert.audit_factories:bert --max-depth 3
    scaleinv audit scaleinv.audit.examples:toy_stack --kw softmax_at=1
    scaleinv audit scaleinv.torch.examples:hf_bert --max-depth 5
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import math
import re
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("factory", help="MODULE:FUNCTION returning (apply_fn, params, example_batch[, options])")
    parser.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the factory (value parsed as a Python literal)")
    parser.add_argument("--target-group", default=None,
                        help="group in which the loss should be --target-degree-homogeneous (default: factory's or 'all')")
    parser.add_argument("--target-degree", type=int, default=None, help="target degree of the loss (e.g. 0)")
    parser.add_argument("--group", action="append", default=[], metavar="NAME=REGEX",
                        help="user group: the parameters whose path a/b/c matches REGEX")
    parser.add_argument("--expect", action="append", default=[], metavar="REGEX=(IN;OUT)",
                        help="expected in-situ degrees of the tensors whose name matches REGEX, e.g. "
                             "'encoder/layer_\\d+=(2;2)'")
    parser.add_argument("--depths", default=None, help="prefix depths of the automatic groups (default 1,2)")
    parser.add_argument("--scales", default=None, help="comma-separated scales c (default 1e-2..1e2, 9 points)")
    parser.add_argument("--input-degrees", default=None, help="trial input degrees x of the signatures (default 0,1,2,3)")
    parser.add_argument("--rtol", type=float, default=None, help="relative residual tolerance (default by dtype)")
    parser.add_argument("--no-signatures", action="store_true", help="skip the local Table-2 signatures (faster)")
    parser.add_argument("--exact-point", action="store_true",
                        help="audit params as given (default: zero leaves such as zero-initialised biases "
                             "are randomised first so that they cannot hide a break)")
    parser.add_argument("--x64", action="store_true", help="run the factory and the audit in float64 mode")
    parser.add_argument("--max-depth", type=int, default=None, help="hide module rows deeper than this (flagged rows always shown)")
    parser.add_argument("--table-groups", default=None, help="comma-separated groups shown as table columns")
    parser.add_argument("--show-identity", action="store_true", help="also show parameter-free identity calls (Dropout)")
    parser.add_argument("--factory-timeout", type=float, default=FACTORY_TIMEOUT_S, metavar="SECONDS",
                        help=f"time limit for the factory call (default {FACTORY_TIMEOUT_S:g} s): a factory "
                             "that has not returned by then is refused (one line, exit 2)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the full report as JSON")
    parser.add_argument("--markdown", default=None, metavar="PATH", help="write the table as GitHub markdown")


FACTORY_TIMEOUT_S = 300.0
WATCHDOG_GRACE_S = 10.0


class FactoryTimeout(BaseException):
    """The factory did not return within ``--factory-timeout`` (a BaseException, so that no
    ``except Exception`` inside the factory swallows it)."""


@contextlib.contextmanager
def _time_limit(seconds: float, message: str):
    """Raise :class:`FactoryTimeout` in the main thread after ``seconds`` (SIGALRM); if that
    cannot land (code that never returns to the interpreter), a watchdog thread prints
    ``message`` and ends the process with exit 2 ``WATCHDOG_GRACE_S`` later."""
    import os
    import signal
    import threading
    import time

    t0 = time.monotonic()

    def on_alarm(signum, frame):
        if time.monotonic() - t0 >= seconds - 0.05:
            raise FactoryTimeout()
        if callable(old):   # an earlier alarm of someone else's (e.g. pytest-timeout): theirs
            old(signum, frame)

    def last_resort():
        print(message, file=sys.stderr, flush=True)
        os._exit(2)

    main = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    old = signal.signal(signal.SIGALRM, on_alarm) if main else None
    prev = 0.0
    if main:   # another ITIMER_REAL already running (pytest-timeout): the earlier deadline first, theirs kept
        prev = signal.setitimer(signal.ITIMER_REAL, seconds)[0]
        if 0 < prev < seconds:
            signal.setitimer(signal.ITIMER_REAL, prev)
    dog = threading.Timer(seconds + (WATCHDOG_GRACE_S if main else 0.0), last_resort)
    dog.daemon = True
    dog.start()
    try:
        yield
    finally:
        dog.cancel()
        if main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            if prev > 0:
                signal.setitimer(signal.ITIMER_REAL, max(prev - (time.monotonic() - t0), 0.001))


def _pairs(items, what):
    out = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"{what} must be NAME=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _ints(s, what):
    try:
        return tuple(int(v) for v in s.split(","))
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {s!r}") from None


def _is_torch_result(res) -> bool:
    """A torch factory returns (nn.Module, batch[, options]); torch is only looked at when the
    factory itself imported it."""
    torch = sys.modules.get("torch")
    return (torch is not None and isinstance(res, (tuple, list)) and len(res) > 0
            and isinstance(res[0], torch.nn.Module))


def _double_batch(batch):
    import torch

    def conv(v):
        return v.double() if torch.is_tensor(v) and v.is_floating_point() else v
    if isinstance(batch, dict):
        return {k: conv(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(conv(v) for v in batch)
    return conv(batch)


def _check_factory_spec(spec: str) -> None:
    """UsageError unless ``spec`` names an importable module / existing file (no import yet)."""
    import importlib.util
    from pathlib import Path

    from scaleinv.usage import UsageError

    if ":" not in spec:
        raise UsageError(f"factory must be 'module:function' (or 'path/file.py:function'), got {spec!r}")
    mod, fn = spec.rsplit(":", 1)
    if not fn.isidentifier():
        raise UsageError(f"factory: {fn!r} is not a function name (in {spec!r})")
    if mod.endswith(".py"):
        if not Path(mod).is_file():
            raise UsageError(f"factory: file {mod!r} does not exist")
        return
    try:
        found = importlib.util.find_spec(mod)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise UsageError(f"factory: no module named {mod!r} (give package.module:function or path/file.py:function)")


def run(args) -> int:
    from pathlib import Path

    from scaleinv.usage import UsageError, check_output_file, optional_check

    _check_factory_spec(args.factory)
    for flag, path in (("--json", args.json), ("--markdown", args.markdown)):
        optional_check(check_output_file, path, flag)
    if args.max_depth is not None and args.max_depth < 0:
        raise UsageError(f"--max-depth: must be >= 0, got {args.max_depth}")
    if args.rtol is not None and not args.rtol > 0:
        raise UsageError(f"--rtol: must be > 0, got {args.rtol}")
    if not (math.isfinite(args.factory_timeout) and args.factory_timeout > 0):
        raise UsageError(f"--factory-timeout: must be a finite number of seconds > 0, got {args.factory_timeout}")

    import jax

    from scaleinv.audit import audit, call_factory, mask_from_regex
    from scaleinv.audit.factory import unpack_factory_result

    try:
        kwargs = {}
        for k, v in _pairs(args.kw, "--kw").items():
            try:
                kwargs[k] = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                kwargs[k] = v
        expect_cli = _pairs(args.expect, "--expect")
        groups_cli = _pairs(args.group, "--group")
        depths = _ints(args.depths, "--depths") if args.depths else None
        in_deg = _ints(args.input_degrees, "--input-degrees") if args.input_degrees else None
        scales = tuple(float(v) for v in args.scales.split(",")) if args.scales else None
        table_groups = [g.strip() for g in args.table_groups.split(",")] if args.table_groups else None
    except ValueError as e:
        raise UsageError(str(e)) from None

    ctx = jax.enable_x64(True) if args.x64 else contextlib.nullcontext()
    with ctx:
        try:
            limit = args.factory_timeout
            timeout_msg = (f"scaleinv audit: error: factory {args.factory}: did not return within --factory-timeout "
                           f"{limit:g} s; allowed: a function returning (apply_fn, params, example_batch[, options]) "
                           f"within the limit (raise it with --factory-timeout SECONDS)")
            try:
                with _time_limit(limit, timeout_msg):
                    res = call_factory(args.factory, **kwargs)
            except FactoryTimeout:
                raise UsageError(timeout_msg) from None
            except (ValueError, ImportError, AttributeError, TypeError):
                raise
            except SystemExit as e:   # a factory's exit must not pass for a (silent) successful audit
                raise UsageError(f"factory {args.factory}: called SystemExit({e.code!r}) instead of returning; "
                                 f"allowed: a function returning (apply_fn, params, example_batch[, options])") from None
            except Exception as e:
                msg = " ".join(str(e).split())[:300]
                raise UsageError(f"factory {args.factory}: raised {type(e).__name__}: {msg}; allowed: a function "
                                 f"returning (apply_fn, params, example_batch[, options])") from None
            torch_model = _is_torch_result(res)
            if torch_model:
                from scaleinv.torch.audit import group_from_regex, unpack_factory_result as unpack_torch

                model, batch, options = unpack_torch(res, args.factory)
                if args.x64:
                    model = model.double()
                    batch = _double_batch(batch)
            else:
                apply_fn, params, batch, options = unpack_factory_result(res, args.factory)
            groups = dict(options.get("groups", {}))
            for name, rx in groups_cli.items():
                groups[name] = group_from_regex(rx) if torch_model else mask_from_regex(params, rx)
            expect = dict(options.get("expect", {}))
            expect.update(expect_cli)
            kw = dict(groups=groups, expect=expect,
                      target_group=args.target_group or options.get("target_group", "all"),
                      target_degree=args.target_degree if args.target_degree is not None
                      else options.get("target_degree"),
                      rtol=args.rtol, signatures=not args.no_signatures, generic=not args.exact_point)
            for name, val in (("depths", depths), ("input_degrees", in_deg), ("scales", scales)):
                if val is not None:
                    kw[name] = val
                elif name in options:
                    kw[name] = options[name]
            for rx in expect:
                re.compile(rx)
        except (ValueError, re.error, ImportError, AttributeError, TypeError) as e:
            raise UsageError(f"factory {args.factory}: {type(e).__name__}: {e}") from None
        try:
            if torch_model:
                from scaleinv.torch.audit import audit as torch_audit

                report = torch_audit(model, batch, loss_fn=options.get("loss_fn"), **kw)
            else:
                report = audit(apply_fn, params, batch, **kw)
        except (ValueError, re.error) as e:
            raise UsageError(str(e)) from None
    try:
        report.print_table(max_depth=args.max_depth, groups=table_groups, show_identity=args.show_identity)
        if args.markdown:
            Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(args.markdown).write_text(report.to_markdown(max_depth=args.max_depth, groups=table_groups,
                                                              show_identity=args.show_identity))
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(f"wrote {report.write_json(args.json)}")
    met = report.target_met
    return 0 if met in (None, True) else 1
