"""``mlspec push`` / ``pull`` / ``verify oci://`` of a 200 MiB package against a local registry.

    .venv/bin/python benchmarks/oci_push_pull.py               # 200 MiB, 3 runs
    .venv/bin/python benchmarks/oci_push_pull.py --mib 50 --runs 5

Builds the 13-stage demo with one extra 200 MiB (random) file in its package, starts
Debian's docker-registry on 127.0.0.1 (storage in a temporary directory), and times the
commands as a release engineer runs them, interpreter start-up included:

- push (fresh repository each run: every blob is uploaded; the pre-push gate hashes the package),
- push again to the same tag (the artifact is there: only HEAD requests and the chain),
- verify oci:// (referrers, chain download, gate, layer check: the model is not downloaded),
- pull into a new directory (chain + every layer streamed to disk and digest-checked).

Floors printed beside them: sha256sum of the package and a plain copy of it (the disk).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this tree first, then the registry fixture
MiB = 1024 * 1024


def build_demo(root: Path, mib: int) -> Path:
    """The demo project, its package holding an extra ``weights.bin`` of ``mib`` MiB before it is attested."""
    from mlspec_attest.demo import credit
    from mlspec_attest.demo.runner import run_demo

    original = credit.CreditPipeline.package

    def package_with_weights(self: credit.CreditPipeline) -> None:
        pkg = self.result.package
        pkg.mkdir(parents=True, exist_ok=True)
        with open(pkg / "weights.bin", "wb") as fh:
            for _ in range(mib):
                fh.write(os.urandom(MiB))
        original(self)

    credit.CreditPipeline.package = package_with_weights  # type: ignore[method-assign]
    try:
        assert run_demo(root, echo=lambda _line: None) == 0, "the demo's own gate failed"
    finally:
        credit.CreditPipeline.package = original  # type: ignore[method-assign]
    return root / "package" / "credit-model"


def timed(argv: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=200, help="size of the extra package file (default 200)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from oci_registry import MISSING, running_registry

    if MISSING:
        raise SystemExit(MISSING)
    mlspec = [sys.executable, "-m", "mlspec_attest.cli.main"]
    with tempfile.TemporaryDirectory(prefix="mlspec-oci-bench-") as tmp:
        work = Path(tmp)
        root = work / "demo"
        package = build_demo(root, args.mib)
        size = sum(p.stat().st_size for p in package.rglob("*") if p.is_file())
        files = len(list(package.iterdir()))
        (work / "registry").mkdir()
        results: dict[str, list[float]] = {k: [] for k in ("sha256sum", "cp", "push", "push again", "verify oci://",
                                                          "pull")}
        with running_registry(work / "registry") as address:
            for run in range(args.runs):
                results["sha256sum"].append(timed(["sh", "-c", f"sha256sum {package}/*"], root))
                copy = work / f"copy-{run}"
                results["cp"].append(timed(["cp", "-r", str(package), str(copy)], root))
                shutil.rmtree(copy)
                target = f"oci://{address}/bench/run-{run}:v1"
                results["push"].append(timed([*mlspec, "push", "bundle", target, "--plain-http"], root))
                results["push again"].append(timed([*mlspec, "push", "bundle", target, "--plain-http"], root))
                results["verify oci://"].append(timed([*mlspec, "verify", target, "--plain-http"], root))
                pulled = work / f"pulled-{run}"
                results["pull"].append(timed([*mlspec, "pull", target, str(pulled), "--plain-http"], root))
                shutil.rmtree(pulled)
    print(f"package: {size / MiB:.1f} MiB in {files} files; {args.runs} runs; median "
          f"(min-max) wall seconds")
    for label, values in results.items():
        median = statistics.median(values)
        print(f"  {label:<14} {median:7.2f}  ({min(values):.2f}-{max(values):.2f})  "
              f"{size / MiB / median:7.1f} MiB/s")


if __name__ == "__main__":
    main()
