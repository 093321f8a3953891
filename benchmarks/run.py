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
   13-stage lifecycle bundle, a 10,000- and two 100,000-attestation chains (one with
   4 KiB larger payloads: peak memory must not follow them; benchmarks/make_chain.py),
   and a signed 10-step in-toto layout with links (benchmarks/intoto_layout.py).
3. Runs every command once untimed (warm page cache, as the reference numbers were
   taken), then N timed rounds, commands interleaved within a round so a noisy
   neighbour hurts every tool alike. Wall time is measured around the whole command
   (interpreter start-up included); peak RSS per process comes from wait4().
4. Prints medians, ratios to the named baseline, and every target of issue #19 as a
   ratio against its reference, met or missed, with the machine it ran on;
   ``--update-readme`` writes that table into README.md (between the bench markers).

Cases are registered by name (``@register("name", Target(...))``); a case in a module
of its own registers itself the same way (``from run import register, Case, Cmd``)
once its name is added to ``CASE_MODULES``: a one-line edit here.
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
from collections.abc import Callable
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
    cleanup: list[Path] = field(default_factory=list)  # data freed as soon as the case has run (unless --keep)
    max_runs: int | None = None  # long cases: at most this many timed runs, and no warm-up run
    # Commands that size their process pools by the 1-minute load (mlspec_attest/_internal/workers.py)
    # start only once the load the benchmark itself left behind has decayed (see settle_load).
    settle: bool = False
    # Long cases have no warm-up run; their inputs are read once instead, so every case is timed on a
    # warm page cache (a 100,000-chain read cold after the big-file cases took 25.8 s instead of 15.2 s).
    prefetch: list[Path] = field(default_factory=list)

    def get(self, label: str) -> Cmd | None:
        return next((c for c in self.cmds if c.label == label), None)

    def ratio(self, label: str, base: str | None = None) -> float | None:
        a, b = self.get(label), self.get(base or self.baseline)
        if a is None or b is None or a.median is None or b.median is None or b.median == 0:
            return None
        return a.median / b.median


SETTLE_MAX_S = 90.0


def settle_load(log: bool) -> None:
    """Wait (at most SETTLE_MAX_S) until the 1-minute load is below cores - 0.5.

    mlspec's verifier and fingerprinter fall back to one process when the load already
    exceeds the cores by half a core, as ``make --load-average`` does; right after the
    benchmark's own parallel commands the load average (a one-minute decay) says so for
    a while although the machine is idle, and a 100,000-chain then took 25.7 s instead of
    14.3 s. Waiting measures what an idle machine gives; a machine others keep busy still
    measures busy (the wait gives up, and the control row shows it).
    """
    cores = os.cpu_count() or 1
    t0 = time.monotonic()
    while os.getloadavg()[0] >= cores - 0.5 and time.monotonic() - t0 < SETTLE_MAX_S:
        time.sleep(1.0)
    waited = time.monotonic() - t0
    if log and waited >= 1.0:
        print(f"    waited {waited:.0f} s for the load average to settle (now {os.getloadavg()[0]:.2f})",
              file=sys.stderr)


def prefetch(directory: Path) -> None:
    """Read every file under ``directory`` once (into the page cache)."""
    for root, _dirs, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as fh:
                while fh.read(1 << 20):
                    pass


def run_case(case: Case, runs: int, log: bool) -> None:
    if case.max_runs is not None:
        runs = min(runs, case.max_runs)
    for directory in case.prefetch:
        prefetch(directory)
    for c in case.cmds if case.max_runs is None else ():  # warm-up: page cache, pyc files, venv
        c.run()
        c.times.clear()
        c.rss_kib.clear()
    for r in range(runs):
        for c in case.cmds:
            if not c.failed:
                if case.settle:
                    settle_load(log)
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
    probe = subprocess.run([*MLSPEC, "hash", "--help"], capture_output=True)
    return [*MLSPEC, "hash"] if probe.returncode == 0 else [str(PY), "-m", "mlspec_attest.cli.hash"]


# -- the case registry --------------------------------------------------------------------
@dataclass
class Target:
    """One figure of issue #19: ``label`` of case ``case`` against its reference.

    The reference is another command's median (``base``) or a number of seconds
    (``seconds``); ``limit`` is the ratio at or below which the target is met.
    """

    text: str
    case: str
    label: str  # a command label (a prefix is enough)
    limit: float
    base: str | None = None
    seconds: float | None = None
    metric: str = "time"  # or "rss": peak RSS instead of the median time


@dataclass
class BenchContext:
    """What a case builder gets: the scratch directory, the parsed flags, the peers' bin directory."""

    work: Path
    args: argparse.Namespace
    peers: Path | None
    cache: dict[str, object] = field(default_factory=dict)  # shared between builders (e.g. generated data)


Builder = Callable[[BenchContext], "Case | list[Case] | None"]
REGISTRY: dict[str, Builder] = {}
TARGETS: list[Target] = []


def register(name: str, *targets: Target) -> Callable[[Builder], Builder]:
    """Register a case builder under ``name`` (the ``--only`` name) with its targets."""
    def add(builder: Builder) -> Builder:
        REGISTRY[name] = builder
        TARGETS.extend(targets)
        return builder
    return add


# Further cases live in their own modules beside this file and register themselves on import;
# adding one is one line here (e.g. "bench_leakage").
CASE_MODULES: tuple[str, ...] = ("leakage_scale",)


def load_case_modules() -> None:
    import importlib

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    sys.modules.setdefault("run", sys.modules[__name__])  # `from run import register` gets this registry
    for name in CASE_MODULES:
        importlib.import_module(name)


def build_cases(work: Path, args: argparse.Namespace, peers: Path | None) -> list[Case]:
    want = set(args.only.split(",")) if args.only else None
    unknown = sorted((want or set()) - set(REGISTRY))
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    bctx = BenchContext(work, args, peers)
    cases: list[Case] = []
    for name, builder in REGISTRY.items():
        if want is None or name in want:
            built = builder(bctx)
            cases.extend(built if isinstance(built, list) else [built] if built is not None else [])
    return cases


# -- the cases ---------------------------------------------------------------------------
def _ec_key(b: BenchContext) -> Path:
    key = b.work / "ms-key.pem"
    if not key.exists():
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", str(key)], check=True, capture_output=True)
    return key


def _model_signing(b: BenchContext, target: Path) -> Cmd:
    assert b.peers is not None
    return Cmd("model_signing sign key", [str(b.peers / "model_signing"), "sign", "key", "--private_key",
                                          str(_ec_key(b)), "--signature", str(b.work / "ms.sig"), str(target)])


def _intoto_layout(b: BenchContext) -> Path | None:
    """The signed 10-step in-toto layout with links (once per run), or None without peers."""
    if b.peers is None:
        return None
    itl = b.work / "itl"
    if not itl.exists():
        subprocess.run([str(b.peers / "python"), str(HERE / "intoto_layout.py"), str(itl), "10"], check=True)
    return itl


def _hash_cmd(b: BenchContext) -> list[str]:
    if "hash" not in b.cache:
        b.cache["hash"] = mlspec_hash_argv()
    return list(b.cache["hash"])  # type: ignore[call-overload]


def _chain_data(b: BenchContext, name: str, n: int, **options: object) -> Path:
    """``make_chain.build(n, ...)`` into the scratch directory, or into ``--reuse DIR`` once and then reused
    (a 100,000-chain takes a minute to generate; its head stays valid for 7 days)."""
    base = b.args.reuse or b.work
    out = base / name
    if b.args.reuse and (out / "policy.yaml").exists():
        print(f"reusing {out}", file=sys.stderr)
        return out
    print(f"generating a {n}-attestation chain in {out}", file=sys.stderr)
    _make_chain().build(n, out, **options)  # type: ignore[attr-defined]
    return out


def _make_chain() -> object:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import make_chain

    return make_chain

MLSPEC = [str(PY), "-m", "mlspec_attest.cli.main"]  # this tree's code (run.py puts REPO on PYTHONPATH)


@register("big", Target("sha256 of one big file <= 1.0x openssl dgst (aim 0.8x)", "big", "mlspec hash", 1.0,
                        base="openssl dgst -sha256"),
          Target("peak RSS hashing the big file < 64 MiB", "big", "mlspec hash", 1.0, seconds=64, metric="rss"),
          Target("one big file, model-signing shards on every core <= 0.6x openssl dgst", "big",
                 "mlspec hash --method shards", 0.6, base="openssl dgst -sha256"))
def case_big(b: BenchContext) -> Case:
    quick, args = b.args.quick, b.args
    size = int((0.25 if quick and args.size is None else (args.size or 2.0)) * 1024 * MiB)
    big = b.work / "big.bin"
    print(f"generating {size / 1024 / MiB:.2f} GiB file", file=sys.stderr)
    write_random(big, size)
    return Case("big", f"sha256 of one {size / 1024 / MiB:g} GiB file", [
        Cmd("mlspec hash", [*_hash_cmd(b), str(big)]),
        Cmd("mlspec hash --method shards", [*_hash_cmd(b), "--method", "shards", str(big)]),  # see shards_big.py
        Cmd("openssl dgst -sha256", ["openssl", "dgst", "-sha256", str(big)]),
        Cmd("sha256sum", ["sha256sum", str(big)]),
    ], baseline="openssl dgst -sha256", cleanup=[big])


@register("medium", Target("200 x 10 MiB <= 0.8x model_signing", "medium", "mlspec hash", 0.8,
                           base="model_signing sign key"))
def case_medium(b: BenchContext) -> Case:
    count, fsize = (40, 10 * MiB) if b.args.quick else (200, 10 * MiB)
    tree = b.work / "medium"
    print(f"generating {count} x {fsize // MiB} MiB", file=sys.stderr)
    make_tree(tree, count, fsize)
    cmds = [Cmd("mlspec hash", [*_hash_cmd(b), str(tree)])]
    if b.peers:
        cmds.append(_model_signing(b, tree))
    cmds.append(Cmd("find|xargs openssl dgst", f"find '{tree}' -type f -print0 | xargs -0 openssl dgst -sha256"))
    cmds.append(Cmd("find|xargs sha256sum", f"find '{tree}' -type f -print0 | xargs -0 sha256sum"))
    return Case("medium", f"{count} files of {fsize // MiB} MiB", cmds,
                baseline="model_signing sign key" if b.peers else "find|xargs openssl dgst", cleanup=[tree])


@register("small", Target("20,000 x 10 KiB <= 0.15x model_signing", "small", "mlspec hash", 0.15,
                          base="model_signing sign key"),
          Target("20,000 x 10 KiB <= 1.5x find|xargs openssl", "small", "mlspec hash", 1.5,
                 base="find|xargs openssl dgst"))
def case_small(b: BenchContext) -> Case:
    count = 4000 if b.args.quick else 20000
    tree = b.work / "small"
    print(f"generating {count} x 10 KiB", file=sys.stderr)
    make_tree(tree, count, 10 * 1024)
    cmds = [Cmd("mlspec hash", [*_hash_cmd(b), str(tree)])]
    itl = _intoto_layout(b)
    if b.peers and itl:
        cmds.append(_model_signing(b, tree))
        cmds.append(Cmd("in-toto-run", [str(b.peers / "in-toto-run"), "--step-name", "hash", "--signing-key",
                                        str(itl / "functionary.pem"), "--materials", "small",
                                        "--metadata-directory", str(b.work), "--no-command"], cwd=b.work))
    cmds.append(Cmd("find|xargs openssl dgst", f"find '{tree}' -type f -print0 | xargs -0 openssl dgst -sha256"))
    return Case("small", f"{count} files of 10 KiB", cmds,
                baseline="model_signing sign key" if b.peers else "find|xargs openssl dgst")


@register("verify13", Target("verify 13-stage bundle <= 1x in-toto-verify (10 steps), same run", "verify13",
                             "mlspec verify (13 stages)", 1.0, base="in-toto-verify (10 steps)"))
def case_verify13(b: BenchContext) -> Case:
    c13 = _chain_data(b, "c13", 13)
    cmds = [Cmd("mlspec verify (13 stages)", [*MLSPEC, "verify", str(c13 / "bundle"),
                                              "--policy", str(c13 / "policy.yaml")])]
    itl = _intoto_layout(b)
    if b.peers and itl:
        cmds.append(Cmd("in-toto-verify (10 steps)", [str(b.peers / "in-toto-verify"), "--layout", "root.layout",
                                                       "--verification-keys", "owner.pub", "--link-dir", "links"],
                        cwd=itl))
    return Case("verify13", "verify the 13-stage lifecycle bundle (whole command)", cmds,
                baseline="in-toto-verify (10 steps)" if b.peers else "mlspec verify (13 stages)")


def _chain_case(b: BenchContext, name: str, n: int) -> Case:
    out = _chain_data(b, f"{name}-{n}", n)
    argv = [*MLSPEC, "verify", str(out / "bundle"), "--policy", str(out / "policy.yaml")]
    return Case(name, f"verify a {n}-attestation chain (whole command)", [
        Cmd(f"mlspec verify ({n})", argv),
        Cmd(f"mlspec verify ({n}), 1 worker", argv, env={"MLSPEC_VERIFY_WORKERS": "1"}),
    ], baseline=f"mlspec verify ({n}), 1 worker", cleanup=[] if b.args.reuse else [out], settle=True)


@register("chain", Target("10,000-attestation chain verified <= 1.5 s", "chain", "mlspec verify (", 1.0,
                          seconds=1.5))
def case_chain(b: BenchContext) -> Case:
    return _chain_case(b, "chain", 2000 if b.args.quick else 10000)


@register("chain100k", Target("100,000-attestation chain verified <= 15 s", "chain100k", "mlspec verify (", 1.0,
                              seconds=15.0),
          Target("100,000-chain peak RSS with 4 KiB larger monitor payloads <= 1.1x (memory not growing with "
                 "payload sizes)", "chain100k", "mlspec verify (long chain), +4", 1.1, base="mlspec verify (long chain)",
                 metric="rss"))
def case_chain100k(b: BenchContext) -> Case:
    """The long chain; verified twice: as generated and with every monitor payload 4 KiB larger."""
    n = 20000 if b.args.quick else 100000
    cmds, bundles = [], []
    for pad in (0, 4096):
        out = _chain_data(b, f"chain-{n}-pad{pad}", n, pad=pad)
        argv = [*MLSPEC, "verify", str(out / "bundle"), "--policy", str(out / "policy.yaml")]
        cmds.append(Cmd("mlspec verify (long chain)" + (", +4 KiB payloads" if pad else ""), argv))
        bundles.append(out / "bundle")
    return Case("chain100k", f"verify a {n}-attestation chain (whole command)", cmds, baseline=cmds[0].label,
                max_runs=b.args.long_runs, settle=True, prefetch=bundles,
                cleanup=[] if b.args.reuse else [b.work / f"chain-{n}-pad0", b.work / f"chain-{n}-pad4096"])


@register("cores")
def case_cores(b: BenchContext) -> Case:
    # Control: are both cores really ours right now? Pure-Python work, one copy vs two at once.
    # 1.0x means two idle cores; 2.0x means the machine gives us one core's worth (noisy neighbours),
    # and no parallel code path can beat its serial twin in that run.
    loop = f"'{PY}' -c 'sum(range(30_000_000))'"
    return Case("cores", "control: pure-Python loop, 1 copy vs 2 at once", [
        Cmd("1 loop", loop),
        Cmd("2 loops in parallel", f"{loop} & {loop} & wait"),
    ], baseline="1 loop")


@register("help", Target("mlspec --help <= 0.15 s", "help", "mlspec --help", 1.0, seconds=0.15))
def case_help(b: BenchContext) -> Case:
    return Case("help", "mlspec --help", [
        Cmd("mlspec --help", [*MLSPEC, "--help"]),
        Cmd("python -c pass", [str(PY), "-c", "pass"]),
    ], baseline="python -c pass")


# -- targets -------------------------------------------------------------------------------
TargetRow = tuple[str, str, str, str, "bool | None"]  # text, measured, reference, ratio, met


def targets(cases: dict[str, Case], quick: bool) -> list[TargetRow]:
    """One row per registered target: measured, its reference, their ratio, met (None: not run)."""
    rows: list[TargetRow] = []
    for t in TARGETS:
        case = cases.get(t.case)
        cmd = next((c for c in case.cmds if c.label.startswith(t.label)), None) if case else None
        ref_cmd = case.get(t.base) if case and t.base else None

        def value(c: Cmd | None, t: Target = t) -> float | None:
            if c is None:
                return None
            if t.metric == "rss":
                return max(c.rss_kib) / 1024 if c.rss_kib else None
            return c.median

        unit = "MiB" if t.metric == "rss" else "s"
        m = value(cmd)
        ref = value(ref_cmd) if t.base else t.seconds
        ref_text = (f"{t.base} {ref:.3f} {unit}" if t.base else f"{ref:g} {unit}") if ref is not None else "n/a"
        r = m / ref if m is not None and ref else None
        rows.append((t.text, f"{m:.3f} {unit}" if m is not None else "n/a", ref_text,
                     f"{r:.2f}x" if r is not None else "n/a", None if r is None else r <= t.limit))
    cores = cases.get("cores")
    r = cores.ratio("2 loops in parallel") if cores else None
    if r is not None:
        rows.append(("control: effective cores free for this run (2 / ratio)", f"{2 / r:.2f}", "2 cores",
                     f"{r:.2f}x", None))
    loop = cores.get("1 loop") if cores else None
    if loop is not None and loop.median is not None:
        # How fast one core was during this run: absolute targets (seconds) scale with it, and on a
        # shared host it moves by 15% between runs an hour apart (0.357 s and 0.415 s here).
        rows.append(("control: one pure-Python loop (per-core speed; compare runs by it)", f"{loop.median:.3f} s",
                     "", "", None))
    if quick:
        rows = [(t + " [quick: smaller data]", *rest) for t, *rest in rows]  # type: ignore[misc]
    return rows


def machine() -> str:
    """Cores, CPU model and Python: the README table says where it was measured."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"


def md(text: str) -> str:
    """A Markdown table cell (a pipe in a command would split it)."""
    return text.replace("|", "\\|")


def report(cases: list[Case], runs: int, quick: bool, started: float) -> str:
    lines = [f"mlspec benchmarks: {runs} timed runs per command, medians (warm cache); "
             f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}; total {time.time() - started:.0f} s", ""]
    lines.append("| case | command | median s | min s | peak RSS MiB | ratio |")
    lines.append("|---|---|---:|---:|---:|---|")
    for case in cases:
        for c in case.cmds:
            if c.failed:
                lines.append(f"| {case.title} | {md(c.label)} | failed: {md(c.failed)} | | | |")
                continue
            r = case.ratio(c.label)
            ratio = f"{r:.2f}x {md(case.baseline)}" if r is not None and c.label != case.baseline else "baseline"
            lines.append(f"| {case.title} | {md(c.label)} | {c.median:.3f} | {min(c.times):.3f} | "
                         f"{max(c.rss_kib) / 1024:.1f} | {ratio} |")
    lines += ["", f"Targets (issue #19), measured on {machine()}:", "",
              "| target | measured | reference | ratio | result |", "|---|---|---|---|---|"]
    for text, measured, reference, ratio, ok in targets({c.name: c for c in cases}, quick):
        verdict = "met" if ok else "MISSED" if ok is False else ("info" if measured != "n/a" else "not run")
        lines.append(f"| {md(text)} | {measured} | {md(reference)} | {ratio} | {verdict} |")
    return "\n".join(lines)


README_BEGIN = "<!-- bench:begin (generated by benchmarks/run.py --update-readme; do not edit) -->"
README_END = "<!-- bench:end -->"


def update_readme(table: str, readme: Path = REPO / "README.md") -> None:
    """Replace the README's performance table (between the bench markers) with this run's targets."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"{readme}: no {README_BEGIN!r} ... {README_END!r} markers; add them around the table")
    start = table.index("Targets (issue #19)")
    block = f"{README_BEGIN}\n{table[start:].strip()}\n{README_END}"
    head, rest = text.split(README_BEGIN, 1)
    readme.write_text(head + block + rest.split(README_END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    load_case_modules()
    ap = argparse.ArgumentParser(description="mlspec performance vs openssl, sha256sum, model_signing, in-toto.")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per command (default 5; --quick 3)")
    ap.add_argument("--quick", action="store_true", help="smaller data and fewer runs (a smoke test)")
    ap.add_argument("--size", type=float, default=None, help="big-file size in GiB (default 2; --quick 0.25)")
    ap.add_argument("--only", help="comma-separated cases (default all): " + ",".join(REGISTRY))
    ap.add_argument("--no-peers", action="store_true", help="skip model-signing and in-toto")
    ap.add_argument("--tmp", type=Path, default=None, help="where to generate data (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument("--long-runs", type=int, default=2, help="timed runs of the 100,000-chain (default 2, no warm-up)")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="generate the chains here once and reuse them on later runs (e.g. /tmp/mlspec-chains)")
    ap.add_argument("--output", type=Path, help="also write the table (Markdown) here")
    ap.add_argument("--update-readme", action="store_true", help="regenerate README.md's performance table")
    args = ap.parse_args(argv)
    # Every mlspec command runs this tree's code, whatever the venv's editable install points at.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
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
                for path in case.cleanup:
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        table = report(cases, runs, args.quick, started)
        print(table)
        if args.output:
            args.output.write_text(table + "\n")
        if args.update_readme:
            update_readme(table)
    finally:
        if args.keep:
            print(f"data kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
