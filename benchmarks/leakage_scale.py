"""The leakage proof at scale (issue #19 item 1): 14 million rows, whole commands.

    .venv/bin/python benchmarks/leakage_scale.py [--rows 14000000] [--runs 3] [--keep DIR]
    .venv/bin/python benchmarks/run.py --only leakage     # the same case inside run.py

Generates a split of ROWS rows (60/20/20 train/validation/hold-back, ~24 bytes a row:
343 MB at 14M) under a project whose chain runs objectives .. validate, then times

* ``mlspec attest stage split`` with ``--fingerprints`` for the three sets (on a fresh
  copy of the pre-split bundle each run; the copy is a few KB),
* ``mlspec verify`` of the whole 13-stage chain built on that split,
* the fingerprinting alone (``leakage.fingerprints_of_csv`` of the three sets) and the
  gate's leakage check alone (``verify.leakage.check_leakage``),

with GNU time (wall, peak RSS of the largest process; the fingerprinting's forked
helper is reported separately by the Python timings), and prints the bundle growth in
bytes a row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = Path(sys.executable)
SETS = (("train", 0.6), ("validation", 0.2), ("holdback", 0.2))


def write_csv(path: Path, start: int, n: int, seed: int) -> None:
    """n rows ``id,age,income,score,label`` (ids from start: the sets share no row)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with path.open("wb") as fh:
        fh.write(b"id,age,income,score,label\n")
        for s in range(start, start + n, 1_000_000):
            k = min(1_000_000, start + n - s)
            cols = zip(range(s, s + k), rng.integers(18, 90, k).tolist(), rng.integers(1000, 99999, k).tolist(),
                       rng.integers(0, 9999, k).tolist(), rng.integers(0, 2, k).tolist())
            fh.write(("\n".join(f"{a},{b},{c},{d},{e}" for a, b, c, d, e in cols) + "\n").encode())


def prepare(work: Path, rows: int) -> dict[str, Path]:
    """The project, its pre-split bundle, the three CSVs and the full chain (bundle ``full``)."""
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO))
    from conftest import POLICIES, Project, build_lifecycle  # the tests' small signed project

    from mlspec_attest.keys import generate

    root = work / "proj"
    (root / "policies").mkdir(parents=True)
    for name in ("default.yaml",):
        shutil.copyfile(POLICIES / name, root / "policies" / name)
    generate("owner", root / "keys", "ed25519", None)
    generate("pipeline", root / "keys", "ed25519", None)
    project = Project(root, root / "pre")
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate"))
    start = 0
    for i, (name, share) in enumerate(SETS):
        n = round(rows * share) if name != "holdback" else rows - start
        print(f"generating {name}: {n:,} rows", file=sys.stderr)
        write_csv(root / "work" / f"{name}.csv", start, n, seed=i)
        start += n
    shutil.copytree(root / "pre", root / "full")
    # This tree's mlspec_attest, not whatever the venv has installed (the commands below do the same).
    subprocess.run(split_argv(root, "full"), check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(REPO)})
    full = Project(root, root / "full")
    pipe = full.attestor("pipeline")
    import json

    full.write("out/model.bin", "model-bytes")
    full.write("work/evaluation.json", '{"metrics": {"accuracy": 0.9}}')
    full.write("work/test.json", json.dumps({"metrics": {"accuracy": 0.9}}))
    full.write("pkg/model.bin", "model-bytes")
    pipe.attest("train", materials=["train-data=work/train.csv"], products=["model=out/model.bin"],
                metadata={"framework": {"name": "sklearn"}, "hyperparameters": {"C": 1.0}})
    pipe.attest("evaluate", materials=["model=out/model.bin", "eval-data=work/validation.csv"],
                products=["evaluation-report=work/evaluation.json"], metadata_files=[root / "work/evaluation.json"])
    pipe.attest("test", materials=["model=out/model.bin", "holdback-data=work/holdback.csv"],
                products=["test-report=work/test.json"], metadata_files=[root / "work/test.json"])
    pipe.attest("package", materials=["model=out/model.bin"], products=["package=pkg"],
                metadata={"name": "demo-model", "contents": ["model.bin"]})
    serve = pipe.attest("serve", materials=["package=pkg"],
                        metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})
    from mlspec_attest.digests import digest_path

    pipe.attest("monitor", materials=["pkg"], metadata={
        "signals": {"latency_p99_ms": 12.0}, "serve_attestation": serve.payload_sha256,
        "rollback_target": {"name": "pkg", "digest": {"sha256": digest_path(root / "pkg").sha256}}})
    pipe.attest("log", metadata={"tree_size": 0, "pipeline": serve.payload_sha256,
                                 "root_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})
    return {"root": root}


def mlspec() -> list[str]:
    return [str(PY), "-m", "mlspec_attest.cli.main"]


def split_argv(root: Path, bundle: str) -> list[str]:
    argv = [*mlspec(), "attest", "stage", "split", "--bundle", bundle, "--key", "keys/pipeline.key",
            "--material", "work/clean.csv"]
    roles = {"train": "train-data", "validation": "eval-data", "holdback": "holdback-data"}
    for name, _ in SETS:
        argv += ["--product", f"{roles[name]}=work/{name}.csv", "--fingerprints", f"{name}=work/{name}.csv"]
    return argv + ["--set", "sets.train.rows=1"]


def commands(root: Path) -> dict[str, str]:
    """Shell commands (run from root) for run.py's Cmd or the loop below."""
    env = f"PYTHONPATH='{REPO}'"
    split = " ".join(f"'{a}'" for a in split_argv(root, "run"))
    verify = " ".join(f"'{a}'" for a in [*mlspec(), "verify", "full", "--policy", "policies/default.yaml"])
    replay = " ".join(f"'{a}'" for a in [*mlspec(), "replay", "full", "--policy", "policies/default.yaml"])
    return {
        "mlspec attest stage split (3 sets)": f"rm -rf run && cp -a pre run && {env} {split}",
        "mlspec verify (13 stages)": f"{env} {verify}",
        "mlspec replay": f"{env} {replay}",
    }


def _register() -> None:
    """run.py's ``leakage`` case (only with ``--only leakage``: 343 MB of data, minutes)."""
    if "run" not in sys.modules:  # run as a script of its own, not loaded by run.py
        return
    from run import BenchContext, Case, Cmd, Target, register

    @register("leakage",
              Target("fingerprint 14M rows (attest split, 3 sets) <= 5 s", "leakage", "mlspec attest stage split",
                     1.0, seconds=5.0),
              Target("fingerprint 14M rows: peak RSS <= 300 MB", "leakage", "mlspec attest stage split", 1.0,
                     seconds=286.0, metric="rss"),
              Target("gate with the 14M-row leakage proof <= 1.5 s", "leakage", "mlspec verify (13 stages)", 1.0,
                     seconds=1.5),
              Target("gate with the 14M-row leakage proof: peak RSS <= 200 MB", "leakage",
                     "mlspec verify (13 stages)", 1.0, seconds=191.0, metric="rss"))
    def build(b: BenchContext) -> object:
        if not b.args.only or "leakage" not in b.args.only.split(","):
            return None
        return case(b.work, 2_000_000 if b.args.quick else 14_000_000, Cmd, Case)


def case(work: Path, rows: int, cmd_cls: type, case_cls: type) -> object:
    """run.py's case: ``Case("leakage", ...)`` of the three whole commands."""
    root = prepare(work, rows)["root"]
    cmds = [cmd_cls(label, text, cwd=root) for label, text in commands(root).items()]
    return case_cls("leakage", f"leakage proof of a {rows:,}-row split (whole commands)", cmds,
                    baseline="mlspec verify (13 stages)", settle=True)


INNER = """
import resource, sys, time, os
sys.path.insert(0, {repo!r})
from mlspec_attest import leakage as L
t, c = time.perf_counter(), time.process_time()
total = 0
for name in ("train", "validation", "holdback"):
    total += len(L.fingerprints_of_csv(os.path.join({root!r}, "work", name + ".csv")))
t1 = time.perf_counter()
child = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"fingerprinting alone: {{t1 - t:.2f}} s wall, {{time.process_time() - c:.2f}} s CPU "
      f"(+ helper {{child.ru_utime + child.ru_stime:.2f}} s), blobs {{total}} bytes, "
      f"peak RSS {{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}} MB "
      f"(+ helper {{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}} MB)")
"""

CHECK = """
import resource, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from mlspec_attest.verify import verifier
from mlspec_attest.verify.leakage import check_leakage
seen = {{}}
real = check_leakage
def timed(ctx):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t, c = time.perf_counter(), time.process_time(); real(ctx)
    seen["s"], seen["cpu"] = time.perf_counter() - t, time.process_time() - c
    seen["rss"] = (before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
verifier.CHECKS = tuple(timed if c is real else c for c in verifier.CHECKS)
from mlspec_attest.verify import verify_bundle
report = verify_bundle(Path({root!r}) / "full", Path({root!r}) / "policies" / "default.yaml")
print(f"check_leakage alone: {{seen['s']:.2f}} s wall, {{seen['cpu']:.2f}} s CPU, peak RSS before {{seen['rss'][0] / 1024:.0f}} MB, "
      f"after {{seen['rss'][1] / 1024:.0f}} MB; errors: {{sorted({{f.code for f in report.findings if f.severity == 'error'}})}}")
"""


def inner(root: Path) -> None:
    """The fingerprinting and the gate's check alone, in fresh interpreters."""
    for code in (INNER, CHECK):
        subprocess.run([str(PY), "-c", code.format(repo=str(REPO), root=str(root))], check=False)
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=14_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="work here and keep the data")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="mlspec-leakage-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        root = work / "proj" if (work / "proj" / "full").is_dir() else prepare(work, args.rows)["root"]  # --keep reuses
        size = sum((root / "work" / f"{n}.csv").stat().st_size for n, _ in SETS)
        print(f"split: {args.rows:,} rows, {size / 1e6:.0f} MB")
        for label, text in commands(root).items():
            results = []
            for _ in range(args.runs + 1):  # the first run warms the page cache
                out = subprocess.run(["/usr/bin/time", "-f", "%e %M %U %S", "sh", "-c", text + " >/dev/null"], cwd=root,
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"{label} failed (exit {out.returncode}): {out.stderr.strip()[-400:]}")
                results.append(out.stderr.strip().splitlines()[-1])
            wall = sorted(float(r.split()[0]) for r in results[1:])
            rss = sorted(int(r.split()[1]) for r in results[1:])
            cpu = sorted(float(r.split()[2]) + float(r.split()[3]) for r in results[1:])
            print(f"{label}: median {wall[len(wall) // 2]:.2f} s wall, {cpu[len(cpu) // 2]:.2f} s CPU (user+sys), "
                  f"peak RSS {rss[len(rss) // 2] / 1024:.0f} MB (runs, 'wall KB user sys': {'; '.join(results[1:])})")
        before = sum(p.stat().st_size for p in (root / "pre" / "blobs").glob("*")) if (root / "pre" / "blobs").is_dir() \
            else 0
        after = sum(p.stat().st_size for p in (root / "run" / "blobs").glob("*"))
        print(f"bundle growth (blobs): {after - before:,} bytes = {(after - before) / args.rows:.2f} bytes a row")
        inner(root)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


_register()

if __name__ == "__main__":
    sys.exit(main())
