"""``mlspec push`` and ``mlspec pull``: a model and its chain in an OCI registry (docs/storage.md#oci-registries)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from mlspec_attest.cli._errors import record_verdict
from mlspec_attest.cli._project import announce_trust, load_policy, resolve_log
from mlspec_attest.errors import EXIT_FAILED, EXIT_OK, InputError

PLAIN_HTTP_HELP = "Talk plain HTTP (loopback registries only: 127.0.0.1, ::1, localhost)."


def _reference(url: str) -> Any:
    from mlspec_attest.oci.reference import OciReference

    return OciReference.parse(url)


def _print_report(report: Any, fmt: str) -> None:
    if fmt == "json":
        import json

        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from mlspec_attest.render.text import render_text

        click.echo(render_text(report, color=sys.stdout is not None and sys.stdout.isatty()))


def verify_registry(url: str, policy: Any, *, plain_http: bool, log_dir: str | None, phase: str = "full",
                    releases: str | None = None) -> Any:
    """The gate over ``oci://...``: the chain referrers, the local policy, the artifact's layers."""
    from mlspec_attest.oci.gate import gate

    ref = _reference(url)
    with tempfile.TemporaryDirectory(prefix="mlspec-oci-") as work:
        return gate(ref, policy, Path(work), plain_http=plain_http, log_dir=log_dir, phase=phase,
                    releases=releases).report


@click.command()
@click.argument("bundle", type=click.Path(file_okay=False))
@click.argument("target", metavar="oci://HOST[:PORT]/REPO:TAG")
@click.option("--artifact", type=click.Path(), help="The packaged directory or file (default: the package "
              "stage's subject name, relative to the working directory).")
@click.option("--vsa", "vsa_path", type=click.Path(dir_okay=False),
              help="A signed VSA (from 'mlspec verify --vsa') to attach as its own referrer.")
@click.option("--policy", type=click.Path(dir_okay=False), help="Trust policy (default: mlspec.yaml's).")
@click.option("--log", "log_dir", type=click.Path(file_okay=False), help="The inference log (default: mlspec.yaml's).")
@click.option("--plain-http", is_flag=True, help=PLAIN_HTTP_HELP)
def push(bundle: str, target: str, artifact: str | None, vsa_path: str | None, policy: str | None,
         log_dir: str | None, plain_http: bool) -> None:
    """Push BUNDLE's packaged model to TARGET and attach the chain (and --vsa) as OCI referrers.

    The bundle is verified first (local policy, --artifact): only a model the gate binds is pushed.
    Exit 0 pushed; 1 the gate refused it (nothing pushed); 2 unusable input or registry error.
    """
    from mlspec_attest.oci.push import push as push_bundle
    from mlspec_attest.oci.registry import DigestMismatch
    from mlspec_attest.verify import verify_bundle

    ref = _reference(target)
    if ref.digest:
        raise InputError(f"{target}: push to a tag (oci://HOST/REPO:TAG); the digest is printed afterwards")
    policy_obj, origin = load_policy(policy, bundle)
    if artifact is None:
        artifact = _default_artifact(bundle, policy_obj)
    vsa = None
    if vsa_path:
        from mlspec_attest._internal.loaders import read_bounded

        vsa = read_bounded(vsa_path, what="VSA")
    report = verify_bundle(bundle, policy_obj, [artifact], log_dir=resolve_log(log_dir, bundle))
    if not report.passed:
        record_verdict(EXIT_FAILED)
        _print_report(report, "text")
        click.echo(f"refusing to push: {bundle} does not pass its gate for {artifact}", err=True)
        sys.exit(EXIT_FAILED)
    try:
        result = push_bundle(report, Path(bundle), Path(artifact), ref, plain_http=plain_http, vsa=vsa)
    except DigestMismatch as exc:
        raise InputError(f"{ref}: the registry's referrers index is unusable ({exc}); not attaching") from None
    click.echo(f"model:    {result.model} ({'pushed' if result.model_pushed else 'already there'})")
    click.echo(f"chain:    {result.chain} (referrer, via the {result.referrers_via})")
    if result.vsa:
        click.echo(f"vsa:      {result.vsa} (referrer)")
    for note in result.notes:
        click.echo(f"note:     {note}")
    click.echo(f"verify:   mlspec verify {result.model}{' --plain-http' if plain_http else ''}")
    announce_trust(policy_obj, origin)


def _default_artifact(bundle: str, policy: Any) -> str:
    """The package stage's single subject name, found from the working directory (as 'mlspec demo' prints it)."""
    from mlspec_attest.oci.package import PackageError, last_package, shipped_subjects
    from mlspec_attest.verify import verify_bundle

    try:
        subjects = shipped_subjects(last_package(verify_bundle(bundle, policy)))
    except PackageError as exc:
        raise InputError(f"{bundle}: {exc}") from None
    names = [str(s.get("name", "")) for s in subjects]
    if len(names) != 1 or not os.path.exists(names[0]):
        raise InputError(f"{bundle}: give --artifact (the packaged directory or file); the package stage ships "
                         f"{', '.join(names) or 'nothing'}, not found from here")
    return names[0]


@click.command()
@click.argument("source", metavar="oci://HOST[:PORT]/REPO@sha256:DIGEST")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--policy", type=click.Path(dir_okay=False), help="Trust policy (default: mlspec.yaml's).")
@click.option("--log", "log_dir", type=click.Path(file_okay=False), help="The inference log (default: mlspec.yaml's).")
@click.option("--plain-http", is_flag=True, help=PLAIN_HTTP_HELP)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def pull(source: str, directory: str, policy: str | None, log_dir: str | None, plain_http: bool, fmt: str) -> None:
    """Bring the model at SOURCE and its chain into DIRECTORY (new or empty): DIRECTORY/bundle, DIRECTORY/artifact.

    The chain is chosen and verified as 'mlspec verify oci://' does; if the gate fails nothing is written.
    Exit 0 pulled; 1 the gate failed; 2 unusable input or registry error.
    """
    from mlspec_attest.oci.pull import pull as pull_model

    ref = _reference(source)
    policy_obj, origin = load_policy(policy, None)
    result = pull_model(ref, policy_obj, Path(directory), plain_http=plain_http, log_dir=resolve_log(log_dir))
    verdict = record_verdict(EXIT_OK if result.report.passed else EXIT_FAILED)
    _print_report(result.report, fmt)
    if result.report.passed:
        click.echo(f"pulled: {directory}/bundle (chain {result.chosen.descriptor.digest if result.chosen else '?'}) "
                   f"and {directory}/artifact ({len(result.model.layers) if result.model else 0} files)", err=True)
    else:
        click.echo(f"nothing pulled: the gate failed for {ref}", err=True)
    announce_trust(policy_obj, origin)
    sys.exit(verdict)
