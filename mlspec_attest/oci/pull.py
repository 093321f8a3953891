"""``mlspec pull oci://HOST/REPO@sha256:... DIR``: the chain the gate chose and the model's files, or nothing.

Everything is written into a private temporary directory inside DIR and renamed into
place only when every byte has been checked; on any error DIR is left as it was (removed
again if pull created it), and nothing is ever written outside DIR. Layer names are validated as plain relative
paths before any file is created.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from mlspec_attest.errors import InputError
from mlspec_attest.oci.gate import GateResult, gate
from mlspec_attest.oci.layout import LayoutError, check_title
from mlspec_attest.oci.reference import OciReference
from mlspec_attest.oci.registry import DigestMismatch
from mlspec_attest.policy import Policy

BUNDLE_DIR = "bundle"
ARTIFACT_DIR = "artifact"


def check_target(target: Path) -> None:
    """DIR must not exist, or be an empty real directory (never a symlink)."""
    if target.is_symlink():
        raise InputError(f"{target}: is a symlink; pull into a new directory")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{target}: exists and is not an empty directory; pull into a new one (nothing was written)")
    if not target.parent.is_dir():
        raise InputError(f"{target.parent}: no such directory")


def pull(ref: OciReference, policy: Policy, target: Path, *, plain_http: bool = False, now: datetime | None = None,
         log_dir: str | os.PathLike[str] | None = None) -> GateResult:
    """Gate on the model at ``ref``; when it passes, write DIR/bundle and DIR/artifact (else leave DIR as it was)."""
    check_target(target)
    created = not target.exists()
    target.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mlspec-pull-", dir=target))  # inside DIR: nothing written elsewhere
    done = False
    try:
        result = gate(ref, policy, staging / "chains", plain_http=plain_http, now=now, log_dir=log_dir)
        if not result.report.passed or result.chosen is None or result.model is None:
            return result
        os.rename(result.chosen.root, staging / BUNDLE_DIR)
        _download_layers(result, staging / ARTIFACT_DIR)
        for name in (BUNDLE_DIR, ARTIFACT_DIR):  # every byte checked: now move into place
            os.rename(staging / name, target / name)
        done = True
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            for name in (BUNDLE_DIR, ARTIFACT_DIR):
                shutil.rmtree(target / name, ignore_errors=True)
            if created:
                shutil.rmtree(target, ignore_errors=True)


def _download_layers(result: GateResult, root: Path) -> None:
    from mlspec_attest._internal import files as safe

    assert result.model is not None
    layers = result.model.layers
    try:
        titles = [check_title(layer.title, f"{result.client.ref} layer") for layer in layers]
    except LayoutError as exc:
        raise InputError(str(exc)) from None
    need = sum(layer.size for layer in layers)
    free = shutil.disk_usage(root.parent).free
    if need > free:
        raise InputError(f"{root.parent}: the model's layers need {need} bytes, only {free} are free; nothing written")
    root.mkdir()
    for title, layer in zip(titles, layers):
        parent, _, name = title.rpartition("/")
        if parent:
            safe.make_dirs(root, parent)
        with safe.open_dir(root, parent) as dir_fd:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as sink:
            try:
                result.client.fetch_blob(layer, sink, limit=layer.size)
            except DigestMismatch as exc:
                raise InputError(f"{result.client.ref}: layer {title}: {exc}; nothing written") from None
