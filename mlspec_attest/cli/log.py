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

from mlspec_attest.cli._errors import ErrorHandlingGroup
from mlspec_attest.errors import EXIT_FAILED, EXIT_OK, InputError

DEFAULT_LOG = "inference-log"

_log_option = click.option("--log", "log_dir", default=DEFAULT_LOG, show_default=True,
                           type=click.Path(file_okay=False), help="log directory")


@click.group("log", cls=ErrorHandlingGroup)
def log() -> None:
    """Per-inference records as a Merkle tree, sealed by signed 'log' attestations."""


def _read_jsonl(stream: TextIO | Any, source: str) -> Iterator[dict[str, Any]]:
    from mlspec_attest.model.canonical import parse_json

    for no, raw in enumerate(stream, 1):
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
    if not bundle or not keys:
        raise InputError("sealing needs --bundle DIR and --key KEY (or --unsigned for an unattested seal)")
    from mlspec_attest.attest.attestor import Attestor
    from mlspec_attest.cli._project import project_from_cwd, project_head_signing
    from mlspec_attest.keys import load_signer

    signers = [load_signer(k) for k in keys]
    # Inside a project with head:, the seal re-signs the chain head like any other append.
    attestor = Attestor(bundle, signers, head=project_head_signing(project_from_cwd(), dict(zip(keys, signers))))

    def seal_fn(metadata: dict[str, Any], products: list[Path]) -> str:
        return attestor.attest("log", metadata=metadata, products=products).payload_sha256

    return seal_fn


def bundle_lookup(bundle: str):
    """Map attestation payload sha256 -> signed 'log' metadata, read from a bundle.

    Signatures are checked by ``mlspec verify BUNDLE``; this ties each seal to the
    statement that carries it."""
    import hashlib

    from mlspec_attest.bundle import Bundle, extract_payload

    found: dict[str, dict[str, Any]] = {}
    for f in Bundle(bundle).files():
        try:
            payload = extract_payload(f.kind, f.data)
            statement = json.loads(payload)
        except (ValueError, KeyError, TypeError):
            continue
        if not isinstance(statement, dict) or not str(statement.get("predicateType", "")).endswith("/log/v1"):
            continue
        meta = (statement.get("predicate") or {}).get("metadata")
        if isinstance(meta, dict):
            found[hashlib.sha256(payload).hexdigest()] = meta
    return found.get


@log.command("append")
@click.argument("source", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@_log_option
@click.option("--pipeline", help="sha256 of the serve attestation payload (needed to create a log)")
@click.option("--seal", "seal_after", is_flag=True, help="seal once the records are appended")
@click.option("--bundle", type=click.Path(file_okay=False), help="bundle that receives the log attestation")
@click.option("--key", "keys", multiple=True, type=click.Path(dir_okay=False), help="signing key (repeatable)")
@click.option("--unsigned", is_flag=True, help="seal without an attestation (testing only)")
def append(source: str, log_dir: str, pipeline: str | None, seal_after: bool, bundle: str | None,
           keys: tuple[str, ...], unsigned: bool) -> None:
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
    click.echo(f"appended {n} record(s) to {log_dir}" + (f"; sealed at {seal.tree_size}" if seal else ""))


@log.command("seal")
@_log_option
@click.option("--bundle", type=click.Path(file_okay=False), help="bundle that receives the log attestation")
@click.option("--key", "keys", multiple=True, type=click.Path(dir_okay=False), help="signing key (repeatable)")
@click.option("--unsigned", is_flag=True, help="record the tree head without an attestation (testing only)")
def seal(log_dir: str, bundle: str | None, keys: tuple[str, ...], unsigned: bool) -> None:
    """Sign the current tree head as a 'log' attestation and record the seal."""
    from mlspec_attest.log.inference import HEADER_FILE, InferenceLog

    if not (Path(log_dir) / HEADER_FILE).exists():
        raise InputError(f"{log_dir}: no inference log here (create one with `mlspec log append --pipeline ...`)")
    seal_fn = make_seal_fn(bundle, keys, unsigned)
    with InferenceLog(log_dir, seal_fn=seal_fn, seal_on_close=False) as lg:
        s = lg.seal()
    if s is None:
        click.echo("nothing to seal: no records since the last seal")
    else:
        click.echo(f"seal {s.seal}: {s.tree_size} records, root {s.root_hash}"
                   + (f", attestation {s.attestation}" if s.attestation else " (unsigned)"))


@log.command("prove")
@click.argument("record_id", required=False)
@_log_option
@click.option("--index", type=int, help="prove the record at this 0-based leaf index instead")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="write the proof here (default stdout)")
def prove(record_id: str | None, log_dir: str, index: int | None, output: str | None) -> None:
    """Inclusion proof for the record whose requestId is RECORD_ID."""
    from mlspec_attest.log.inference import prove as make_proof

    if (record_id is None) == (index is None):
        raise InputError("give RECORD_ID or --index (one of them)")
    proof = make_proof(log_dir, record_id, index=index)
    text = json.dumps(proof, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@log.command("verify")
@_log_option
@click.option("--proof", "proofs", multiple=True, type=click.Path(dir_okay=False),
              help="also check this proof file (repeatable); alone, checks only proofs")
@click.option("--bundle", type=click.Path(file_okay=False), help="check each seal against its signed log attestation")
@click.option("--deep", is_flag=True, help="also parse every record (canonical form, schema, pipeline)")
@click.option("--strict", is_flag=True, help="fail when records are not sealed yet")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify(log_dir: str, proofs: tuple[str, ...], bundle: str | None, deep: bool, strict: bool, fmt: str) -> None:
    """Recompute leaves and roots, check seals, consistency and proofs; locate changes."""
    from mlspec_attest.log.inference import verify as verify_log
    from mlspec_attest.log.inference import verify_proof
    from mlspec_attest.model.canonical import parse_json

    result: dict[str, Any] = {}
    ok = True
    check_log = not proofs or Path(log_dir).exists()
    if check_log:
        attested = bundle_lookup(bundle) if bundle else None
        report = verify_log(log_dir, attested=attested, deep=deep)
        result = report.to_dict()
        ok = report.ok and not (strict and report.unsealed)
    proof_results = []
    for p in proofs:
        try:
            doc = parse_json(Path(p).read_bytes(), source=p)
        except OSError as exc:
            raise InputError(f"{p}: {exc.strerror}") from None
        problems = verify_proof(doc) if isinstance(doc, dict) else ["not a JSON object"]
        if not problems and check_log and bundle and isinstance(doc, dict):
            meta = attested(doc.get("attestation") or "") if attested else None
            if meta is None or meta.get("root_hash") != doc.get("root_hash") or meta.get("tree_size") != doc.get("tree_size"):
                problems.append("root is not the one signed in the bundle's log attestation")
        proof_results.append({"proof": p, "ok": not problems, "problems": problems})
        ok = ok and not problems
    if proof_results:
        result["proofs"] = proof_results
    result["verdict"] = "verified" if ok else "failed"
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        if check_log:
            click.echo(f"{'VERIFIED' if ok else 'FAILED'}: {log_dir}: {result['records']} records,"
                       f" {result['sealed']} sealed in {result['seals']} seals"
                       f" ({result['seals_verified']} roots reproduced), {result['unsealed']} unsealed")
            for f in result["findings"]:
                where = "".join(f"{k}={f[k]} " for k in ("seal", "line", "index", "request_id") if k in f)
                click.echo(f"  {f['severity']:7} {f['code']}: {where}{f['message']}")
        for pr in proof_results:
            click.echo(f"proof {pr['proof']}: {'ok' if pr['ok'] else 'FAILED'}")
            for problem in pr["problems"]:
                click.echo(f"  error: {problem}")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@log.command("render")
@_log_option
@click.option("--ncsa", "ncsa", is_flag=True, help="classic NCSA Common Log Format lines")
def render(log_dir: str, ncsa: bool) -> None:
    """Print the records: JSON Lines (default) or --ncsa Common Log Format."""
    from mlspec_attest.log.inference import InferenceRecord, iter_records

    for _, obj in iter_records(log_dir):
        if ncsa:
            click.echo(InferenceRecord.from_dict(obj).to_ncsa())
        else:
            click.echo(json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")))

