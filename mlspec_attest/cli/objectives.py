"""``mlspec objectives``: check codified objectives before anything is signed."""

from __future__ import annotations

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup


@click.group('objectives', cls=ErrorHandlingGroup)
def objectives() -> None:
    """Codified objectives: the chain's genesis."""


@objectives.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def objectives_check(file: str) -> None:
    """Compile every criterion of FILE; report syntax errors with their position."""
    from mlspec_attest.objectives.cel import compile_expression, vacuity_notes
    from mlspec_attest.objectives.criteria import VARIABLES, check_file

    obj = check_file(file)
    for c in obj.criteria:
        click.echo(f"ok  {c.name:<24} {c.stage}: {c.expression}  [{c.severity}]")
        for note in vacuity_notes(compile_expression(c.expression, VARIABLES)):
            click.echo(f"warning: {file}: criterion {c.name}: {note}", err=True)
    click.echo(f"{len(obj.criteria)} criteria compiled")


# -- init and demo ----------------------------------------------------------------------------
