"""``mlspec hash PATH...``: the digests ``mlspec attest`` would record, sha256sum-style.

Useful to check an artifact by hand before deploying it, and as the benchmark's
entry point (benchmarks/run.py). Directories print their OpenSSF model-signing
subject digest (docs/performance.md, mlspec_attest/digests.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from mlspec_attest.cli._errors import remember_format
from mlspec_attest.cli._project import ProjectPath
from mlspec_attest.errors import InputError


def _relative_ignores(root: str, ignores: tuple[str, ...]) -> list[str]:
    """``--ignore`` paths as model-signing's CLI reads them (cwd-relative or absolute), made root-relative.

    model-signing silently drops an ignore path outside the model; we refuse it, since a
    typo would otherwise change the digest without a word.
    """
    if not ignores:
        return []
    real_root = Path(root).resolve()
    out = []
    for ig in ignores:
        candidate = Path(os.path.abspath(ig))
        try:
            out.append(candidate.relative_to(Path(os.path.abspath(root))).as_posix())
            continue
        except ValueError:
            pass
        try:
            out.append(candidate.resolve().relative_to(real_root).as_posix())
        except (ValueError, OSError, RuntimeError):
            raise InputError(f"--ignore {ig}: not inside the directory {root}; give a path inside it") from None
    return out


@click.command("hash")
@click.argument("paths", nargs=-1, required=True, type=ProjectPath())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              is_eager=True, callback=remember_format,
              help="text: 'SHA256  PATH' lines like sha256sum; json: digests with size and manifest digest.")
@click.option("--files", "list_files", is_flag=True, help="For directories, also print every file's digest.")
@click.option("--ignore", "ignores", multiple=True, metavar="PATH",
              help="Leave PATH (inside the directory; a folder leaves out all below it) out of the digest, "
                   "like model-signing's --ignore-paths. Repeatable.")
@click.option("--ignore-git-paths/--no-ignore-git-paths", "default_ignores", default=True, show_default=True,
              help="Leave out top-level .git, .gitattributes, .github, .gitignore and model.sig, "
                   "as model-signing does by default.")
@click.option("--oms", is_flag=True,
              help="For files, print model-signing's subject (sha256 over the file's raw sha256) "
                   "instead of the file's sha256. Directories print the same either way.")
@click.option("--method", type=click.Choice(["files", "shards"]), default=None,
              help="model-signing's serialisation: 'shards' hashes fixed byte ranges of every file in parallel "
                   "(one big file on every core) and prints model-signing's subject for it. Default: files.")
@click.option("--hash", "hash_type", type=click.Choice(["sha256", "blake3"]), default=None,
              help="model-signing's hash: blake3 (multithreaded; model-signing does not shard it). Default: sha256.")
@click.option("--shard-size", type=click.IntRange(min=1), default=None, metavar="BYTES",
              help="Shard size for --method shards (model-signing's default: 1000000000).")
def hash_command(paths: tuple[str, ...], fmt: str, list_files: bool, ignores: tuple[str, ...],
                 default_ignores: bool, oms: bool, method: str | None, hash_type: str | None,
                 shard_size: int | None) -> None:
    """Print the sha256 of files, and the directory digest of directories.

    \b
    A directory digest is the OpenSSF model-signing subject: sha256 over the raw
    sha256 of each regular file, in model-signing's path order (component by
    component), without top-level .git* files and model.sig; equal to what
    `model_signing sign` signs. The manifest digest also binds names and the
    files left out (docs/format.md).
    """
    from mlspec_attest.digests import SHARD_SIZE, digest_path

    if shard_size is not None and method != "shards":
        raise InputError("--shard-size belongs to --method shards")
    if method is not None or hash_type is not None:
        _oms_hashes(paths, fmt, list_files, ignores, default_ignores, method or "files", hash_type or "sha256",
                    shard_size or SHARD_SIZE)
        return
    records = []
    for p in paths:
        d = digest_path(p, ignore=_relative_ignores(p, ignores) if os.path.isdir(p) else (),
                        default_ignores=default_ignores)
        if fmt == "json":
            rec = {"path": p, "sha256": d.sha256, "oms_sha256": d.oms_sha256, "size": d.size, "directory": d.is_dir}
            if d.is_dir:
                rec["manifest_sha256"] = d.manifest_sha256
                rec["ignored"] = [rel for rel, _ in d.ignored]
                if list_files:
                    rec["files"] = [{"path": rel, "sha256": h} for rel, h in d.files]
            records.append(rec)
            continue
        shown = d.oms_sha256 if oms else d.sha256
        click.echo(f"{shown}  {p}{'/' if d.is_dir and not p.endswith('/') else ''}")
        if d.is_dir and list_files:
            base = p.rstrip("/")
            for rel, h in d.files:
                click.echo(f"{h}  {base}/{rel}")
    if fmt == "json":
        click.echo(json.dumps(records, indent=2))


def _oms_hashes(paths: tuple[str, ...], fmt: str, list_files: bool, ignores: tuple[str, ...], default_ignores: bool,
                method: str, hash_type: str, shard_size: int) -> None:
    """model-signing's subject digest (and resources) for a chosen serialisation; equal to its own."""
    from mlspec_attest.digests import oms_digest

    records = []
    for p in paths:
        d = oms_digest(p, method=method, hash_type=hash_type, shard_size=shard_size,
                       ignore=_relative_ignores(p, ignores) if os.path.isdir(p) else (),
                       default_ignores=default_ignores)
        if fmt == "json":
            rec: dict[str, object] = {"path": p, "oms_sha256": d.subject_sha256, "size": d.size,
                                      "serialization": d.serialization}
            if list_files:
                rec["resources"] = [{"name": n, "algorithm": a, "digest": h} for n, a, h in d.resources]
            records.append(rec)
            continue
        click.echo(f"{d.subject_sha256}  {p}")
        if list_files:
            for name, algorithm, digest in d.resources:
                click.echo(f"{digest}  {name}  ({algorithm})")
    if fmt == "json":
        click.echo(json.dumps(records, indent=2))


hash = hash_command  # the name cli.py's LAZY table points at


if __name__ == "__main__":  # until cli.py registers it: python -m mlspec_attest.cli.hash PATH...
    hash_command()
