"""Exhaustive tamper run: every single-byte change of every file of a small signed bundle.

For each of the 4 attestations and the signed chain head, every byte position is
replaced by each of its 8 bit flips and by 21 JSON/base64 structure characters;
then every structural attack (reorder, duplicate, remove, insert, splice, moved,
copied and stripped signatures, payloadType, keyid swaps, ECDSA-for-Ed25519,
head removal/rollback, policy swap). Each mutated bundle is verified in-process
with one parsed policy. Prints per-class counts: tried, refused, accepted (must be
0), layout (accepted with the ENVELOPE_NOT_CANONICAL warning, every file still parsing to
the original envelope: another serialisation of the same signed content), input errors
(exit 2, also a refusal) and crashes (must be 0).

    .venv/bin/python benchmarks/mutation_suite.py [--jobs 2] [--fraction 1.0] [--big 3000]

Exit status 1 if any mutation was accepted or crashed the verifier.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tamper_harness import Harness, Tally, byte_values, format_tally

TMP = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _bytes_share(args: tuple[int, int, float, int]) -> Tally:
    """One worker: positions with index % jobs == share, on its own harness."""
    share, jobs, fraction, seed = args
    rng = random.Random(seed + share)
    harness = Harness(Path(tempfile.mkdtemp(dir=TMP)) / "p")

    def positions(path: Path, data: bytes):  # type: ignore[no-untyped-def]
        for pos in range(share, len(data), jobs):
            for value in byte_values(data[pos]):
                if fraction >= 1.0 or rng.random() < fraction:
                    yield pos, value
    return harness.run(harness.byte_mutations(positions), Tally())


def _big_sample(n: int, seed: int) -> Tally:
    """A random sample of single-byte changes over the full 13-stage lifecycle (default policy)."""
    import shutil

    from conftest import POLICIES, Project, build_lifecycle

    from mlspec_attest.keys import generate
    from mlspec_attest.policy import Policy
    from mlspec_attest.verify import Verifier

    root = Path(tempfile.mkdtemp(dir=TMP)) / "big"
    (root / "policies").mkdir(parents=True)
    shutil.copyfile(POLICIES / "default.yaml", root / "policies" / "default.yaml")
    for name, kind in (("owner", "ed25519"), ("pipeline", "ed25519"), ("intruder", "ecdsa-p256")):
        generate(name, root / "keys", kind, None)
    project = Project(root=root, bundle=root / "bundle")
    build_lifecycle(project)
    verifier = Verifier(Policy.from_file(root / "policies" / "default.yaml"))
    assert verifier.verify(project.bundle).passed
    files = sorted((project.bundle / "attestations").glob("*.dsse.json"))
    original = {p: p.read_bytes() for p in files}
    rng = random.Random(seed)
    tally = Tally()
    from mlspec_attest.errors import InputError

    start = time.perf_counter()
    for _ in range(n):
        path = rng.choice(files)
        data = original[path]
        pos = rng.randrange(len(data))
        value = rng.choice(byte_values(data[pos]))
        path.write_bytes(data[:pos] + bytes([value]) + data[pos + 1:])
        try:
            report = verifier.verify(project.bundle)
            outcome = "refused" if not report.passed else "accepted"
            if report.passed and _same_envelope(path.read_bytes(), data):
                outcome = "layout"  # same signed content in another layout: a warning, not a forgery
        except InputError:
            outcome = "input_error"
        except Exception:
            outcome = "crash"
        finally:
            path.write_bytes(data)
        tally.add("single-byte (13-stage)", outcome, f"{path.name}[{pos}]={value:#04x}")
    tally.seconds["single-byte (13-stage)"] = time.perf_counter() - start
    return tally


def _same_envelope(now: bytes, before: bytes) -> bool:
    """The mutated file still parses strictly to the original envelope (payloadType, payload, signatures)."""
    from mlspec_attest.errors import InputError
    from mlspec_attest.model.canonical import parse_json
    from mlspec_attest.model.envelope import Envelope

    try:
        a = Envelope.from_dict(parse_json(now))
    except (ValueError, InputError):
        return False
    b = Envelope.from_dict(parse_json(before))
    return (a.payload_type, a.payload, a.signatures) == (b.payload_type, b.payload, b.signatures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fraction", type=float, default=1.0, help="share of (position, value) pairs to try")
    parser.add_argument("--big", type=int, default=3000, help="random single-byte changes of a 13-stage bundle")
    parser.add_argument("--seed", type=int, default=8785)
    args = parser.parse_args()
    started = time.perf_counter()
    total = Tally()
    harness = Harness(Path(tempfile.mkdtemp(dir=TMP)) / "p")
    sizes = {p.name: len(d) for p, d in harness.original.items()}
    print(f"bundle: {len(sizes)} files, {sum(sizes.values())} bytes: {sizes}")
    harness.run(harness.structural_mutations(), total)
    harness.policy_swaps(total)
    with Pool(args.jobs) as pool:
        parts = pool.map(_bytes_share, [(i, args.jobs, args.fraction, args.seed) for i in range(args.jobs)])
    if args.big:
        parts.append(_big_sample(args.big, args.seed))
    for part in parts:
        for cls, counts in part.counts.items():
            total.counts.setdefault(cls, type(counts)()).update(counts)
            total.seconds[cls] = total.seconds.get(cls, 0.0) + part.seconds.get(cls, 0.0)
        total.examples.extend(part.examples)
    print(format_tally(total))
    bad = total.total("accepted") + total.total("crash")
    print(f"mutations tried {total.tried()}, refused {total.tried() - bad - total.total('layout')} "
          f"(findings {total.total('refused')}, input errors {total.total('input_error')}), "
          f"layout only {total.total('layout')} (same signed content, ENVELOPE_NOT_CANONICAL warning), "
          f"accepted {total.total('accepted')}, crashes {total.total('crash')}; "
          f"wall {time.perf_counter() - started:.0f} s with {args.jobs} job(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
