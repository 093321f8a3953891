"""Inference-log throughput: append + Merkle + sealing vs. a bare JSON Lines writer.

    .venv/bin/python benchmarks/log_throughput.py               # 1,000,000 records, both shapes, 3 runs
    .venv/bin/python benchmarks/log_throughput.py --records 100000 --repeat 1 --verify

Each phase runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own:

- gen    builds the records only (cost shared by both writers; reported, not subtracted
         from the headline numbers);
- floor  the bare loop: same records through the log's own fast encoder
         (``inference_log._fast_encode``: orjson when installed and self-checked,
         else the stdlib C encoder), one ``write(line + b"\\n")`` per record into
         a 1 MiB-buffered file: the cheapest honest way to write the very same
         bytes (checked byte for byte against records.jsonl);
- log    ``InferenceLog.append`` (schema check, canonical encoding, leaf hash,
         frontier update, leaves.bin) with a seal every --batch records. Sealing
         signs for real: Ed25519 (cryptography) over the RFC 8785 seal metadata,
         written as a small file per seal. It is a benchmark stand-in for the
         project's Attestor (no DSSE/in-toto wrapping), labelled as such.

The records are realistic: CLF fields, a UUID request id, 12 input features,
a prediction with score, 5 explanation weights, ~845 bytes per line
("full"); and a digest-only variant ("small", ~650 bytes per line).
Wall and CPU (process) time are both reported: on a shared machine the CPU
time is the steadier of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PIPELINE = "5f2b8c0e4d3a1b9f7e6d5c4b3a29180f7e6d5c4b3a29180f5f2b8c0e4d3a1b9f"


def make_generator(seed: int = 7, shape: str = "full"):
    """A cheap, deterministic, varied record factory (features from a pool).

    shape "full":  12 string features, a prediction with a score, 5 explanation
                   weights (~845 bytes per line);
    shape "small": the same record with the features and the prediction replaced
                   by their digests (``inputFeaturesDigest``/``predictionDigest``,
                   sha256 of their RFC 8785 form, computed by the producer, i.e.
                   here in the pool) and no explanation (~650 bytes per line: three 64-hex digests).
    """
    import random

    from mlspec_attest.log.inference import digest_value

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

    def common(i: int) -> dict[str, Any]:
        """The NCSA and request fields every record shape shares."""
        sec = i // 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:", base) + f"{(base.tm_sec + sec) % 60:02d}.{i % 1000:03d}Z"
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
            "feedback": None,
            "pipeline": PIPELINE,
        }

    if shape == "small":
        feat_digests = [digest_value(f) for f in pool]
        pred_digests = [digest_value({"label": "churn" if s > 0.5 else "stay", "score": s}) for s in scores]

        def gen_small(i: int) -> dict[str, Any]:
            record = common(i)
            record["inputFeaturesDigest"] = feat_digests[i % 997]
            record["predictionDigest"] = pred_digests[i % 1009]
            record["explanation"] = None
            return record

        return gen_small

    def gen(i: int) -> dict[str, Any]:
        s = scores[i % 1009]
        record = common(i)
        record["inputFeatures"] = pool[i % 997]
        record["prediction"] = {"label": "churn" if s > 0.5 else "stay", "score": s}
        record["explanation"] = expl[i % 101]
        return record

    return gen


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> dict[str, float]:
    return {"seconds": time.perf_counter() - t[0], "cpu": time.process_time() - t[1]}


def phase_gen(n: int, _: Path, __: int, shape: str) -> dict[str, Any]:
    gen = make_generator(shape=shape)
    t = _clock()
    for i in range(n):
        gen(i)
    return {**_since(t), "bytes": 0}


def phase_floor(n: int, work: Path, _: int, shape: str) -> dict[str, Any]:
    """The bare loop: the same records through the log's own fast encoder (so the
    same bytes), one write per line, one fsync at the end. No validation, no hashing."""
    from mlspec_attest.log.records import _fast_encode as encode

    gen = make_generator(shape=shape)
    path = work / "floor.jsonl"
    t = _clock()
    with open(path, "wb", buffering=1 << 20) as fh:
        write = fh.write
        for i in range(n):
            write(encode(gen(i)) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return {**_since(t), "bytes": path.stat().st_size}


def _ed25519_seal_fn(out_dir: Path):
    """BENCHMARK SIGNER (not the project's Attestor): real Ed25519 over the
    canonical seal metadata + products' sha256, one small file per seal."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mlspec_attest.model.canonical import canonicalize

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


def phase_log(n: int, work: Path, batch: int, shape: str) -> dict[str, Any]:
    from mlspec_attest.log.inference import InferenceLog

    gen = make_generator(shape=shape)
    seal_fn = _ed25519_seal_fn(work / "sigs")
    t = _clock()
    log = InferenceLog(work / "log", PIPELINE, batch_size=batch, seal_fn=seal_fn)
    append = log.append
    for i in range(n):
        append(gen(i))
    log.close()  # seals the tail
    res = _since(t)
    size = (work / "log" / "records.jsonl").stat().st_size
    return {**res, "bytes": size, "seals": len(log.seals)}


def phase_verify(n: int, work: Path, _: int, __: str) -> dict[str, Any]:
    from mlspec_attest.log.inference import prove, verify

    t = time.perf_counter()
    c = time.process_time()
    report = verify(work / "log")  # every sealed line is also checked on its own (schema, canonical form)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    proof = prove(work / "log", index=n // 2)
    prove_s = time.perf_counter() - t
    return {"seconds": seconds, "cpu": cpu, "ok": report.ok, "seals_verified": report.seals_verified,
            "prove_seconds": prove_s, "proof_len": len(proof["inclusion_proof"]), "bytes": 0}


def phase_breakdown(n: int, work: Path, batch: int, shape: str) -> dict[str, Any]:
    """Where the time goes, in one process (CPU time, median of 3 interleaved runs of
    n records each): cumulative steps of the append path next to the floor."""
    import hashlib

    import mlspec_attest.log.records as il
    import mlspec_attest.log.writer as writer
    from mlspec_attest.log.inference import InferenceLog, normalize_record
    from mlspec_attest.log.records import _fast_encode as encode

    gen = make_generator(shape=shape)
    sha = hashlib.sha256

    def s_gen() -> None:
        for i in range(n):
            gen(i)

    def s_floor() -> None:
        with open(os.devnull, "wb", buffering=1 << 20) as fh:
            for i in range(n):
                fh.write(encode(gen(i)) + b"\n")

    def s_floor_stdlib() -> None:
        enc = il._stdlib_encode
        with open(os.devnull, "wb", buffering=1 << 20) as fh:
            for i in range(n):
                fh.write(enc(gen(i)) + b"\n")

    def s_norm() -> None:
        for i in range(n):
            normalize_record(gen(i), PIPELINE)

    def s_norm_enc() -> None:
        for i in range(n):
            encode(normalize_record(gen(i), PIPELINE)[0])

    def s_norm_enc_hash() -> None:
        for i in range(n):
            sha(b"\x00" + encode(normalize_record(gen(i), PIPELINE)[0])).digest()

    def s_append(seal_every: int, stdlib: bool = False) -> Any:
        def run() -> None:
            writer._fast_encode = il._stdlib_encode if stdlib else encode  # the before/after switch
            d = Path(tempfile.mkdtemp(dir=work))
            log = InferenceLog(d, PIPELINE, batch_size=seal_every)
            append = log.append
            for i in range(n):
                append(gen(i))
            log.close()
            shutil.rmtree(d)
        return run

    steps = {
        "gen": s_gen,
        "floor: gen + encode + write": s_floor,
        "floor with the stdlib json encoder (before)": s_floor_stdlib,
        "gen + validate (normalize_record)": s_norm,
        "gen + validate + encode": s_norm_enc,
        "gen + validate + encode + leaf hash": s_norm_enc_hash,
        "InferenceLog.append, one seal at close": s_append(1 << 62),
        f"InferenceLog.append, seal every {batch:,} (unsigned)": s_append(batch),
        "  the same with the stdlib json encoder (before)": s_append(batch, stdlib=True),
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(3):
        for k, f in steps.items():
            t = time.process_time()
            f()
            times[k].append(time.process_time() - t)
    return {"us": {k: statistics.median(v) / n * 1e6 for k, v in times.items()}, "bytes": 0, "seconds": 0}


PHASES = {"breakdown": phase_breakdown, "gen": phase_gen, "floor": phase_floor, "log": phase_log, "verify": phase_verify}


def run_phase(name: str, n: int, work: Path, batch: int, shape: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", name, "--records", str(n), "--work", str(work),
           "--batch", str(batch), "--shape", shape]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def run_shape(shape: str, n: int, batch: int, repeat: int, verify: bool, keep: bool, breakdown: bool) -> None:
    """gen, floor and log, `repeat` times in turn (each in a fresh process and a
    fresh directory); medians of the runs, and the median of the per-run ratios."""
    runs: dict[str, list[dict[str, Any]]] = {"gen": [], "floor": [], "log": []}
    same = True
    work = None
    for _ in range(repeat):
        if work is not None and not keep:
            shutil.rmtree(work, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f"mlspec-logbench-{shape}-"))
        for name in runs:
            runs[name].append(run_phase(name, n, work, batch, shape))
        # the floor must have written exactly the same bytes as records.jsonl
        with open(work / "floor.jsonl", "rb") as a, open(work / "log" / "records.jsonl", "rb") as b:
            while True:
                x, y = a.read(1 << 20), b.read(1 << 20)
                if x != y:
                    same = False
                    break
                if not x:
                    break
    try:
        med = {name: {k: _median([r[k] for r in rs]) for k in ("seconds", "cpu", "bytes", "peak_rss_mib")}
               for name, rs in runs.items()}
        gen, floor, log = med["gen"], med["floor"], med["log"]
        line_bytes = floor["bytes"] / n
        print(f"[{shape}] {n:,} records, {line_bytes:.0f} bytes/line, seal every {batch:,}"
              f" -> {runs['log'][0]['seals']} seals, Ed25519-signed (benchmark signer); median of {repeat} run(s)")
        print(f"  record generation  {gen['seconds']:6.2f} s wall {gen['cpu']:6.2f} s cpu  (included in both rows below)")
        for name, r in (("floor (bare write)", floor), ("InferenceLog", log)):
            print(f"  {name:18} {r['seconds']:6.2f} s wall {r['cpu']:6.2f} s cpu  {n / r['seconds']:>9,.0f} records/s"
                  f" ({n / r['cpu']:>9,.0f}/s per cpu-second)  {n * line_bytes / r['seconds'] / 1e6:6.1f} MB/s"
                  f"  peak RSS {r['peak_rss_mib']:.0f} MiB")
        ratio = _median([lg["seconds"] / fl["seconds"] for lg, fl in zip(runs["log"], runs["floor"])])
        ratio_cpu = _median([lg["cpu"] / fl["cpu"] for lg, fl in zip(runs["log"], runs["floor"])])
        net = _median([(lg["cpu"] - g["cpu"]) / (fl["cpu"] - g["cpu"])
                       for lg, fl, g in zip(runs["log"], runs["floor"], runs["gen"])])
        print(f"  ratio log/floor    {ratio:.3f} wall, {ratio_cpu:.3f} cpu  (sealing overhead {100 * (ratio - 1):.0f}% wall,"
              f" {100 * (ratio_cpu - 1):.0f}% cpu of the floor; {100 * (net - 1):.0f}% cpu with generation excluded from both)")
        print(f"  same bytes         {'yes' if same else 'NO'} (floor.jsonl == records.jsonl, every run)")
        if breakdown:
            b = run_phase("breakdown", min(n, 100_000), work, batch, shape)
            print(f"  breakdown (one process, CPU us/record, median of 3, {min(n, 100_000):,} records):")
            for k, us in b["us"].items():
                print(f"    {k:52} {us:6.2f}")
        if verify:
            v = run_phase("verify", n, work, batch, shape)
            print(f"  verify             {v['seconds']:6.2f} s wall {v['cpu']:6.2f} s cpu  {n / v['seconds']:,.0f} records/s"
                  f"  ok={v['ok']}"
                  f"  seals verified {v['seals_verified']}  peak RSS {v['peak_rss_mib']:.0f} MiB")
            print(f"  prove (1 record)   {v['prove_seconds']:6.2f} s  proof of {v['proof_len']} hashes")
    finally:
        if keep:
            print(f"  work directory     {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000, help="seal every N records")
    ap.add_argument("--repeat", type=int, default=3, help="runs per phase; medians are reported")
    ap.add_argument("--shape", choices=("full", "small", "both"), default="both",
                    help="full: ~845-byte records with features; small: digest-only ~650 bytes")
    ap.add_argument("--verify", action="store_true", help="also time `verify` and one `prove` on the result")
    ap.add_argument("--breakdown", action="store_true", help="also time the steps of the append path in one process")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:
        res = PHASES[args.phase](args.records, args.work, args.batch, args.shape)
        res["peak_rss_mib"] = _rss_mib()
        print(json.dumps(res))
        return

    from mlspec_attest.log.inference import FAST_ENCODER

    print(f"python {sys.version.split()[0]}, one process per phase, fast encoder: {FAST_ENCODER}"
          f" (floor and log use the same one), load average {os.getloadavg()[0]:.1f} at start")
    for shape in (("full", "small") if args.shape == "both" else (args.shape,)):
        run_shape(shape, args.records, args.batch, args.repeat, args.verify, args.keep, args.breakdown)


if __name__ == "__main__":
    main()
