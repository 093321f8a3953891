"""Shared by tests/adversarial/test_hostile_*.py: a demo project to attack, commands run in a
subprocess with a hang guard, and a snapshot proving nothing outside the target changed."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HANG_GUARD = 60.0  # seconds: a hang guard, not a speed assertion (the machine is shared)
GIB = 1024 ** 3


@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    seconds: float


def mlspec(*args: str, cwd: Path, timeout: float = HANG_GUARD) -> Run:
    """Run the real console entry point in a child process; a hang fails the test instead of stalling it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("MLSPEC_KEY_PASSPHRASE", None)
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"'mlspec {' '.join(args)}' hung (killed after {timeout:.0f}s)")
    return Run(args, proc.returncode, proc.stdout.decode("utf-8", "replace"),
               proc.stderr.decode("utf-8", "replace"), time.monotonic() - start)


def refused(run: Run, *needles: str, codes: tuple[int, ...] = (1, 2)) -> None:
    """Exit 1 or 2, never a traceback; exit 2 is one 'error:' line; every needle is said somewhere."""
    both = run.stdout + run.stderr
    assert "Traceback" not in both, f"mlspec {' '.join(run.args)}: traceback\n{run.stderr}"
    assert run.code in codes, f"mlspec {' '.join(run.args)}: exit {run.code}\n{both}"
    if run.code == 2:
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for needle in needles:
        assert needle.lower() in both.lower(), (needle, both)


def snapshot(root: Path, *, skip: Path | None = None) -> dict[str, tuple[int, int, str]]:
    """(mode, size, sha256-or-link-target) of everything under ``root``, symlinks not followed."""
    out: dict[str, tuple[int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if skip is not None and here == skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            if skip is not None and p == skip:
                continue
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                content = "->" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest() if st.st_size < 1 << 20 else str(st.st_mtime_ns)
            else:
                content = ""
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size, content)
    return out


@dataclass
class Target:
    """A copy of the 13-stage demo project, with a directory of victims beside it."""

    root: Path  # the project (bundle/, logs/inference/, keys/ ...)
    outside: Path  # victims an attacker wants us to touch

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "inference"

    def outside_state(self) -> dict[str, tuple[int, int, str]]:
        """Everything in the test's directory except the project itself."""
        return snapshot(self.root.parent, skip=self.root)


def build_demo(directory: Path) -> Path:
    from mlspec_attest.demo.runner import run_demo

    saved = os.environ.pop("MLSPEC_KEY_PASSPHRASE", None)
    try:
        assert run_demo(directory, echo=lambda _line: None) == 0
    finally:
        if saved is not None:
            os.environ["MLSPEC_KEY_PASSPHRASE"] = saved
    return directory


def make_target(pristine: Path, tmp_path: Path) -> Target:
    root = tmp_path / "proj"
    shutil.copytree(pristine, root, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("do not touch\n")
    (outside / ".tmp-victim").write_text("a temp file of someone else's\n")
    (outside / "leaves.bin").write_bytes(b"\x01" * 64)
    return Target(root=root, outside=outside)


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space (and must never be read)."""
    if path.exists() or path.is_symlink():
        path.unlink()
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def fifo(path: Path) -> Path:
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path)
    return path


def device_link(path: Path, device: str = "/dev/zero") -> Path:
    if not os.path.exists(device):
        pytest.skip(f"{device} is absent on this machine")
    if path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(device)
    return path


_PRISTINE: list[Path] = []


def pristine_demo(factory: pytest.TempPathFactory) -> Path:
    """The demo project, built once per test session and copied by each test (it is never attacked itself)."""
    if not _PRISTINE:
        _PRISTINE.append(build_demo(factory.mktemp("pristine-demo") / "demo"))
    return _PRISTINE[0]
