"""``mlspec hash PATH...``: the digests ``mlspec attest`` would record, sha256sum-style.

Useful to check an artifact by hand before deploying it, and as the benchmark's
entry point (benchmarks/run.py). Directories print their OpenSSF model-signing
subject digest (docs/performance.md, mlspec_attest/digests.py).
"""

from __future__ import annotations

import json

import click


@click.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: 'SHA256  PATH' lines like sha256sum; json: digests with size and manifest digest.")
@click.option("--files", "list_files", is_flag=True, help="For directories, also print every file's digest.")
def hash_command(paths: tuple[str, ...], fmt: str, list_files: bool) -> None:
    """Print the sha256 of files, and the directory digest of directories.

    \b
    A directory digest is sha256 over the raw sha256 of each regular file in sorted
    path order (the OpenSSF model-signing subject); the manifest digest also binds names.
    """
    from mlspec_attest.digests import digest_path

    records = []
    for p in paths:
        d = digest_path(p)
        if fmt == "json":
            rec = {"path": p, "sha256": d.sha256, "size": d.size, "directory": d.is_dir}
            if d.is_dir:
                rec["manifest_sha256"] = d.manifest_sha256
                if list_files:
                    rec["files"] = [{"path": rel, "sha256": h} for rel, h in d.files]
            records.append(rec)
            continue
        click.echo(f"{d.sha256}  {p}{'/' if d.is_dir and not p.endswith('/') else ''}")
        if d.is_dir and list_files:
            base = p.rstrip("/")
            for rel, h in d.files:
                click.echo(f"{h}  {base}/{rel}")
    if fmt == "json":
        click.echo(json.dumps(records, indent=2))


hash = hash_command  # the name cli.py's LAZY table points at


if __name__ == "__main__":  # until cli.py registers it: python -m mlspec_attest.cli.hash PATH...
    hash_command()
