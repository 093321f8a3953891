"""Per-attestation verification work spread over cores, for long chains.

Verifying one attestation (strict JSON, DSSE decode, the RFC 8785 canonical-form
check, in-toto Statement validation, signature checks) is independent of every
other one; only the chain, stage, flow and objective checks need them all. A
10,000-attestation chain (monitor and log repeat for the life of a model) spends
almost all its time in that per-file part, most of it pure Python holding the GIL,
so threads would not help: chunks of files go to a forked process pool instead.

Results are identical to the serial loop, in the same order: each worker runs the
verifier's own ``_parse`` on a contiguous slice into a private Report, and the parent
appends the findings slice by slice. Children inherit the files through fork (no
pickling of inputs); entries come back without their file bytes and are re-joined
with the parent's BundleFile. Short chains, non-Linux hosts and processes that
already run other threads (forking those is unsafe) take the serial path, and so
does a machine whose load already exceeds its cores; ``MLSPEC_VERIFY_WORKERS=N``
overrides the worker count (benchmarks, debugging).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from typing import Any, Sequence

PARALLEL_MIN = 200  # below this, starting processes costs more than it saves
CHUNKS_PER_WORKER = 4  # a few chunks each, so a slow core does not hold the rest up

_STATE: tuple[Any, Sequence[Any], Any] | None = None  # (verifier, files, report) inherited by fork


def cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def oversubscribed() -> bool:
    """True when runnable tasks already exceed the cores by half a core or more (1-min load).

    Extra processes then only add fork and pickling work without finding an idle core
    (measured: a 10,000-chain took 1.3x longer with 2 workers at load 4.5 on 2 cores),
    so, like ``make --load-average``, we fall back to one process.
    """
    try:
        return os.getloadavg()[0] >= cpus() + 0.5
    except (AttributeError, OSError):  # pragma: no cover
        return False


def workers_for(env_var: str, requested: int | None = None, *, processes: bool = True) -> int:
    """Worker count: explicit argument, else ``env_var``, else the cores.

    For process pools (``processes``) an oversubscribed machine gets 1: forking and
    pickling only pay off on an idle core. Threads cost nothing extra, so they always
    get the cores.
    """
    if requested:
        return requested
    forced = os.environ.get(env_var, "").strip()
    if forced.isdigit() and int(forced) > 0:
        return int(forced)
    return 1 if processes and oversubscribed() else cpus()


def fork_context() -> Any:
    """A fork start context when forking is safe and cheap here, else None."""
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    import multiprocessing

    try:
        return multiprocessing.get_context("fork")
    except ValueError:  # pragma: no cover
        return None


def _parse_slice(bounds: tuple[int, int]) -> tuple[list[Any], list[Any]]:
    """Worker: run the verifier's own per-file checks on files[start:stop]."""
    assert _STATE is not None
    verifier, files, report = _STATE
    local = dataclasses.replace(report, findings=[], stages=[], objectives=[], artifacts=[])
    entries = []
    for bf in files[bounds[0]:bounds[1]]:
        entry = verifier._parse(bf, local)
        if entry is not None:
            entry = dataclasses.replace(entry, file=None)  # the parent has the bytes already
        entries.append(entry)
    return entries, local.findings


def parse_entries(verifier: Any, files: Sequence[Any], report: Any, *, workers: int | None = None) -> list[Any]:
    """``[verifier._parse(bf, report) for bf in files]`` minus the Nones, on every core when it pays."""
    global _STATE
    workers = workers_for("MLSPEC_VERIFY_WORKERS", workers)
    ctx = fork_context() if len(files) >= PARALLEL_MIN and workers > 1 else None
    if ctx is None:
        return [e for e in (verifier._parse(bf, report) for bf in files) if e is not None]
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    n = len(files)
    parts = min(n, workers * CHUNKS_PER_WORKER)
    bounds = [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]
    _STATE = (verifier, files, report)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(pool.map(_parse_slice, bounds))
    except (BrokenProcessPool, OSError):  # a worker died (OOM killer, fork refused): do it here
        return [e for e in (verifier._parse(bf, report) for bf in files) if e is not None]
    finally:
        _STATE = None
    out = []
    for (start, _), (entries, findings) in zip(bounds, results):
        report.findings.extend(findings)
        for offset, entry in enumerate(entries):
            if entry is not None:
                out.append(dataclasses.replace(entry, file=files[start + offset]))
    return out
