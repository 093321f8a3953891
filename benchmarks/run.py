"""mlspec performance against the peers, in one run: medians, ratios, targets.

    .venv/bin/python benchmarks/run.py                 # full: 2 GiB file, 5 runs each
    .venv/bin/python benchmarks/run.py --quick         # smaller data, 3 runs (a minute or two)
    .venv/bin/python benchmarks/run.py --size 0.5      # big-file case at 0.5 GiB (short disk)
    .venv/bin/python benchmarks/run.py --only small,verify13 --runs 7

What it does (docs/performance.md):

1. Creates benchmarks/.venv-peers (once) and installs the peers there, apart from
   the project's environment: model-signing (+ pyopenssl, which its CLI imports)
   and in-toto. ``--no-peers`` skips them (the openssl/sha256sum floors still run).
2. Generates every input itself under a temporary directory (deleted afterwards
   unless ``--keep``): one big random file, 200 x 10 MiB, 20,000 x 10 KiB, the
   13-stage lifecycle bundle and a 10,000-attestation chain (benchmarks/make_chain.py),
   and a signed 10-step in-toto layout with links (benchmarks/intoto_layout.py).
3. Runs every command once untimed (warm page cache, as the reference numbers were
   taken), then N timed rounds, commands interleaved within a round so a noisy
   neighbour hurts every tool alike. Wall time is measured around the whole command
   (interpreter start-up included); peak RSS per process comes from wait4().
4. Prints medians, ratios to the named baseline, and each target met or missed.
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
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = HERE / ".venv-peers"
PY = Path(sys.executable)
BIN = PY.parent
PEER_PACKAGES = ["model-signing", "pyopenssl", "in-toto"]
MiB = 1024 * 1024
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None  # peak RSS (%M)


# -- running commands ------------------------------------------------------------------
@dataclass
class Cmd:
    label: str
    argv: list[str] | str  # a str runs through sh -c (pipelines)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    times: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    failed: str = ""

    def run(self) -> None:
        """One timed run; peak RSS via GNU time, whose child is forked from a small process.

        (A child forked or vforked from this fat Python process inherits its RSS high-water
        mark through exec, so our own wait4() would report ~90 MiB for every tool.)
        """
        env = {**os.environ, **self.env}
        argv = ["sh", "-c", self.argv] if isinstance(self.argv, str) else list(self.argv)
        with tempfile.NamedTemporaryFile(prefix="mlspec-rss-") as rss, tempfile.TemporaryFile() as err:
            if GNU_TIME:
                argv = [GNU_TIME, "-q", "-f", "%M", "-o", rss.name, *argv]
            t0 = time.perf_counter()
            proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=self.cwd)
            elapsed = time.perf_counter() - t0
            if proc.returncode != 0:
                err.seek(0)
                self.failed = f"exit {proc.returncode}: {err.read().decode(errors='replace').strip()[-300:]}"
                return
            text = Path(rss.name).read_text().strip().splitlines()
        self.times.append(elapsed)
        self.rss_kib.append(int(text[-1]) if text and text[-1].isdigit() else 0)

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None


@dataclass
class Case:
    name: str
    title: str
    cmds: list[Cmd]
    baseline: str  # label the ratio column divides by

    def get(self, label: str) -> Cmd | None:
        return next((c for c in self.cmds if c.label == label), None)

    def ratio(self, label: str, base: str | None = None) -> float | None:
        a, b = self.get(label), self.get(base or self.baseline)
        if a is None or b is None or a.median is None or b.median is None or b.median == 0:
            return None
        return a.median / b.median


def run_case(case: Case, runs: int, log: bool) -> None:
    for c in case.cmds:  # warm-up: page cache, pyc files, venv
        c.run()
        c.times.clear()
        c.rss_kib.clear()
    for r in range(runs):
        for c in case.cmds:
            if not c.failed:
                c.run()
        if log:
            print(f"  [{case.name}] round {r + 1}/{runs}", file=sys.stderr)


# -- environment and data --------------------------------------------------------------
def ensure_peers(install: bool) -> Path | None:
    bin_dir = PEERS / "bin"
    ok = (bin_dir / "model_signing").exists() and (bin_dir / "in-toto-verify").exists()
    if not ok and install:
        print(f"creating {PEERS} for {', '.join(PEER_PACKAGES)} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
        ok = True
    return bin_dir if ok else None


def write_random(path: Path, size: int) -> None:
    block = 64 * MiB
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            n = min(block, left)
            fh.write(os.urandom(n))
            left -= n


def make_tree(root: Path, count: int, size: int, per_dir: int = 1000) -> None:
    for i in range(count):
        d = root / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06d}.bin").write_bytes(os.urandom(size))


def mlspec_hash_argv() -> list[str]:
    """`mlspec hash` once cli.py registers it; until then the module itself."""
    mlspec = str(BIN / "mlspec")
    probe = subprocess.run([mlspec, "hash", "--help"], capture_output=True)
    return [mlspec, "hash"] if probe.returncode == 0 else [str(PY), "-m", "mlspec_attest.cli.hash"]


# -- the cases ---------------------------------------------------------------------------
def build_cases(work: Path, args: argparse.Namespace, peers: Path | None) -> list[Case]:
    sys.path.insert(0, str(HERE))
    import make_chain

    quick = args.quick
    hash_cmd = mlspec_hash_argv()
    cases: list[Case] = []
    want = set(args.only.split(",")) if args.only else None

    def wanted(name: str) -> bool:
        return want is None or name in want

    ec_key = work / "ms-key.pem"
    if peers:
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", str(ec_key)], check=True, capture_output=True)

    def model_signing(target: Path) -> Cmd:
        return Cmd("model_signing sign key", [str(peers / "model_signing"), "sign", "key", "--private_key",
                                               str(ec_key), "--signature", str(work / "ms.sig"), str(target)])

    if wanted("big"):
        size = int((0.25 if quick and args.size is None else (args.size or 2.0)) * 1024 * MiB)
        big = work / "big.bin"
        print(f"generating {size / 1024 / MiB:.2f} GiB file", file=sys.stderr)
        write_random(big, size)
        cases.append(Case("big", f"sha256 of one {size / 1024 / MiB:g} GiB file", [
            Cmd("mlspec hash", [*hash_cmd, str(big)]),
            Cmd("mlspec hash --method shards", [*hash_cmd, "--method", "shards", str(big)]),  # shards_big.py
            Cmd("openssl dgst -sha256", ["openssl", "dgst", "-sha256", str(big)]),
            Cmd("sha256sum", ["sha256sum", str(big)]),
        ], baseline="openssl dgst -sha256"))

    if wanted("medium"):
        count, fsize = (40, 10 * MiB) if quick else (200, 10 * MiB)
        tree = work / "medium"
        print(f"generating {count} x {fsize // MiB} MiB", file=sys.stderr)
        make_tree(tree, count, fsize)
        cmds = [Cmd("mlspec hash", [*hash_cmd, str(tree)])]
        if peers:
            cmds.append(model_signing(tree))
        cmds.append(Cmd("find|xargs openssl dgst", f"find '{tree}' -type f -print0 | xargs -0 openssl dgst -sha256"))
        cmds.append(Cmd("find|xargs sha256sum", f"find '{tree}' -type f -print0 | xargs -0 sha256sum"))
        cases.append(Case("medium", f"{count} files of {fsize // MiB} MiB", cmds,
                          baseline="model_signing sign key" if peers else "find|xargs openssl dgst"))

    if wanted("small"):
        count = 4000 if quick else 20000
        tree = work / "small"
        print(f"generating {count} x 10 KiB", file=sys.stderr)
        make_tree(tree, count, 10 * 1024)
        cmds = [Cmd("mlspec hash", [*hash_cmd, str(tree)])]
        if peers:
            cmds.append(model_signing(tree))
            cmds.append(Cmd("in-toto-run", [str(peers / "in-toto-run"), "--step-name", "hash", "--signing-key",
                                            str(work / "itl" / "functionary.pem"), "--materials", "small",
                                            "--metadata-directory", str(work), "--no-command"], cwd=work))
        cmds.append(Cmd("find|xargs openssl dgst", f"find '{tree}' -type f -print0 | xargs -0 openssl dgst -sha256"))
        cases.append(Case("small", f"{count} files of 10 KiB", cmds,
                          baseline="model_signing sign key" if peers else "find|xargs openssl dgst"))

    if peers and (wanted("verify13") or wanted("small")):
        subprocess.run([str(peers / "python"), str(HERE / "intoto_layout.py"), str(work / "itl"), "10"], check=True)

    if wanted("verify13"):
        make_chain.build(13, work / "c13")
        cmds = [Cmd("mlspec verify (13 stages)", [str(BIN / "mlspec"), "verify", str(work / "c13" / "bundle"),
                                                  "--policy", str(work / "c13" / "policy.yaml")])]
        if peers:
            itl = work / "itl"
            cmds.append(Cmd("in-toto-verify (10 steps)", [str(peers / "in-toto-verify"), "--layout", "root.layout",
                                                           "--verification-keys", "owner.pub", "--link-dir", "links"],
                            cwd=itl))
        cases.append(Case("verify13", "verify the 13-stage lifecycle bundle (whole command)", cmds,
                          baseline="in-toto-verify (10 steps)" if peers else "mlspec verify (13 stages)"))

    if wanted("chain"):
        n = 2000 if quick else 10000
        print(f"generating a {n}-attestation chain", file=sys.stderr)
        make_chain.build(n, work / "chain")
        argv = [str(BIN / "mlspec"), "verify", str(work / "chain" / "bundle"), "--policy",
                str(work / "chain" / "policy.yaml")]
        cases.append(Case("chain", f"verify a {n}-attestation chain (whole command)", [
            Cmd(f"mlspec verify ({n})", argv),
            Cmd(f"mlspec verify ({n}), 1 worker", argv, env={"MLSPEC_VERIFY_WORKERS": "1"}),
        ], baseline=f"mlspec verify ({n}), 1 worker"))

    if want and "leakage" in want:  # benchmarks/leakage_scale.py, only when asked: 343 MB of data, minutes
        cases.append(__import__("leakage_scale").case(work, 2_000_000 if quick else 14_000_000, Cmd, Case))

    if wanted("cores"):
        # Control: are both cores really ours right now? Pure-Python work, one copy vs two at once.
        # 1.0x means two idle cores; 2.0x means the machine gives us one core's worth (noisy neighbours),
        # and no parallel code path can beat its serial twin in that run.
        loop = f"'{PY}' -c 'sum(range(30_000_000))'"
        cases.append(Case("cores", "control: pure-Python loop, 1 copy vs 2 at once", [
            Cmd("1 loop", loop),
            Cmd("2 loops in parallel", f"{loop} & {loop} & wait"),
        ], baseline="1 loop"))

    if wanted("help"):
        cases.append(Case("help", "mlspec --help", [
            Cmd("mlspec --help", [str(BIN / "mlspec"), "--help"]),
            Cmd("python -c pass", [str(PY), "-c", "pass"]),
        ], baseline="python -c pass"))
    return cases


# -- targets -------------------------------------------------------------------------------
def targets(cases: dict[str, Case], quick: bool) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) rows; met is None when the case or the peer did not run."""
    rows: list[tuple[str, str, bool | None]] = []

    def ratio_row(name: str, label: str, base: str, limit: float, text: str) -> None:
        case = cases.get(name)
        r = case.ratio(label, base) if case else None
        rows.append((text, f"{r:.2f}x" if r is not None else "n/a", None if r is None else r <= limit))

    def abs_row(name: str, label: str, limit: float, text: str) -> None:
        case = cases.get(name)
        cmd = next((c for c in case.cmds if c.label.startswith(label)), None) if case else None
        m = cmd.median if cmd else None
        rows.append((text, f"{m:.3f} s" if m is not None else "n/a", None if m is None else m < limit))

    ratio_row("big", "mlspec hash", "openssl dgst -sha256", 1.0, "one big file <= 1.0x openssl dgst (aim 0.8x)")
    ratio_row("medium", "mlspec hash", "model_signing sign key", 0.8, "200 x 10 MiB <= 0.8x model_signing")
    ratio_row("small", "mlspec hash", "model_signing sign key", 0.15, "20,000 x 10 KiB <= 0.15x model_signing")
    ratio_row("small", "mlspec hash", "find|xargs openssl dgst", 1.5, "20,000 x 10 KiB <= 1.5x find|xargs openssl")
    ratio_row("verify13", "mlspec verify (13 stages)", "in-toto-verify (10 steps)", 2.0,
              "verify 13-stage bundle <= 2x in-toto-verify (aim 1x)")
    abs_row("chain", "mlspec verify (", 1.5, "10,000-attestation chain verified < 1.5 s")
    abs_row("help", "mlspec --help", 0.15, "mlspec --help < 0.15 s")
    cores = cases.get("cores")
    r = cores.ratio("2 loops in parallel") if cores else None
    if r is not None:
        rows.append(("control: effective cores free for this run (2 / ratio)", f"{2 / r:.2f}", None if r else None))
    big = cases.get("big")
    cmd = big.get("mlspec hash") if big else None
    if cmd and cmd.rss_kib:
        peak = max(cmd.rss_kib) / 1024
        rows.append(("peak RSS hashing the big file < 64 MiB", f"{peak:.1f} MiB", peak < 64))
    if quick:
        rows = [(t + " [quick: smaller data]", m, ok) for t, m, ok in rows]
    return rows


def report(cases: list[Case], runs: int, quick: bool, started: float) -> str:
    lines = [f"mlspec benchmarks: {runs} timed runs per command, medians (warm cache); "
             f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}; total {time.time() - started:.0f} s", ""]
    lines.append("| case | command | median s | min s | peak RSS MiB | ratio |")
    lines.append("|---|---|---:|---:|---:|---|")
    for case in cases:
        for c in case.cmds:
            if c.failed:
                lines.append(f"| {case.title} | {c.label} | failed: {c.failed} | | | |")
                continue
            r = case.ratio(c.label)
            ratio = f"{r:.2f}x {case.baseline}" if r is not None and c.label != case.baseline else "baseline"
            lines.append(f"| {case.title} | {c.label} | {c.median:.3f} | {min(c.times):.3f} | "
                         f"{max(c.rss_kib) / 1024:.1f} | {ratio} |")
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    for text, measured, ok in targets({c.name: c for c in cases}, quick):
        verdict = "met" if ok else "MISSED" if ok is False else ("info" if measured != "n/a" else "not run")
        lines.append(f"| {text} | {measured} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="mlspec performance vs openssl, sha256sum, model_signing, in-toto.")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per command (default 5; --quick 3)")
    ap.add_argument("--quick", action="store_true", help="smaller data and fewer runs (a smoke test)")
    ap.add_argument("--size", type=float, default=None, help="big-file size in GiB (default 2; --quick 0.25)")
    ap.add_argument("--only", help="comma-separated cases: big,medium,small,verify13,chain,help,cores")
    ap.add_argument("--no-peers", action="store_true", help="skip model-signing and in-toto")
    ap.add_argument("--tmp", type=Path, default=None, help="where to generate data (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument("--output", type=Path, help="also write the table (Markdown) here")
    args = ap.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    started = time.time()
    peers = None if args.no_peers else ensure_peers(install=True)
    # Byte-compile the project once, as an installed package is (the peers' venv has .pyc files):
    # with PYTHONDONTWRITEBYTECODE set, an editable install would otherwise recompile every
    # module of mlspec_attest on every timed run (~50 ms of each `mlspec verify`).
    subprocess.run([str(PY), "-m", "compileall", "-q", str(REPO / "mlspec_attest")], check=False,
                   stdout=subprocess.DEVNULL)

    work = Path(tempfile.mkdtemp(prefix="mlspec-bench-", dir=args.tmp))
    need = (args.size or (0.25 if args.quick else 2.0)) * 1.1 + (0.5 if args.quick else 2.5)
    free = shutil.disk_usage(work).free / 1024 ** 3
    if free < need:
        print(f"error: {work} has {free:.1f} GiB free, the data needs about {need:.1f} GiB; "
              "use --size, --quick, --only or --tmp", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 2
    try:
        cases = build_cases(work, args, peers)
        for case in cases:
            print(f"running {case.name}: {case.title}", file=sys.stderr)
            run_case(case, runs, log=True)
            if not args.keep:  # free the disk (and page cache) as soon as a data set is done
                if case.name == "big":
                    (work / "big.bin").unlink(missing_ok=True)
                elif case.name == "medium":
                    shutil.rmtree(work / "medium", ignore_errors=True)
        table = report(cases, runs, args.quick, started)
        print(table)
        if args.output:
            args.output.write_text(table + "\n")
    finally:
        if args.keep:
            print(f"data kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
