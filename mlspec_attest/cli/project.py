"""``mlspec init`` and ``mlspec demo``: a working project, and the end-to-end example."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--no-passphrase", is_flag=True,
              help="Write unencrypted keys (throwaway projects only); otherwise the passphrase comes from "
                   "MLSPEC_KEY_PASSPHRASE or a terminal, and init refuses without one.")
@click.option("--project", "project", metavar="NAME",
              help="Project name the policies pin and objectives.yaml declares (default: the directory's name).")
def init(directory: str, no_passphrase: bool, project: str | None) -> None:
    """Create a working project: mlspec.yaml, policy, keys, objectives template, empty bundle.

    Private keys are encrypted and git-ignored (*.key in .gitignore and keys/.gitignore).
    """
    from mlspec_attest.project import init_project

    for line in init_project(Path(directory), encrypt=not no_passphrase, project=project):
        click.echo(line)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False), default="demo-project")
@click.option("--fail-objective", is_flag=True, help="Train a deliberately weak model; the gate must refuse it.")
@click.option("--pipeline-key", metavar="URI",
              help="Sign the pipeline's stages with this token key (pkcs11:...; PIN from MLSPEC_PKCS11_PIN).")
@click.option("--bundle", "bundle", metavar="s3://BUCKET/PREFIX",
              help="Append the chain to an (empty) S3 prefix instead of DIRECTORY/bundle (docs/storage.md).")
def demo(directory: str, fail_objective: bool, pipeline_key: str | None, bundle: str | None) -> None:
    """Run a real 13-stage ML pipeline, attest every stage, then verify it."""
    from mlspec_attest.demo.runner import run_demo

    sys.exit(run_demo(Path(directory), fail_objective=fail_objective, echo=click.echo, pipeline_key=pipeline_key,
                      bundle=bundle))

