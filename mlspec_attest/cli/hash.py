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
def hash_command(paths: tuple[str, ...], fmt: str, list_files: bool, ignores: tuple[str, ...],
                 default_ignores: bool, oms: bool) -> None:
    """Print the sha256 of files, and the directory digest of directories.

    \b
    A directory digest is the OpenSSF model-signing subject: sha256 over the raw
    sha256 of each regular file, in model-signing's path order (component by
    component), without top-level .git* files and model.sig; equal to what
    `model_signing sign` signs. The manifest digest also binds names and the
    files left out (docs/format.md).
    """
    from mlspec_attest.digests import digest_path

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


hash = hash_command  # the name cli.py's LAZY table points at


if __name__ == "__main__":  # until cli.py registers it: python -m mlspec_attest.cli.hash PATH...
    hash_command()
