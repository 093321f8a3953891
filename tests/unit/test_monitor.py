"""The monitoring endpoints, scraped over loopback from a real verified bundle."""

from __future__ import annotations

import json
import threading
import urllib.request

from conftest import Project, build_lifecycle
from prometheus_client.parser import text_string_to_metric_families

from mlspec_attest.monitor import MonitorService


def scrape(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.status, resp.read()


def test_ok_varz_metrics_over_loopback(project: Project) -> None:
    build_lifecycle(project)
    service = MonitorService(project.bundle, project.policy(), refresh=0.0)
    server = service.make_server("127.0.0.1", 0)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert scrape(port, "/ok") == (200, b"ok\n")
        status, body = scrape(port, "/varz")
        varz = json.loads(body)
        assert status == 200 and varz["verdict"] == "pass" and varz["chain_length"] == 13
        assert varz["model_in_service"]["name"] == "pkg"
        assert varz["rollback_target"]["name"] == "pkg"
        assert varz["last_seal"]["sequence"] == 12
        status, body = scrape(port, "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert families["mlspec_verification_passed"].samples[0].value == 1
        assert families["mlspec_chain_length"].samples[0].value == 13
        crit = families["mlspec_criterion_value"].samples[0]
        assert crit.labels == {"criterion": "test-accuracy", "path": "metrics.accuracy"} and crit.value == 0.9
        # Tampering shows up on the next scrape: the state is re-derived, not cached blindly.
        victim = next((project.bundle / "attestations").glob("0006-*"))
        victim.write_text(victim.read_text().replace('"sig": "', '"sig": "AAAA', 1))
        status, body = scrape(port, "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert families["mlspec_verification_passed"].samples[0].value == 0
    finally:
        server.shutdown()
        server.server_close()
