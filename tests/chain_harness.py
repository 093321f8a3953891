"""Long chains for the verifier's tests: benchmarks/make_chain.py with chosen monitor and log metadata."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import make_chain  # noqa: E402


def patched_chain(tmp_path: Path, n: int, *, pad: int = 0, monitor_patch: Any = None, log_patch: Any = None) -> Path:
    """``make_chain.build(n)`` under tmp_path/c; ``*_patch(sequence, metadata)`` edits the repeated
    monitors' and logs' metadata (signed as RFC 8785, like every other statement)."""
    mp = pytest.MonkeyPatch()
    for name, patch in (("_monitor_metadata", monitor_patch), ("_log_metadata", log_patch)):
        if patch is not None:
            real = getattr(make_chain, name)
            mp.setattr(make_chain, name, lambda i, real=real, patch=patch: patch(12 + i, real(i)))
            mp.setattr(make_chain, "_fast_canonical", make_chain.canonicalize)
    try:
        make_chain.build(n, tmp_path / "c", pad=pad)
    finally:
        mp.undo()
    return tmp_path / "c"


def fresh_cel_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A process that has parsed no CEL: no parser, no environment, no trees read; a private cache
    directory under tmp_path. Returns the reset, to call again for "the next process"."""
    from celpy.celparser import CELParser

    from mlspec_attest.objectives import cel

    def reset() -> None:
        monkeypatch.setattr(CELParser, "CEL_PARSER", None)
        monkeypatch.setattr(cel, "_ENV", None)
        monkeypatch.setattr(cel, "_TREES", None)
        monkeypatch.setattr(cel, "_COMPILED", {})

    monkeypatch.delenv("MLSPEC_CEL_CACHE", raising=False)
    monkeypatch.setenv("MLSPEC_CACHE_DIR", str(tmp_path / "cache"))
    reset()
    return reset
