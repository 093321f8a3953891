"""``mlspec objectives``: check codified objectives before anything is signed."""

from __future__ import annotations

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup, echo_json, json_format_option, record_verdict
from mlspec_attest.cli._project import ProjectPath


@click.group('objectives', cls=ErrorHandlingGroup)
def objectives() -> None:
    """Codified objectives: the chain's genesis."""


@objectives.command("check")
@click.argument("file", type=ProjectPath(dir_okay=False))
@json_format_option
def objectives_check(file: str, fmt: str) -> None:
    """Compile every criterion of FILE; report syntax errors with their position."""
    from mlspec_attest._internal.loaders import load_mapping
    from mlspec_attest.model.canonical import canonicalize, sha256_hex
    from mlspec_attest.objectives.cel import compile_expression, vacuity_notes
    from mlspec_attest.objectives.criteria import ALL_VARIABLES, check_file

    obj = check_file(file)
    record_verdict(0)  # every criterion compiled: the verdict stands even if stdout fails
    # What the policy pins: objectives.project, min_revision, and optionally this exact digest.
    digest = sha256_hex(canonicalize(load_mapping(file, what="objectives file")))
    notes = {c.name: vacuity_notes(compile_expression(c.expression, ALL_VARIABLES)) for c in obj.criteria}
    for c in obj.criteria:
        for note in notes[c.name]:
            click.echo(f"warning: {file}: criterion {c.name}: {note}", err=True)
    if fmt == "json":
        echo_json({"file": file, "project": obj.project, "revision": obj.revision, "sha256": digest,
                   "criteria": [{"name": c.name, "stage": c.stage, "expression": c.expression,
                                 "severity": c.severity, "warnings": list(notes[c.name])} for c in obj.criteria]})
        return
    for c in obj.criteria:
        click.echo(f"ok  {c.name:<24} {c.stage}: {c.expression}  [{c.severity}]")
    click.echo(f"{len(obj.criteria)} criteria compiled")
    click.echo(f"project {obj.project}, revision {obj.revision}, sha256 {digest}")


# -- init and demo ----------------------------------------------------------------------------
