"""``mlspec replay`` and ``mlspec report``: the auditor's commands (loaded lazily by cli.main).

Exit status as everywhere: 0 pass, 1 the check ran and failed (or, for replay
without a policy, could not be completed), 2 unusable input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mlspec_attest.cli._project import announce_trust, load_policy
from mlspec_attest.errors import InputError


@click.command()
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--artifacts", "artifacts_dir", type=click.Path(file_okay=False),
              help="Directory holding the artifacts that still exist (looked up by name, then by digest).")
@click.option("--policy", type=click.Path(dir_okay=False),
              help="Trust policy for signatures (default: the working directory's mlspec.yaml; without one signatures are unchecked).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: the replay-output/v1 schema documented in docs/audit.md.")
def replay(bundle: str, artifacts_dir: str | None, policy: str | None, fmt: str) -> None:
    """Re-derive BUNDLE from its files: payload bytes, chain links, signatures, artifacts, lineage.

    \b
    Artifacts are reported as match, differs or absent; absent is not a failure.
    Exit 0: chain and signatures verify and no present artifact differs.
    Exit 1: a mismatch or chain failure, or no policy to check signatures.
    Exit 2: unusable input.
    """
    from mlspec_attest.audit.replay import render_replay_text
    from mlspec_attest.audit.replay import replay as run_replay

    policy_obj, origin = load_policy(policy, bundle, required=False)
    result = run_replay(bundle, artifacts_dir, policy_obj)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(render_replay_text(result))
    announce_trust(policy_obj, origin)
    sys.exit(result.exit_code)


@click.command()
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--html", "html_out", required=True, type=click.Path(dir_okay=False),
              help="Write one self-contained HTML file here (no network, prints to PDF).")
@click.option("--policy", type=click.Path(dir_okay=False), help="Trust policy (default: mlspec.yaml's).")
@click.option("--artifacts", "artifacts_dir", type=click.Path(file_okay=False),
              help="Also re-hash the artifacts found here and show match / differs / absent.")
def report(bundle: str, html_out: str, policy: str | None, artifacts_dir: str | None) -> None:
    """Write an archivable HTML audit report of BUNDLE: verdict, objectives, stages, lineage, findings.

    Exit status follows the verdict shown in the report (0 pass, 1 fail).
    """
    from mlspec_attest.audit.replay import replay as run_replay
    from mlspec_attest.render.html import render_html

    policy_obj, origin = load_policy(policy, bundle, required=True)
    result = run_replay(bundle, artifacts_dir, policy_obj)
    assert result.verify_report is not None
    page = render_html(result.verify_report, result)
    out = Path(html_out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{html_out}: cannot write: {exc.strerror}") from None
    click.echo(f"wrote {html_out} (verdict {result.verdict.upper()})")
    announce_trust(policy_obj, origin)
    sys.exit(result.exit_code)
