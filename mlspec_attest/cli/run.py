"""``mlspec run``: operations on whole pipeline runs (chains), such as branching a re-run."""

from __future__ import annotations

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup
from mlspec_attest.cli._project import ProjectPath, announce_trust, load_policy
from mlspec_attest.errors import InputError


@click.group("run", cls=ErrorHandlingGroup)
def run() -> None:
    """Operations on pipeline runs (one chain each)."""


@run.command("branch")
@click.argument("bundle", type=ProjectPath(file_okay=False))
@click.option("--from", "sequence", required=True, type=int, metavar="SEQUENCE",
              help="The last attestation to keep: 0..SEQUENCE are copied, the next attest appends SEQUENCE+1.")
@click.argument("new_bundle", type=ProjectPath(file_okay=False))
@click.option("--policy", type=ProjectPath(dir_okay=False), help="Trust policy the prefix must verify under "
              "(default: mlspec.yaml's).")
@click.option("--key", "key_paths", multiple=True, type=ProjectPath(dir_okay=False),
              help="Sign a chain head for the new bundle with this key (the policy's head signer); "
                   "default: mlspec.yaml's head key. Without one no head is written; sign the first with "
                   "'mlspec attest head --initial' (appends refuse a chain without a head).")
@click.option("--expires", help="How long that head stays valid, e.g. 24h (default 24h).")
def run_branch(bundle: str, sequence: int, new_bundle: str, policy: str | None, key_paths: tuple[str, ...],
               expires: str | None) -> None:
    """Start NEW_BUNDLE from the verified prefix 0..SEQUENCE of BUNDLE (a re-run after a fix).

    \b
    The prefix is verified under the policy first (signatures, links, the signed head);
    a chain that does not verify up to SEQUENCE is refused (exit 1, nothing written).
    Attestations are copied byte for byte, with the blobs, evidence and time-stamp
    tokens they name; NEW_BUNDLE/branch.json records where the run came from.

    \b
    Example (package was wrong; keep objectives..test, sequences 0-8):
      mlspec run branch bundle --from 8 bundle-rerun --key keys/pipeline.key
      mlspec attest stage package --bundle bundle-rerun ...
    """
    from mlspec_attest.branch import branch_bundle

    if sequence < 0:
        raise InputError(f"--from {sequence}: expected a sequence number 0 or more")
    valid_for = None
    if expires is not None:
        if not key_paths:
            raise InputError("--expires is the validity of the head signed with --key; give --key too")
        from mlspec_attest.policy import parse_duration

        valid_for = parse_duration(expires, "--expires")
    signers: tuple[object, ...] = ()
    if not key_paths:
        from mlspec_attest.cli._project import project_from_cwd

        project = project_from_cwd()
        if project is not None and project.head_key is not None:
            key_paths = (str(project.head_key),)  # as every append inside the project re-signs it
    if key_paths:
        from mlspec_attest.keys import load_signer

        signers = tuple(load_signer(k) for k in key_paths)
    policy_obj, origin = load_policy(policy, bundle)
    result = branch_bundle(bundle, sequence, new_bundle, policy_obj, head_signers=signers, head_valid_for=valid_for)
    note = result.note
    click.echo(f"branched {bundle} at sequence {note.from_sequence} (of {note.source_sequence}) -> {result.target}: "
               f"{note.from_sequence + 1} attestation(s), genesis {note.genesis[:16]}…, "
               f"{len(result.copied)} file(s) copied")
    click.echo("signed a chain head for sequence " f"{note.from_sequence}" if result.head_signed
               else "no chain head written: sign its first with 'mlspec attest head --initial --bundle "
               f"{result.target} --key K' before appending (appends refuse a chain that has no head)")
    announce_trust(policy_obj, origin)
