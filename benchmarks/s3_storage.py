"""Append latency and verify time, S3 (a local SeaweedFS) against a local directory.

    PYTHONPATH=. .venv/bin/python benchmarks/s3_storage.py [--appends 20] [--long 1000]

Starts ``weed server -s3`` on free loopback ports (tests/seaweed.py), then measures:

* append latency: the 13-stage lifecycle appended with ``Attestor.attest`` (head re-signed,
  as ``mlspec init`` projects do), and monitor appends onto a ``--long`` chain;
* verify time: ``verify_bundle`` of the 13-stage lifecycle and of the ``--long`` chain
  (benchmarks/make_chain.py, head signed), from the directory and from the bucket.

SeaweedFS runs on the same host, so S3 numbers are request overhead, not network latency:
add your store's round-trip time per request (docs/storage.md counts them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

import conftest  # noqa: E402
import make_chain  # noqa: E402
import obstore  # noqa: E402
from seaweed import start_seaweed  # noqa: E402

from mlspec_attest.attest.attestor import Attestor  # noqa: E402
from mlspec_attest.attest.head import HeadSigning, sign_head  # noqa: E402
from mlspec_attest.keys import load_signer  # noqa: E402
from mlspec_attest.verify import verify_bundle  # noqa: E402

MONITOR = {"signals": {"latency_p99_ms": 12.0}, "serve_attestation": "0" * 64,
           "rollback_target": {"name": "pkg", "digest": {"sha256": "0" * 64}}}


def lifecycle_project(work: Path) -> conftest.Project:
    """The test suite's signed project (owner and pipeline keys, the shipped policies)."""
    import shutil

    from mlspec_attest.keys import generate

    root = work / "proj"
    (root / "policies").mkdir(parents=True)
    for name in ("default.yaml", "minimal.yaml"):
        shutil.copyfile(conftest.POLICIES / name, root / "policies" / name)
    generate("owner", root / "keys", "ed25519", None)
    generate("pipeline", root / "keys", "ed25519", None)
    return conftest.Project(root=root, bundle=root / "bundle")


def upload(directory: Path, store: object, prefix: str) -> None:
    """A local bundle copied object by object (what ``aws s3 sync`` does)."""
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            obstore.put(store, f"{prefix}/{path.relative_to(directory)}", path.read_bytes())  # type: ignore[arg-type]


def chain(work: Path, n: int) -> Path:
    out = work / f"chain{n}"
    make_chain.build(n, out)
    sign_head(out / "bundle", [load_signer(out / "keys" / "pipeline.key")], make_chain_head_validity(), initial=True)
    return out


def make_chain_head_validity():  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(hours=24)


def time_verify(location: str, policy: Path, runs: int) -> tuple[float, bool]:
    times, passed = [], False
    for _ in range(runs):
        t0 = time.perf_counter()
        report = verify_bundle(location, policy)
        times.append(time.perf_counter() - t0)
        passed = report.passed
    return statistics.median(times), passed


def time_appends(location: str, keys: Path, appends: int) -> list[float]:
    pipeline = load_signer(keys / "pipeline.key")
    attestor = Attestor(location, [pipeline], head=HeadSigning((pipeline,)))
    times = []
    for _ in range(appends):
        t0 = time.perf_counter()
        attestor.attest("monitor", metadata=dict(MONITOR))
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=20)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlspec-s3-bench-"))
    (work / "weed").mkdir()
    server = start_seaweed(work / "weed")
    try:
        os.environ.update(server.env())
        bucket = server.new_bucket()
        store = server.raw_store(bucket)
        rows = []
        # The 13-stage lifecycle, appended for real (tests/conftest.py's build_lifecycle), both ways.
        project = lifecycle_project(work)
        lifecycle = {}
        project.bundle = project.root / "warm-up"  # imports, schema and CEL compilation: not an append's cost
        conftest.build_lifecycle(project)
        for where, location in (("local", str(project.root / "bundle")), ("S3", f"s3://{bucket}/lifecycle")):
            project.bundle = location  # type: ignore[assignment]
            t0 = time.perf_counter()
            conftest.build_lifecycle(project)
            lifecycle[where] = (time.perf_counter() - t0) / 13, location
        verify_bundle(lifecycle["local"][1], project.policy())  # warm-up: imports, CEL compilation
        local_v, local_ok = time_verify(lifecycle["local"][1], project.policy(), args.runs)
        s3_v, s3_ok = time_verify(lifecycle["S3"][1], project.policy(), args.runs)
        rows.append(("append, 13-stage lifecycle (mean per stage, head re-signed)", lifecycle["local"][0] * 1000,
                     lifecycle["S3"][0] * 1000, "Attestor.attest, as a pipeline runs it"))
        rows.append(("verify, 13-stage lifecycle", local_v * 1000, s3_v * 1000,
                     f"gate passed: local {local_ok}, S3 {s3_ok}"))
        built = chain(work, args.long)
        upload(built / "bundle", store, f"c{args.long}")
        url = f"s3://{bucket}/c{args.long}"
        local_v, _ = time_verify(str(built / "bundle"), built / "policy.yaml", args.runs)
        s3_v, _ = time_verify(url, built / "policy.yaml", args.runs)
        rows.append((f"verify, {args.long}-attestation chain", local_v * 1000, s3_v * 1000,
                     "make_chain.py's synthetic chain; every check runs (its verdict fails on its stand-in "
                     "data, METADATA_UNBOUND, the same both ways)"))
        local_a = time_appends(str(built / "bundle"), built / "keys", args.appends)
        s3_a = time_appends(url, built / "keys", args.appends)
        rows.append((f"append onto a {args.long}-attestation chain (median of {args.appends})",
                     statistics.median(local_a) * 1000, statistics.median(s3_a) * 1000,
                     f"max local {max(local_a) * 1000:.0f} ms, S3 {max(s3_a) * 1000:.0f} ms"))
        print("| measurement | local | S3 (SeaweedFS, loopback) | notes |")
        print("|---|---:|---:|---|")
        for label, local_ms, s3_ms, note in rows:
            print(f"| {label} | {local_ms:.0f} ms | {s3_ms:.0f} ms | {note} |")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
