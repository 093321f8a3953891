"""``mlspec demo [DIR]``: a real 13-stage ML pipeline, attested and then gated.

Why: a newcomer should see, in one command and on their own machine, what the
tool is for: every stage of an actual scikit-learn pipeline signs what it did, and
``mlspec verify`` proves the chain, the artifact flow and the objectives before a
deploy. The directory left behind is an ordinary ``mlspec init`` project that can
be explored and re-run by hand.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlspec_attest.errors import InputError

MARKER = ".mlspec-demo"
DEMO_PROJECT = "credit-model"  # = demo/credit.py OBJECTIVES_YAML project: (the policies pin it)
DEMO_EXTRA_HINT = "the demo needs scikit-learn: pip install 'mlspec-attest[demo]'"


def _require_demo_dependencies() -> None:
    """Fail with one actionable line (exit 2) when the ``demo`` extra is not installed."""
    import importlib.util

    for module in ("numpy", "sklearn"):
        if importlib.util.find_spec(module) is None:
            raise InputError(DEMO_EXTRA_HINT)


def prepare_directory(directory: Path) -> bool:
    """Make ``directory`` ready for a fresh demo (absent or empty); never deletes anything.

    A marker file proves nothing (anyone can plant ``.mlspec-demo`` in a directory they
    hand you), so a non-empty directory is refused, an earlier demo included: remove it
    yourself (``make demo`` removes its own ``demo-project``). Returns False (nothing replaced).
    """
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise InputError(f"{directory}: exists and is not a directory; choose another directory")
    if directory.is_dir() and any(directory.iterdir()):
        earlier = " (an earlier demo? remove it first: the demo never deletes files)" if (directory / MARKER).exists() else ""
        raise InputError(f"{directory}: directory is not empty{earlier}; nothing was changed: choose another "
                         "directory (e.g. 'mlspec demo demo-project') or an empty one")
    directory.mkdir(parents=True, exist_ok=True)
    return False


def run_demo(directory: Path, fail_objective: bool = False, echo: Callable[[str], Any] = print,
             pipeline_key: str | None = None, bundle: str | None = None) -> int:
    """Build a project in ``directory``, run the pipeline, verify it; 0 if the gate passed, else 1.

    ``pipeline_key``: a key URI (``pkcs11:...``) to sign the pipeline's stages with a key
    that never leaves its token; its public half becomes keys/pipeline.pub.
    ``bundle``: ``s3://BUCKET/PREFIX`` to append the chain there instead of DIR/bundle (docs/storage.md).
    """
    from mlspec_attest.keys import PASSPHRASE_ENV

    _require_demo_dependencies()
    if bundle is not None:  # before anything is made: a bad URL or endpoint is exit 2 with nothing written
        from mlspec_attest.store import is_remote, open_bundle

        if not is_remote(bundle):
            raise InputError(f"--bundle {bundle}: the demo's own bundle is DIRECTORY/bundle; --bundle takes an "
                             "s3://BUCKET/PREFIX URL")
        if open_bundle(bundle).head() is not None:  # reaches the store: unreachable or refused is exit 2 here
            raise InputError(f"{bundle}: already holds a chain; the demo appends only to an empty prefix")
    token_signer = None
    if pipeline_key:  # open the token first: a wrong PIN or URI must leave nothing half-made
        from mlspec_attest.keys import load_signer as _load

        token_signer = _load(pipeline_key)
    shown = Path(directory)
    directory = shown.absolute()  # the pipeline names artifacts relative to the project root
    started = time.perf_counter()
    replaced = prepare_directory(directory)
    (directory / MARKER).write_text("created by 'mlspec demo' (the demo never deletes: remove this directory "
                                    "yourself before re-running it here)\n", encoding="utf-8")

    from mlspec_attest.keys import load_signer
    from mlspec_attest.project import init_project

    env = os.environ.get(PASSPHRASE_ENV)
    passphrase = env.encode("utf-8") if env else None
    echo(f"mlspec demo: {'replacing the previous demo in' if replaced else 'creating'} {shown}"
         f"{' (weak model: --fail-objective)' if fail_objective else ''}")
    if passphrase is None:
        echo(f"warning: {PASSPHRASE_ENV} is not set: the demo keys are written UNENCRYPTED, as "
             "'mlspec init --no-passphrase' would (set it to encrypt them)")
        init_project(directory, encrypt=False, project=DEMO_PROJECT)
    else:
        init_project(directory, encrypt=True, passphrase=passphrase, project=DEMO_PROJECT)
        echo(f"keys encrypted with the passphrase in {PASSPHRASE_ENV}")
    owner = load_signer(directory / "keys" / "owner.key", passphrase)
    if pipeline_key and token_signer is not None:
        signer = _use_token_key(directory, pipeline_key, token_signer, echo)
    else:
        signer = load_signer(directory / "keys" / "pipeline.key", passphrase)

    from mlspec_attest.demo.credit import run_pipeline  # lazy: numpy and scikit-learn
    from mlspec_attest.verify.preflight import AppendGate

    echo("")
    echo(f"  seq  {'stage':<10} {'attested':<34} what the stage computed")
    # As 'mlspec attest' does inside a project: every append first meets the gate's rules (mlspec.yaml's policy).
    gate = AppendGate.from_file(directory / "policies" / "default.yaml")
    result = run_pipeline(directory, owner, signer, weak=fail_objective, echo=echo, bundle=bundle, policy=gate)
    if bundle is not None:  # the project's commands find the chain where it went
        project_file = directory / "mlspec.yaml"
        project_file.write_text(re.sub(r"(?m)^bundle: .*$", f"bundle: {bundle}", project_file.read_text("utf-8"),
                                       count=1), encoding="utf-8")
    pipeline_seconds = time.perf_counter() - started

    from mlspec_attest.project import PROJECT_FILE, Project
    from mlspec_attest.render.text import render_text
    from mlspec_attest.verify import verify_bundle

    policy = directory / "policies" / "default.yaml"
    log_dir = Project.load(directory / PROJECT_FILE).log  # mlspec.yaml names the log: the gate checks it
    report = verify_bundle(result.bundle, policy, [result.package], log_dir=log_dir)
    echo("")
    echo(render_text(report))
    total = time.perf_counter() - started
    echo("")
    if report.passed:
        echo(f"Deploy gate: PASSED. {len(report.stages)} attestations verified; "
             f"package/{result.package.name} may be deployed. ({pipeline_seconds:.1f}s pipeline, {total:.1f}s total)")
    else:
        failed = [o for o in report.objectives if not o.passed and o.severity == "block"]
        echo("Deploy gate: REFUSED.")
        for o in failed:
            seen = ", ".join(f"{k} = {v}" for k, v in o.values.items()) or o.message
            echo(f"  criterion {o.name} failed ({o.stage}: {o.expression}); value seen: {seen}")
        others = [f for f in report.findings if f.severity == "error" and f.code != "OBJECTIVE_FAILED"]
        for f in others:
            echo(f"  [{f.code}] {f.message}")
        echo(f"({pipeline_seconds:.1f}s pipeline, {total:.1f}s total)")
    echo("")
    echo(_next_steps(directory, result.package, report.passed) if bundle is None
         else _next_steps_remote(bundle, directory, result.package))
    return 0 if report.passed else 1


def _use_token_key(directory: Path, uri: str, signer: Any, echo: Callable[[str], Any]) -> Any:
    """Sign with the token key: its public half replaces keys/pipeline.pub, no pipeline.key stays on disk."""
    from mlspec_attest.project import PROJECT_FILE
    from mlspec_attest.signers import redact_uri, strip_pin

    keys = directory / "keys"
    (keys / "pipeline.key").unlink()
    (keys / "pipeline.pub").write_bytes(signer.public.to_pem())
    project_file = directory / PROJECT_FILE
    text = project_file.read_text(encoding="utf-8")
    text = text.replace("key: keys/pipeline.key          # the pipeline's signing key (never commit *.key)",
                        f"key: '{strip_pin(uri)}'  # the pipeline's key, on a PKCS#11 token")
    project_file.write_text(text, encoding="utf-8")
    echo(f"pipeline key: on the token {redact_uri(uri)} (keyid {signer.keyid[:16]}…); "
         "keys/pipeline.pub is its exported public key")
    return signer


def _next_steps_remote(bundle: str, directory: Path, package: Path) -> str:
    """The commands that read the chain back from the bucket (same AWS_* environment, cwd = the project)."""
    pkg = package.relative_to(directory).as_posix()
    return "\n".join([f"The chain is in {bundle}; read it back from there (cd {directory}):",
                      f"  mlspec verify {bundle} --artifact {pkg}",
                      f"  mlspec replay {bundle}",
                      f"  mlspec attest stage monitor --material package={pkg} --metadata reports/monitor.json "
                      "--product reports/monitor.json"])


def _next_steps(directory: Path, package: Path, passed: bool) -> str:
    """The commands a user can run by hand in the demo project (cwd = the project)."""
    pkg = package.relative_to(directory).as_posix()
    steps = [
        (f"mlspec verify bundle --artifact {pkg}", "the deploy gate (policy from mlspec.yaml)"),
        ("mlspec verify bundle --format json", "the same, machine-readable"),
        ("mlspec inspect bundle/attestations/0008-test.dsse.json --key keys/pipeline.pub", "one signed statement"),
        ("mlspec objectives check objectives.yaml", "compile the codified criteria"),
        ("mlspec log verify --log logs/inference --bundle bundle", "recompute the sealed Merkle root"),
        ("mlspec log prove req-00042 --log logs/inference", "inclusion proof for one request"),
        (f"mlspec attest stage monitor --material package={pkg} --metadata reports/monitor.json "
         "--product reports/monitor.json", "append a new monitor reading (its report bound, as the gate requires)"),
        (f"cp -r {pkg} tampered && echo x >> tampered/requirements.txt", ""),
        ("mlspec verify bundle --artifact tampered", "refused: not the packaged artifact"),
        (f"mlspec demo {directory}-2{'' if passed else ' --fail-objective'}",
         "run everything again, into a new directory (the demo never deletes one)"),
    ]
    width = max(len(c) for c, _ in steps if len(c) <= 60)
    lines = [f"Explore and re-run by hand (cd {directory}):"]
    lines += [f"  {c:<{width}}  # {why}" if why else f"  {c}" for c, why in steps]
    return "\n".join(lines)
