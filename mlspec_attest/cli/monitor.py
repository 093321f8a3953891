"""``mlspec monitor serve``: /ok, /varz and /metrics over a verified bundle."""

from __future__ import annotations

from pathlib import Path

import click

from mlspec_attest.cli._errors import ErrorHandlingGroup
from mlspec_attest.cli._project import ProjectPath


@click.group(cls=ErrorHandlingGroup)
def monitor() -> None:
    """Live monitoring metadata for a deployed model."""


@monitor.command("serve")
@click.argument("bundle", type=ProjectPath(file_okay=False))
@click.option("--policy", type=ProjectPath(dir_okay=False), help="Trust policy (default: mlspec.yaml's).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback unless you mean it).")
@click.option("--port", default=9464, show_default=True, type=int)
@click.option("--refresh", default=10.0, show_default=True, type=float, help="Seconds between re-verifications.")
def serve(bundle: str, policy: str | None, host: str, port: int, refresh: float) -> None:
    """Serve /ok (liveness), /varz (verified chain state) and /metrics (Prometheus)."""
    from mlspec_attest.bundle import Bundle
    from mlspec_attest.cli._project import announce_trust, load_policy
    from mlspec_attest.errors import InputError
    from mlspec_attest.monitor import MonitorService
    from mlspec_attest.store.base import is_remote

    if is_remote(bundle):
        raise InputError(f"{bundle}: 'monitor serve' watches a local bundle directory; sync the bucket to one "
                         "(aws s3 sync) or run 'mlspec verify' on the URL on a schedule (docs/storage.md)")
    Bundle(bundle).require_exists()
    policy_obj, origin = load_policy(policy, bundle)
    service = MonitorService(Path(bundle), policy_obj, refresh)
    service.state()  # verify once up front so a bad policy fails now, not on first scrape
    announce_trust(policy_obj, origin)
    server = service.make_server(host, port)
    click.echo(f"serving http://{host}:{server.server_address[1]}/ok /varz /metrics (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
