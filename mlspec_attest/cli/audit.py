"""``mlspec replay`` and ``mlspec report``: the auditor's commands (loaded lazily by cli.main).

Exit status as everywhere: 0 pass, 1 the check ran and failed (or, for replay
without a policy, could not be completed), 2 unusable input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mlspec_attest.cli._errors import record_verdict, remember_format
from mlspec_attest.cli._project import ProjectPath, announce_trust, load_policy
from mlspec_attest.errors import InputError


@click.command()
@click.argument("bundle", type=ProjectPath(file_okay=False))
@click.option("--artifacts", "artifacts_dir", type=ProjectPath(file_okay=False),
              help="Directory holding the artifacts that still exist (looked up by name, then by digest).")
@click.option("--policy", type=ProjectPath(dir_okay=False),
              help="Trust policy for signatures (default: the working directory's mlspec.yaml; without one signatures are unchecked).")
@click.option("--log", "log_dir", type=ProjectPath(file_okay=False),
              help="The inference log the bundle's log attestations seal (default: the working directory's mlspec.yaml log:).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              is_eager=True, callback=remember_format,
              help="json: the replay-output/v1 schema documented in docs/audit.md.")
@click.option("--releases", "releases_dir", type=click.Path(file_okay=False),
              help="Release history the package's declared predecessor is verified in (default: mlspec.yaml's releases:).")
def replay(bundle: str, artifacts_dir: str | None, policy: str | None, log_dir: str | None, fmt: str,
           releases_dir: str | None = None) -> None:
    """Re-derive BUNDLE from its files: payload bytes, chain links, signatures, artifacts, lineage.

    \b
    Artifacts are reported as match, differs or absent; absent is not a failure.
    Exit 0: chain and signatures verify and no present artifact differs.
    Exit 1: a mismatch or chain failure, or no policy to check signatures.
    Exit 2: unusable input.
    """
    from mlspec_attest.audit.replay import render_replay_text
    from mlspec_attest.audit.replay import replay as run_replay
    from mlspec_attest.cli._project import resolve_log, resolve_releases

    policy_obj, origin = load_policy(policy, bundle, required=False)
    result = run_replay(bundle, artifacts_dir, policy_obj, log_dir=resolve_log(log_dir, bundle),
                        releases=resolve_releases(releases_dir))
    record_verdict(result.exit_code)  # stands even if stdout fails
    if fmt == "json":
        from mlspec_attest.render.terminal import terminal_safe

        # the same JSON value; bidi/C1 characters from the bundle become \uNNNN escapes
        click.echo(terminal_safe(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), keep_newlines=True))
    else:
        click.echo(render_replay_text(result))
    announce_trust(policy_obj, origin)
    sys.exit(result.exit_code)


@click.command()
@click.argument("bundle", type=ProjectPath(file_okay=False))
@click.option("--html", "html_out", required=True, type=ProjectPath(dir_okay=False),
              help="Write one self-contained HTML file here (no network, prints to PDF).")
@click.option("--policy", type=ProjectPath(dir_okay=False), help="Trust policy (default: mlspec.yaml's).")
@click.option("--artifacts", "artifacts_dir", type=ProjectPath(file_okay=False),
              help="Also re-hash the artifacts found here and show match / differs / absent.")
@click.option("--log", "log_dir", type=ProjectPath(file_okay=False),
              help="The inference log the bundle's log attestations seal (default: mlspec.yaml's log:).")
@click.option("--releases", "releases_dir", type=click.Path(file_okay=False),
              help="Release history the package's declared predecessor is verified in (default: mlspec.yaml's releases:).")
def report(bundle: str, html_out: str, policy: str | None, artifacts_dir: str | None, log_dir: str | None,
           releases_dir: str | None = None) -> None:
    """Write an archivable HTML audit report of BUNDLE: verdict, objectives, stages, lineage, findings.

    Exit status follows the verdict shown in the report (0 pass, 1 fail).
    """
    from mlspec_attest.audit.replay import replay as run_replay
    from mlspec_attest.cli._project import resolve_log, resolve_releases
    from mlspec_attest.render.html import render_html

    policy_obj, origin = load_policy(policy, bundle, required=True)
    result = run_replay(bundle, artifacts_dir, policy_obj, log_dir=resolve_log(log_dir, bundle),
                        releases=resolve_releases(releases_dir))
    assert result.verify_report is not None
    page = render_html(result.verify_report, result)
    out = Path(html_out)
    try:
        from mlspec_attest._internal.files import write_file

        write_file(out.parent, out.name, page.encode("utf-8"), what="HTML report")
    except OSError as exc:
        raise InputError(f"{html_out}: cannot write: {exc.strerror}") from None
    record_verdict(result.exit_code)
    click.echo(f"wrote {html_out} (verdict {result.verdict.upper()})")
    announce_trust(policy_obj, origin)
    sys.exit(result.exit_code)


STANDALONE_SCRIPT = "verify_standalone.py"


def standalone_script_bytes() -> bytes:
    """The shipped re-check script (package data), so a pip install has it, not only a source checkout."""
    from importlib.resources import files

    return (files("mlspec_attest") / "data" / STANDALONE_SCRIPT).read_bytes()


@click.command("standalone-script")
@click.option("--out", "out_path", type=ProjectPath(dir_okay=False, path_type=Path),
              help="Write the script here (refused if the file exists); default: print it.")
def standalone_script(out_path: Path | None) -> None:
    """Print (or write) verify_standalone.py: re-checks a bundle with only cryptography and rfc8785.

    \b
    It imports nothing from mlspec, so an auditor can read it and run it anywhere:
      mlspec standalone-script --out verify_standalone.py
      python verify_standalone.py BUNDLE --key pipeline.pub --stage-key objectives=owner.pub
    """
    data = standalone_script_bytes()
    if out_path is None:
        click.echo(data.decode("utf-8"), nl=False)
        return
    from mlspec_attest._internal.files import write_file

    # never overwrite what an auditor already has (replace=False also refuses a planted symlink)
    write_file(out_path.parent, out_path.name, data, replace=False, what="standalone script")
    click.echo(f"wrote {out_path}")
