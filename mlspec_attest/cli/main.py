"""``mlspec``: a thin command line over the Python API.

Exit status: 0 verified and the gate passed; 1 verification ran and the gate
failed; 2 usage or input error (one line on stderr, never a traceback).
Heavy machinery (Sigstore, CEL, JSON Schema, HTML) is imported only by the
commands that use it, so ``mlspec --help`` and ``mlspec verify`` start fast.
"""

from __future__ import annotations

import click

from mlspec_attest._version import __version__
from mlspec_attest.cli._errors import ErrorHandlingGroup


class MlspecGroup(ErrorHandlingGroup):
    """The top-level group: each command group is its own module, imported when it is used."""

    LAZY: dict[str, tuple[str, str]] = {
        "evidence": ("mlspec_attest.cli.evidence", "evidence"),
        "log": ("mlspec_attest.cli.log", "log"),
        "replay": ("mlspec_attest.cli.audit", "replay"),
        "report": ("mlspec_attest.cli.audit", "report"),
        "standalone-script": ("mlspec_attest.cli.audit", "standalone_script"),
        "monitor": ("mlspec_attest.cli.monitor", "monitor"),
        "hash": ("mlspec_attest.cli.hash", "hash"),
        "keys": ("mlspec_attest.cli.keys", "keys"),
        "policy": ("mlspec_attest.cli.policy", "policy"),
        "attest": ("mlspec_attest.cli.attest", "attest"),
        "verify": ("mlspec_attest.cli.verify", "verify"),
        "inspect": ("mlspec_attest.cli.verify", "inspect"),
        "objectives": ("mlspec_attest.cli.objectives", "objectives"),
        "init": ("mlspec_attest.cli.project", "init"),
        "demo": ("mlspec_attest.cli.project", "demo"),
        "run": ("mlspec_attest.cli.run", "run"),
        "push": ("mlspec_attest.cli.oci", "push"),
        "pull": ("mlspec_attest.cli.oci", "pull"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | {n for n in self.LAZY if self._lazy_available(n)})

    def _lazy_available(self, name: str) -> bool:
        import importlib.util

        return importlib.util.find_spec(self.LAZY[name][0]) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in self.LAZY and self._lazy_available(name):
            import importlib

            module, attr = self.LAZY[name]
            command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=MlspecGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mlspec")
def main() -> None:
    """Signed, hash-chained attestations for every stage of an ML pipeline.

    \b
    Pipeline authors:  mlspec attest stage train --bundle bundle --key keys/pipeline.key ...
    Release engineers: mlspec verify bundle            (exit 0 = deploy, 1 = refuse)
    Auditors:          mlspec replay bundle --artifacts DIR ; mlspec report bundle --html FILE

    Start with 'mlspec demo' (a full pipeline, signed and verified) or 'mlspec init'.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
