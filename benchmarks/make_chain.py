"""Build an N-attestation bundle fast, with a matching policy, for verify benchmarks.

    .venv/bin/python benchmarks/make_chain.py 10000 /tmp/chain10k
    .venv/bin/mlspec verify /tmp/chain10k/bundle --policy /tmp/chain10k/policy.yaml

Layout of OUT: ``bundle/attestations/*.dsse.json``, ``keys/{owner,pipeline}.{key,pub}``
(unencrypted throwaway keys), ``policy.yaml`` (the shipped default policy with these
keys). The chain is: objectives (signed by owner), the 11 pipeline stages ingest ..
serve plus one monitor and one log (13 attestations: the full lifecycle), then monitor
and log alternate until N. ``N=13`` is the 13-stage lifecycle bundle.

Why not call ``Attestor.attest`` N times: each append re-reads the bundle head,
fsyncs and validates with protobuf, which is right for a pipeline but makes a
10,000-chain take minutes. Here the statements are the same wire format (RFC 8785
payload, DSSE envelope, PAE signature), built in memory and written without fsync.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlspec_attest import TOOL_NAME, __version__
from mlspec_attest.attest.head import sign_head
from mlspec_attest.bundle import attestation_file_name
from mlspec_attest.digests import files_digest
from mlspec_attest.keys import generate, load_signer
from mlspec_attest.manifest import encode as encode_manifest
from mlspec_attest.model.canonical import canonicalize
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from mlspec_attest.model.stages import resolve
from mlspec_attest.model.statement import STATEMENT_TYPE

REPO = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = REPO / "mlspec_attest" / "data" / "policies" / "default.yaml"
BASE_TIME = datetime(2025, 1, 1, tzinfo=timezone.utc)

OBJECTIVES = {
    "project": "my-model",  # the shipped policy pins it (objectives.project)
    "revision": 1,
    "outputs": {"task": "binary-classification", "labels": [0, 1]},
    "errors": [{"name": "false-negative", "handling": "manual review"}],
    "criteria": [{"name": "test-accuracy", "stage": "test", "expression": "metrics.accuracy >= 0.8",
                  "severity": "block", "description": "hold-back accuracy"}],
}


def _d(label: str) -> str:
    """A stable stand-in artifact digest (the verifier never reads the artifacts).

    The package directory's is the one its file manifest recomputes to (MANIFEST_UNBOUND otherwise).
    """
    if label == "pkg":
        return files_digest(PACKAGE_FILES)
    return hashlib.sha256(label.encode()).hexdigest()


def _rd(name: str, role: str | None = None) -> dict[str, Any]:
    rd: dict[str, Any] = {"name": name, "digest": {"sha256": _d(name)}}
    if role:
        rd["annotations"] = {"role": role}
    return rd


# Blobs the gate reads (bundle/blobs/<sha256>): split's row fingerprints and the package's file manifest.
FINGERPRINTS = {"train": struct.pack(">QQ", 1, 2), "validation": struct.pack(">Q", 4), "holdback": struct.pack(">Q", 3)}
PACKAGE_FILES = [("model.bin", hashlib.sha256(b"out/model.bin").hexdigest())]
PACKAGE_MANIFEST = encode_manifest(PACKAGE_FILES)


def _blob_rd(name: str, data: bytes, role: str | None, **annotations: Any) -> dict[str, Any]:
    rd: dict[str, Any] = {"name": name, "digest": {"sha256": hashlib.sha256(data).hexdigest()}}
    if role or annotations:
        rd["annotations"] = {**({"role": role} if role else {}), **annotations}
    return rd


# Each fingerprint set names the digest of the split subject it was computed from (LEAKAGE_EVIDENCE_UNBOUND).
FINGERPRINTS_OF = {"train": "work/train.csv", "validation": "work/val.csv", "holdback": "work/holdback.csv"}
# The metrics test's criterion reads, bound to the attested report they came from (METADATA_UNBOUND).
TEST_METADATA = {"metrics": {"accuracy": 0.9}, "dataset": "work/holdback.csv", "holdback": True}
TEST_REPORT = json.dumps(TEST_METADATA, sort_keys=True).encode()


def lifecycle_plan() -> list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]]:
    """(stage, materials, products, metadata) for the 13-stage lifecycle; flows are honest."""
    return [
        ("objectives", [], [], OBJECTIVES),
        ("ingest", [_rd("raw/data.csv", "external")], [_rd("raw/data.csv", "raw-data")],
         {"sources": [{"name": "raw", "connector": "csv", "uri": "raw/data.csv"}]}),
        ("analyze", [_rd("raw/data.csv")], [_rd("work/stats.json")], {"statistics": {"x": {"mean": 2.5}}}),
        ("transform", [_rd("raw/data.csv")], [_rd("work/clean.csv")], {"transformations": [{"name": "dropna"}]}),
        ("validate", [_rd("work/clean.csv")], [],
         {"schema_version": "1", "checks": [{"name": "no-nulls", "passed": True}], "passed": True}),
        ("split", [_rd("work/clean.csv")], [_rd("work/train.csv", "train-data"), _rd("work/val.csv", "eval-data"),
                                            _rd("work/holdback.csv", "holdback-data"),
                                            *(_blob_rd(f"mlspec:fingerprints/{k}", v, f"fingerprints-{k}",
                                                       **{"mlspec.dev/fingerprints-of": FINGERPRINTS_OF[k],
                                                          "mlspec.dev/fingerprints-of-sha256":
                                                              _d(FINGERPRINTS_OF[k])})
                                              for k, v in FINGERPRINTS.items())],
         {"sets": {"train": {"rows": 1}, "validation": {"rows": 1}, "holdback": {"rows": 1}}}),
        ("train", [_rd("work/train.csv", "train-data")], [_rd("out/model.bin", "model")],
         {"framework": {"name": "sklearn"}, "hyperparameters": {"C": 1.5}}),
        ("evaluate", [_rd("out/model.bin", "model"), _rd("work/val.csv", "eval-data")], [],
         {"metrics": {"accuracy": 0.9}, "dataset": "work/val.csv"}),
        ("test", [_rd("out/model.bin", "model"), _rd("work/holdback.csv", "holdback-data")],
         [_blob_rd("reports/test.json", TEST_REPORT, None)], TEST_METADATA),
        ("package", [_rd("out/model.bin", "model")], [_package_rd()], {"name": "demo-model", "contents": ["model.bin"]}),
        ("serve", [_package_rd()], [], {"rollout": {"strategy": "canary", "status": "succeeded"}}),
        ("monitor", [_rd("pkg")], [], _monitor_metadata(0)),
        ("log", [], [], _log_metadata(0)),
    ]


def _package_rd() -> dict[str, Any]:
    rd = _rd("pkg", "package")
    rd["annotations"]["mlspec.dev/manifest-sha256"] = hashlib.sha256(PACKAGE_MANIFEST).hexdigest()
    return rd


def _monitor_metadata(i: int) -> dict[str, Any]:
    return {"signals": {"latency_p99_ms": 12 + i % 7, "drift_psi_milli": i % 50},
            "rollback_target": {"name": "pkg", "digest": {"sha256": _d("pkg")}}}


def _log_metadata(i: int) -> dict[str, Any]:
    return {"tree_size": 1000 * i, "root_hash": _d(f"log-root-{i}")}


def _fast_canonical(value: Any) -> bytes:
    """RFC 8785 for documents of ASCII keys, strings, ints and bools: sorted compact json.dumps."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def build(n: int, out: Path, *, policy_template: Path = DEFAULT_POLICY, pad: int = 0,
          head_now: datetime | None = None) -> dict[str, float]:
    """Write the chain; ``pad`` bytes of notes in every repeated monitor payload (memory-vs-payload runs);
    the head is signed at ``head_now`` (default: now)."""
    if n < 1:
        raise SystemExit("N must be at least 1")
    t0 = time.perf_counter()
    attestations = out / "bundle" / "attestations"
    attestations.mkdir(parents=True, exist_ok=False)
    keys = out / "keys"
    generate("owner", keys, "ed25519", None)
    generate("pipeline", keys, "ed25519", None)
    owner, pipeline = load_signer(keys / "owner.key"), load_signer(keys / "pipeline.key")
    policy = policy_template.read_text().replace("../keys/", "keys/")
    (out / "policy.yaml").write_text(policy)

    blobs = out / "bundle" / "blobs"
    blobs.mkdir()
    for blob in (*FINGERPRINTS.values(), PACKAGE_MANIFEST, TEST_REPORT):
        (blobs / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    plan = lifecycle_plan()
    genesis = previous = None
    serve_digest = None  # monitor and log name the serve attestation they watch
    for seq in range(n):
        if seq < len(plan):
            stage, materials, products, metadata = plan[seq]
            canon = canonicalize
        else:
            k = seq - len(plan) + 1
            stage = "monitor" if k % 2 == 1 else "log"
            materials = [_rd("pkg")] if stage == "monitor" else []
            products, metadata = [], (_monitor_metadata(k) if stage == "monitor" else _log_metadata(k))
            if pad and stage == "monitor":
                metadata["notes"] = "x" * pad
            canon = _fast_canonical
            if k <= 2:  # the fast encoder must agree with RFC 8785 on these documents
                assert _fast_canonical(metadata) == canonicalize(metadata)
        if stage in ("monitor", "log") and serve_digest is not None:
            metadata = {**metadata, ("serve_attestation" if stage == "monitor" else "pipeline"): serve_digest}
        st = resolve(stage)
        subjects = products or [{"name": f"mlspec:{stage}-metadata",
                                 "digest": {"sha256": hashlib.sha256(canonicalize(metadata)).hexdigest()}}]
        when = BASE_TIME + timedelta(seconds=seq)
        statement = {
            "_type": STATEMENT_TYPE,
            "subject": subjects,
            "predicateType": st.predicate_type,
            "predicate": {
                "chain": {"genesis": genesis, "sequence": seq, "previous": previous},
                "materials": materials,
                "metadata": metadata,
                "run": {"startedOn": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "finishedOn": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "tool": {"name": TOOL_NAME, "version": __version__},
                        "invocationId": f"00000000-0000-4000-8000-{seq:012d}", "host": "bench"},
                "redactions": [],
                **({"metadataSources": [products[0]]} if stage == "test" else {}),
            },
        }
        payload = canon(statement)
        if seq == len(plan):
            assert payload == canonicalize(statement)
        env = Envelope(payload_type=IN_TOTO_PAYLOAD_TYPE, payload=payload)
        env.sign(owner if stage == "objectives" else pipeline)
        (attestations / attestation_file_name(seq, stage)).write_bytes(env.to_json())
        digest = hashlib.sha256(payload).hexdigest()
        genesis = genesis or digest
        previous = digest
        if stage == "serve":
            serve_digest = digest
    # The shipped policy requires a current signed chain head (HEAD_MISSING otherwise); valid 7 days
    # (the policy's max_validity), so a chain generated once under /tmp can be reused for a week.
    sign_head(out / "bundle", [pipeline], timedelta(days=7), now=head_now, initial=True)  # its first head
    return {"seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="number of attestations (13 = the full lifecycle)")
    ap.add_argument("out", type=Path, help="output directory (must not hold a bundle yet)")
    ap.add_argument("--pad", type=int, default=0, help="extra bytes in every repeated monitor payload")
    args = ap.parse_args(argv)
    info = build(args.n, args.out, pad=args.pad)
    print(f"wrote {args.n} attestations to {args.out}/bundle in {info['seconds']:.2f} s; "
          f"policy {args.out}/policy.yaml", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
