"""Inference-log throughput: append + Merkle + sealing vs. a bare JSON Lines writer.

    .venv/bin/python benchmarks/log_throughput.py               # 1,000,000 records
    .venv/bin/python benchmarks/log_throughput.py --records 100000 --verify

Each phase runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own:

- gen    builds the records only (cost shared by both writers; reported, not subtracted
         from the headline numbers);
- floor  the bare loop: same records, same JSON encoder settings, one
         ``write(line + b"\\n")`` per record into a 1 MiB-buffered file: the
         cheapest honest way to write the very same bytes;
- log    ``InferenceLog.append`` (schema check, canonical encoding, leaf hash,
         frontier update, leaves.bin) with a seal every --batch records. Sealing
         signs for real: Ed25519 (cryptography) over the RFC 8785 seal metadata,
         written as a small file per seal. It is a benchmark stand-in for the
         project's Attestor (no DSSE/in-toto wrapping), labelled as such.

The records are realistic: CLF fields, a UUID request id, 12 input features,
a prediction with score, 5 explanation weights, ~750 bytes per line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PIPELINE = "5f2b8c0e4d3a1b9f7e6d5c4b3a29180f7e6d5c4b3a29180f5f2b8c0e4d3a1b9f"


def make_generator(seed: int = 7):
    """A cheap, deterministic, varied record factory (features from a pool)."""
    import random

    rnd = random.Random(seed)
    hosts = [f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}" for _ in range(64)]
    pool = []
    for _ in range(997):
        pool.append(
            {
                "age": str(rnd.randrange(18, 90)),
                "tenure_months": str(rnd.randrange(0, 120)),
                "plan": rnd.choice(["basic", "plus", "pro", "enterprise"]),
                "country": rnd.choice(["DE", "FR", "US", "BR", "JP", "IN"]),
                "monthly_spend": f"{rnd.uniform(5, 500):.2f}",
                "support_tickets": str(rnd.randrange(0, 12)),
                "last_login_days": str(rnd.randrange(0, 365)),
                "device": rnd.choice(["ios", "android", "web"]),
                "discount": rnd.choice(["none", "promo10", "promo25"]),
                "nps": str(rnd.randrange(0, 11)),
                "payment_failures": str(rnd.randrange(0, 4)),
                "segment": rnd.choice(["smb", "consumer", "mid-market"]),
            }
        )
    scores = [round(rnd.random(), 4) or 0.5 for _ in range(1009)]
    expl = [{k: round(rnd.uniform(-0.5, 0.5), 4) or 0.1 for k in ("age", "tenure_months", "plan", "monthly_spend", "nps")}
            for _ in range(101)]
    lat = [round(rnd.uniform(2, 80), 3) for _ in range(211)]
    uuids = [str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(1)]
    base = time.gmtime(1_714_571_736)

    def gen(i: int) -> dict[str, Any]:
        sec = i // 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:", base) + f"{(base.tm_sec + sec) % 60:02d}.{i % 1000:03d}Z"
        s = scores[i % 1009]
        return {
            "host": hosts[i & 63],
            "ident": None,
            "user": "svc-checkout",
            "time": stamp,
            "request": "POST /v1/models/churn-classifier:predict HTTP/1.1",
            "status": 200,
            "bytes": 412 + (i % 97),
            "applicationId": "checkout-web",
            "requestId": f"{uuids[0][:24]}{i:012x}",
            "requestTimestamp": stamp,
            "latency": lat[i % 211],
            "modelId": "churn-classifier/3.1.0",
            "inputFeatures": pool[i % 997],
            "prediction": {"label": "churn" if s > 0.5 else "stay", "score": s},
            "explanation": expl[i % 101],
            "feedback": None,
            "pipeline": PIPELINE,
        }

    return gen


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def phase_gen(n: int, _: Path, __: int) -> dict[str, Any]:
    gen = make_generator()
    t = time.perf_counter()
    for i in range(n):
        gen(i)
    return {"seconds": time.perf_counter() - t, "bytes": 0}


def phase_floor(n: int, work: Path, _: int) -> dict[str, Any]:
    gen = make_generator()
    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    path = work / "floor.jsonl"
    t = time.perf_counter()
    with open(path, "wb", buffering=1 << 20) as fh:
        for i in range(n):
            fh.write(dumps(gen(i)).encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return {"seconds": time.perf_counter() - t, "bytes": path.stat().st_size}


def _ed25519_seal_fn(out_dir: Path):
    """BENCHMARK SIGNER (not the project's Attestor): real Ed25519 over the
    canonical seal metadata + products' sha256, one small file per seal."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mlspec_attest.canonical import canonicalize

    key = Ed25519PrivateKey.generate()
    out_dir.mkdir(parents=True, exist_ok=True)

    def seal_fn(metadata: dict[str, Any], products: list[Path]) -> str:
        statement = {"metadata": metadata,
                     "subject": [{"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in products]}
        payload = canonicalize(statement)
        sig = key.sign(payload)
        digest = hashlib.sha256(payload).hexdigest()
        (out_dir / f"{metadata['seal']:08d}.sig.json").write_bytes(
            canonicalize({"payload": payload.decode(), "sig": sig.hex()}))
        return digest

    return seal_fn


def phase_log(n: int, work: Path, batch: int) -> dict[str, Any]:
    from mlspec_attest.inference_log import InferenceLog

    gen = make_generator()
    seal_fn = _ed25519_seal_fn(work / "sigs")
    t = time.perf_counter()
    log = InferenceLog(work / "log", PIPELINE, batch_size=batch, seal_fn=seal_fn)
    append = log.append
    for i in range(n):
        append(gen(i))
    log.close()  # seals the tail
    seconds = time.perf_counter() - t
    size = (work / "log" / "records.jsonl").stat().st_size
    return {"seconds": seconds, "bytes": size, "seals": len(log.seals)}


def phase_verify(n: int, work: Path, _: int) -> dict[str, Any]:
    from mlspec_attest.inference_log import prove, verify

    t = time.perf_counter()
    report = verify(work / "log")
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    proof = prove(work / "log", index=n // 2)
    prove_s = time.perf_counter() - t
    return {"seconds": seconds, "ok": report.ok, "seals_verified": report.seals_verified,
            "prove_seconds": prove_s, "proof_len": len(proof["inclusion_proof"]), "bytes": 0}


PHASES = {"gen": phase_gen, "floor": phase_floor, "log": phase_log, "verify": phase_verify}


def run_phase(name: str, n: int, work: Path, batch: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", name, "--records", str(n), "--work", str(work), "--batch", str(batch)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000, help="seal every N records")
    ap.add_argument("--verify", action="store_true", help="also time `verify` and one `prove` on the result")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:
        res = PHASES[args.phase](args.records, args.work, args.batch)
        res["peak_rss_mib"] = _rss_mib()
        print(json.dumps(res))
        return

    n = args.records
    work = Path(tempfile.mkdtemp(prefix="mlspec-logbench-"))
    try:
        gen = run_phase("gen", n, work, args.batch)
        floor = run_phase("floor", n, work, args.batch)
        log = run_phase("log", n, work, args.batch)
        # the floor must have written exactly the same bytes
        with open(work / "floor.jsonl", "rb") as a, open(work / "log" / "records.jsonl", "rb") as b:
            same = a.read(1 << 24) == b.read(1 << 24)
        print(f"records            {n:,} (~{floor['bytes'] / n:.0f} bytes/line), seal every {args.batch:,}"
              f" -> {log['seals']} seals, Ed25519-signed (benchmark signer)")
        print(f"python             {sys.version.split()[0]}, one process, one core")
        print(f"record generation  {gen['seconds']:.2f} s (included in both rows below)")
        for name, r in (("floor (bare write)", floor), ("InferenceLog", log)):
            print(f"{name:18} {r['seconds']:.2f} s  {n / r['seconds']:>10,.0f} records/s"
                  f"  {r['bytes'] / r['seconds'] / 1e6:7.1f} MB/s  peak RSS {r['peak_rss_mib']:.0f} MiB")
        ratio = log["seconds"] / floor["seconds"]
        net = (log["seconds"] - gen["seconds"]) / (floor["seconds"] - gen["seconds"])
        print(f"ratio log/floor    {ratio:.3f}  (sealing overhead {100 * (ratio - 1):.1f}% of the floor;"
              f" {100 * (net - 1):.1f}% with generation excluded from both)")
        print(f"same bytes         {'yes' if same else 'NO'} (first 16 MiB of floor.jsonl == records.jsonl)")
        if args.verify:
            v = run_phase("verify", n, work, args.batch)
            print(f"verify             {v['seconds']:.2f} s  {n / v['seconds']:,.0f} records/s  ok={v['ok']}"
                  f"  seals verified {v['seals_verified']}  peak RSS {v['peak_rss_mib']:.0f} MiB")
            print(f"prove (1 record)   {v['prove_seconds']:.2f} s  proof of {v['proof_len']} hashes")
    finally:
        if args.keep:
            print(f"work directory     {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
