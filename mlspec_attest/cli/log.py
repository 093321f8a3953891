"""``mlspec log``: per-inference logs sealed into the attestation chain (loaded lazily by cli.main).

Exit status as everywhere: 0 ok, 1 verification ran and failed, 2 unusable input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup, echo_json, json_format_option, record_verdict, remember_format
from mlspec_attest.cli._passphrase import passphrase_file_option
from mlspec_attest.cli._project import ProjectPath
from mlspec_attest.errors import EXIT_FAILED, EXIT_OK, InputError

DEFAULT_LOG = "inference-log"



def _default_log(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    from mlspec_attest.cli._project import in_project, resolve_log

    return value or resolve_log(None, None) or in_project(DEFAULT_LOG)


_log_option = click.option("--log", "log_dir", callback=_default_log, type=ProjectPath(file_okay=False),
                           help=f"log directory (default: mlspec.yaml's log:, else {DEFAULT_LOG})")


@click.group("log", cls=ErrorHandlingGroup)
def log() -> None:
    """Per-inference records as a Merkle tree, sealed by signed 'log' attestations."""


def _read_jsonl(stream: TextIO | Any, source: str) -> Iterator[dict[str, Any]]:
    from mlspec_attest._internal.files import read_lines
    from mlspec_attest.model.canonical import parse_json

    lines = read_lines(stream, source) if hasattr(stream, "readline") else stream  # each record bounded
    for no, raw in enumerate(lines, 1):
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if not raw.strip():
            continue
        obj = parse_json(raw, source=f"{source}:{no}")
        if not isinstance(obj, dict):
            raise InputError(f"{source}:{no}: a record must be a JSON object")
        yield obj


def make_seal_fn(bundle: str | None, keys: tuple[str, ...], unsigned: bool):
    """A seal_fn appending a signed 'log' attestation to ``bundle`` (None = unsigned)."""
    if unsigned:
        if bundle or keys:
            raise InputError("--unsigned cannot be combined with --bundle/--key")
        return None
    from mlspec_attest.attest.attestor import Attestor
    from mlspec_attest.cli._project import project_append_gate, project_from_cwd, project_head_signing
    from mlspec_attest.keys import load_signer

    project = project_from_cwd()  # like attest stage: mlspec.yaml's bundle and key are the defaults
    if not bundle and project is not None and project.bundle is not None:
        bundle = str(project.bundle)
    if not keys and project is not None and project.key is not None:
        keys = (str(project.key),)
    if not bundle or not keys:
        raise InputError("sealing needs --bundle DIR and --key KEY (or an mlspec.yaml naming bundle: and key:, "
                         "or --unsigned for an unattested seal)")
    signers = [load_signer(k) for k in keys]
    # Inside a project with head:, the seal re-signs the chain head like any other append.
    # The seal believes a head by any of the policy's head signers, as attest stage does (attest/head.py).
    head = project_head_signing(project, dict(zip(keys, signers)), believe=project_append_gate())
    attestor = Attestor(bundle, signers, head=head,
                        base_dir=project.root if project is not None else None)

    def seal_fn(metadata: dict[str, Any], products: list[Path]) -> str:
        return attestor.attest("log", metadata=metadata, products=products).payload_sha256

    return seal_fn


@log.command("append")
@click.argument("source", default="-", type=ProjectPath(dir_okay=False, allow_dash=True))
@_log_option
@click.option("--pipeline", help="sha256 of the serve attestation payload (needed to create a log)")
@click.option("--seal", "seal_after", is_flag=True, help="seal once the records are appended")
@click.option("--bundle", type=ProjectPath(file_okay=False), help="bundle that receives the log attestation")
@click.option("--key", "keys", multiple=True, type=ProjectPath(dir_okay=False), help="signing key (repeatable)")
@click.option("--unsigned", is_flag=True, help="seal without an attestation (testing only)")
@json_format_option
@passphrase_file_option
def append(source: str, log_dir: str, pipeline: str | None, seal_after: bool, bundle: str | None,
           keys: tuple[str, ...], unsigned: bool, fmt: str) -> None:
    """Append JSON Lines records from SOURCE (a file, or - for stdin)."""
    from mlspec_attest.log.inference import InferenceLog

    seal_fn = make_seal_fn(bundle, keys, unsigned) if seal_after else None
    if not seal_after and (bundle or keys or unsigned):
        raise InputError("--bundle/--key/--unsigned only apply with --seal")
    stream = sys.stdin.buffer if source == "-" else None
    name = "<stdin>" if source == "-" else source
    try:
        fh = stream if stream is not None else open(source, "rb")
    except OSError as exc:
        raise InputError(f"{source}: {exc.strerror}") from None
    n = 0
    with InferenceLog(log_dir, pipeline, batch_size=2**62, seal_fn=seal_fn, seal_on_close=False) as lg:
        try:
            for n, record in enumerate(_read_jsonl(fh, name), 1):
                try:
                    lg.append(record)
                except InputError as exc:
                    raise InputError(f"{name}: record {n}: {exc}") from None
        finally:
            if stream is None:
                fh.close()
        seal = lg.seal() if seal_after else None
    if fmt == "json":
        echo_json({"log": log_dir, "appended": n, "seal": seal.to_dict() if seal else None})
        return
    click.echo(f"appended {n} record(s) to {log_dir}" + (f"; sealed at {seal.tree_size}" if seal else ""))


@log.command("seal")
@_log_option
@click.option("--bundle", type=ProjectPath(file_okay=False),
              help="bundle that receives the log attestation (default: mlspec.yaml's bundle:)")
@click.option("--key", "keys", multiple=True, type=ProjectPath(dir_okay=False),
              help="signing key, repeatable (default: mlspec.yaml's key:)")
@click.option("--unsigned", is_flag=True, help="record the tree head without an attestation (testing only)")
@json_format_option
@passphrase_file_option
def seal(log_dir: str, bundle: str | None, keys: tuple[str, ...], unsigned: bool, fmt: str) -> None:
    """Sign the current tree head as a 'log' attestation and record the seal."""
    from mlspec_attest._internal.files import exists
    from mlspec_attest.log.inference import HEADER_FILE, InferenceLog

    if not exists(HEADER_FILE, root=log_dir):
        raise InputError(f"{log_dir}: no inference log here (create one with `mlspec log append --pipeline ...`)")
    seal_fn = make_seal_fn(bundle, keys, unsigned)
    with InferenceLog(log_dir, seal_fn=seal_fn, seal_on_close=False) as lg:
        s = lg.seal()
    if fmt == "json":
        echo_json({"log": log_dir, "seal": s.to_dict() if s is not None else None})
        return
    if s is None:
        click.echo("nothing to seal: no records since the last seal")
    else:
        click.echo(f"seal {s.seal}: {s.tree_size} records, root {s.root_hash}"
                   + (f", attestation {s.attestation}" if s.attestation else " (unsigned)"))


@log.command("prove")
@click.argument("record_id", required=False)
@_log_option
@click.option("--index", type=int, help="prove the record at this 0-based leaf index instead")
@click.option("--output", "-o", type=ProjectPath(dir_okay=False), help="write the proof here (default stdout)")
@json_format_option
def prove(record_id: str | None, log_dir: str, index: int | None, output: str | None, fmt: str) -> None:
    """Inclusion proof for the record whose requestId is RECORD_ID."""
    from mlspec_attest.log.inference import prove as make_proof

    if (record_id is None) == (index is None):
        raise InputError("give RECORD_ID or --index (one of them)")
    proof = make_proof(log_dir, record_id, index=index)
    text = json.dumps(proof, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if output:
        from mlspec_attest._internal.files import write_file

        out = Path(output)
        write_file(out.parent, out.name, text.encode("utf-8"), replace=True, what="proof")
    if fmt == "json":  # the proof itself, or where it was written
        echo_json({"log": log_dir, "output": output, "proof": None if output else proof})
    elif not output:
        click.echo(text, nl=False)


@log.command("verify")
@_log_option
@click.option("--proof", "proofs", multiple=True, type=ProjectPath(dir_okay=False),
              help="also check this proof file (repeatable); alone, checks only proofs")
@click.option("--bundle", type=ProjectPath(file_okay=False),
              help="check the records against the bundle's signed log attestations (default: mlspec.yaml's bundle:)")
@click.option("--policy", type=ProjectPath(dir_okay=False),
              help="trust policy for the log attestations' signatures (default: the working directory's mlspec.yaml)")
@click.option("--deep", is_flag=True, help="also check the unsealed lines on their own (sealed lines always are)")
@click.option("--strict", is_flag=True, help="fail when records are not covered by a signed seal, or no bundle")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              is_eager=True, callback=remember_format)
def verify(log_dir: str, proofs: tuple[str, ...], bundle: str | None, policy: str | None, deep: bool, strict: bool,
           fmt: str) -> None:
    """Recompute leaves and roots, check them against the signed log attestations and proofs; locate changes.

    A proof is accepted only against a tree head the bundle signed: without a bundle, proofs fail.
    """
    from mlspec_attest.cli._project import announce_trust, load_policy, resolve_bundle
    from mlspec_attest.log.proofs import verify_proof
    from mlspec_attest.log.verification import verify as verify_log
    from mlspec_attest.model.canonical import parse_json

    heads, anchor_findings, policy_obj, origin = None, [], None, ""
    bundle = resolve_bundle(bundle)
    if bundle:
        from mlspec_attest.verify.inference_log import read_signed_heads

        policy_obj, origin = load_policy(policy, bundle)
        heads, reading = read_signed_heads(bundle, policy_obj)
        anchor_findings = [f for f in reading.findings if f.stage == "log" or "-log." in (f.file or "")]
    result: dict[str, Any] = {}
    ok = not any(f.severity == "error" for f in anchor_findings)
    check_log = not proofs or Path(log_dir).exists()
    if check_log:
        report = verify_log(log_dir, heads=heads, deep=deep)
        report.findings[:0] = anchor_findings
        result = report.to_dict()
        ok = ok and report.ok and not (strict and (report.unsealed or not report.anchored))
    elif anchor_findings:
        result["findings"] = [f.to_dict() for f in anchor_findings]
    proof_results = []
    for p in proofs:
        from mlspec_attest._internal.files import read_file

        doc = parse_json(read_file(p, what="proof file"), source=p)  # bounded, depth-bounded
        found = [f.to_dict() for f in verify_proof(doc, heads)]
        record = doc.get("record") if isinstance(doc, dict) else None
        rid = record.get("requestId") if isinstance(record, dict) else None
        pipe = doc.get("pipeline") if isinstance(doc, dict) else None
        proof_results.append({"proof": p, "ok": not found, "findings": found,
                              "record": rid if isinstance(rid, str) else None,
                              "pipeline": pipe if isinstance(pipe, str) else None})
        ok = ok and not found
    if proof_results:
        result["proofs"] = proof_results
    result["verdict"] = "pass" if ok else "fail"  # the one vocabulary (cli/_errors.py VERDICTS)
    record_verdict(EXIT_OK if ok else EXIT_FAILED)  # stands even if stdout fails
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        _print_log_result(result, log_dir, check_log, ok)
    if bundle:
        announce_trust(policy_obj, origin)  # after it ran, so an error stays one line
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


def _safe_echo(line: str) -> None:
    """One line of our layout; request ids, messages and file names in it are shown escaped."""
    from mlspec_attest.render.terminal import terminal_safe

    click.echo(terminal_safe(line))


def _print_log_result(result: dict[str, Any], log_dir: str, check_log: bool, ok: bool) -> None:
    """Text output; every value that can come from the log or a proof is escaped (render/terminal.py)."""
    from mlspec_attest.render.terminal import terminal_safe as p

    if check_log:
        anchored = (f"checked against {result['signed_heads']} signed log attestation(s)" if result["signed_heads"]
                    else "NOT checked against a bundle's signed log attestations (pass --bundle)")
        pipeline = f" of pipeline {p(result['pipeline'])}" if result.get("pipeline") else ""
        click.echo(f"{'PASS' if ok else 'FAIL'}: {p(log_dir)}{pipeline}: {result['records']} records,"
                   f" {result['sealed']} sealed in {result['seals']} seals"
                   f" ({result['seals_verified']} roots reproduced), {result['unsealed']} unsealed; {anchored}")
    for f in result.get("findings", []):
        where = "".join(f"{k}={p(f[k])} " for k in ("seal", "line", "index", "request_id") if k in f)
        click.echo(f"  {f['severity']:7} {f['code']}: {where}{p(f['message'])}")
    for pr in result.get("proofs", []):
        about = ", ".join(f"{k} {p(pr[k])}" for k in ("record", "pipeline") if pr.get(k))
        click.echo(f"proof {p(pr['proof'])}: {'ok' if pr['ok'] else 'FAILED'}" + (f" ({about})" if about else ""))
        for f in pr["findings"]:
            click.echo(f"  {f['severity']:7} {f['code']}: {p(f['message'])}")


@log.command("render")
@_log_option
@click.option("--ncsa", "ncsa", is_flag=True, help="classic NCSA Common Log Format lines")
@json_format_option
def render(log_dir: str, ncsa: bool, fmt: str) -> None:
    """Print the records: JSON Lines (default), --ncsa Common Log Format, or one JSON object (--format json)."""
    from mlspec_attest.log.inference import InferenceRecord, iter_records
    from mlspec_attest.render.terminal import terminal_safe

    if fmt == "json":
        if ncsa:
            raise InputError("--ncsa and --format json are two output formats; choose one")
        echo_json({"log": log_dir, "records": [obj for _, obj in iter_records(log_dir)]})
        return

    for _, obj in iter_records(log_dir):  # records are someone else's text: no raw ESC or bidi to the terminal
        if ncsa:
            if obj.get("type") == "ground_truth":
                continue  # a delayed label, not a request: Common Log Format has no line for it
            click.echo(terminal_safe(InferenceRecord.from_dict(obj).to_ncsa()))
        else:  # JSON stays valid and equal: bidi/C1 become \uNNNN escapes of the same characters
            click.echo(terminal_safe(json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))))

