"""One huge file on every core (issue #19 item 4): `mlspec hash --method shards` against openssl.

    .venv/bin/python benchmarks/shards_big.py [--size-gib 2] [--runs 5] [--file PATH]
    .venv/bin/python benchmarks/run.py --only big     # the same commands inside run.py's big case

Commands run interleaved within each round (a noisy neighbour hurts all alike), after one
untimed round that warms the page cache; wall time around the whole command. A control
(one pure-Python loop vs two at once) shows whether both cores were really free: at 2.0x
the machine gave one core's worth and no parallel path can beat its serial twin.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = Path(sys.executable)


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, 64 << 20)
            fh.write(os.urandom(n))
            left -= n


def commands(big: Path) -> dict[str, list[str] | str]:
    mlspec = [str(PY), "-m", "mlspec_attest.cli.main", "hash"]
    loop = f"'{PY}' -c 'sum(range(30_000_000))'"
    return {
        "openssl dgst -sha256": ["openssl", "dgst", "-sha256", str(big)],
        "mlspec hash (files, sha256)": [*mlspec, str(big)],
        "mlspec hash --method shards": [*mlspec, "--method", "shards", str(big)],
        "mlspec hash --hash blake3": [*mlspec, "--hash", "blake3", str(big)],
        "control: 1 loop": loop,
        "control: 2 loops at once": f"{loop} & {loop} & wait",
    }


CRITICAL_PATH = """
import collections, sys, threading, time
sys.path.insert(0, {repo!r})
from mlspec_attest import digests
per = collections.defaultdict(float)
real = digests._hash_range
def timed(path, s, e, alg):
    t = time.thread_time(); r = real(path, s, e, alg); per[threading.get_ident()] += time.thread_time() - t; return r
digests._hash_range = timed
digests.oms_digest({big!r}, method="shards", workers=2)
print(f"  shards: CPU per thread {{', '.join(f'{{v:.2f}}' for v in per.values())}} s: critical path "
      f"{{max(per.values()):.2f}} s (what two free cores would take, plus start-up)")
"""


def cpu_times(big: Path) -> None:
    """Load-independent view: openssl's CPU time vs the shards' busiest thread (the wall on two free cores)."""
    out = subprocess.run(["/usr/bin/time", "-f", "%U %S", "openssl", "dgst", "-sha256", str(big)],
                         capture_output=True, text=True, check=True)
    user, sys_ = (float(x) for x in out.stderr.split()[-2:])
    print(f"  openssl dgst -sha256: CPU {user + sys_:.2f} s (user+sys)")
    subprocess.run([str(PY), "-c", CRITICAL_PATH.format(repo=str(REPO), big=str(big))], check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--file", type=Path, help="hash this file instead of generating one")
    args = ap.parse_args(argv)
    tmp = None
    big = args.file
    if big is None:
        tmp = Path(tempfile.mkdtemp(prefix="mlspec-shards-"))
        big = tmp / "big.bin"
        write_random(big, int(args.size_gib * 1024 ** 3))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times: dict[str, list[float]] = {label: [] for label in commands(big)}
    try:
        cpu_times(big)
        for r in range(args.runs + 1):
            for label, cmd in commands(big).items():
                t0 = time.perf_counter()
                subprocess.run(cmd, shell=isinstance(cmd, str), check=True, env=env, stdout=subprocess.DEVNULL)
                if r:  # round 0 warms the page cache
                    times[label].append(time.perf_counter() - t0)
    finally:
        if tmp is not None:
            big.unlink(missing_ok=True)
            tmp.rmdir()
    base = statistics.median(times["openssl dgst -sha256"])
    print(f"{big.name if args.file else f'{args.size_gib:g} GiB random file'}, {args.runs} runs, medians "
          f"(load average at the end: {os.getloadavg()[0]:.1f})")
    for label, ts in times.items():
        med = statistics.median(ts)
        ratio = f"{med / base:.2f}x openssl" if not label.startswith("control") else ""
        print(f"  {label:32s} {med:7.2f} s  {ratio}   runs: {', '.join(f'{t:.2f}' for t in ts)}")
    ctl = statistics.median(times["control: 2 loops at once"]) / statistics.median(times["control: 1 loop"])
    print(f"  control ratio (2 loops / 1 loop): {ctl:.2f} (1.0 = two free cores, 2.0 = one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
