"""Live, queryable monitoring metadata: the seed's /ok, /varz and /metrics endpoints.

The state shown is always the result of verifying the bundle against the policy
(never the bundle's say-so), refreshed when the bundle changes or every few
seconds. Metrics use the real Prometheus client library's text format.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mlspec_attest.model.report import Report
from mlspec_attest.policy import Policy, parse_time
from mlspec_attest.verify import verify_bundle


@dataclass
class ChainState:
    """What /varz reports, derived from one verification run."""

    report: Report
    verified_at: float
    model: dict[str, Any] | None = None
    rollback_target: dict[str, Any] | None = None
    last_seal: dict[str, Any] | None = None
    seals: int = 0
    records: int = 0
    signals: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_report(cls, report: Report) -> ChainState:
        state = cls(report=report, verified_at=time.time())
        newest_monitor = None
        for line in report.stages:
            if not line.ok:
                continue
            if line.stage == "package" and line.subjects:
                s = line.subjects[0]
                state.model = {"name": s.get("name"), "sha256": s["digest"]["sha256"], "sequence": line.sequence}
            if line.stage in ("monitor", "log"):
                metadata = line.metadata
                if line.stage == "monitor":
                    newest_monitor = line  # only the newest one's signals are served: read it alone
                else:
                    state.seals += 1
                    size = metadata.get("tree_size", 0)
                    # signed, but by a stage's runner: a non-integer must not kill the service
                    state.records = size if isinstance(size, int) and not isinstance(size, bool) else 0
                    state.last_seal = {"sequence": line.sequence, "time": line.time,
                                       "tree_size": metadata.get("tree_size"), "root_hash": metadata.get("root_hash")}
        if newest_monitor is not None:
            metadata = newest_monitor.metadata
            state.rollback_target = metadata.get("rollback_target")
            signals = metadata.get("signals")
            state.signals = dict(signals) if isinstance(signals, dict) else {}
        return state

    def varz(self) -> dict[str, Any]:
        return {
            "verdict": self.report.verdict,
            "verified_at": self.report.verified_at,
            "policy": self.report.policy,
            "policy_sha256": self.report.policy_sha256,
            "chain_length": len(self.report.stages),
            "model_in_service": self.model,
            "rollback_target": self.rollback_target,
            "last_seal": self.last_seal,
            "signals": self.signals,
            "objectives": [o.to_dict() for o in self.report.objectives],
            "findings": [f.to_dict() for f in self.report.findings],
        }

    def metrics(self) -> bytes:
        from prometheus_client import CollectorRegistry, Gauge, generate_latest

        registry = CollectorRegistry()
        Gauge("mlspec_verification_passed", "1 when the chain verifies against the policy", registry=registry
              ).set(1 if self.report.passed else 0)
        Gauge("mlspec_chain_length", "attestations in the verified chain", registry=registry
              ).set(len(self.report.stages))
        findings = Gauge("mlspec_findings_total", "verification findings", ["severity"], registry=registry)
        for severity in ("error", "warning"):
            findings.labels(severity).set(sum(1 for f in self.report.findings if f.severity == severity))
        Gauge("mlspec_log_records", "inference records covered by the latest seal", registry=registry
              ).set(self.records)
        Gauge("mlspec_log_seals", "log seals in the chain", registry=registry).set(self.seals)
        since = Gauge("mlspec_seconds_since_last_seal", "age of the newest log seal", registry=registry)
        if self.last_seal and self.last_seal.get("time"):
            age = datetime.now(timezone.utc) - parse_time(self.last_seal["time"], "seal time")
            since.set(age.total_seconds())
        else:
            since.set(float("nan"))
        value = Gauge("mlspec_criterion_value", "metric values read by each objective criterion",
                      ["criterion", "path"], registry=registry)
        passed = Gauge("mlspec_criterion_passed", "1 when the objective criterion passes", ["criterion", "severity"],
                       registry=registry)
        for o in self.report.objectives:
            passed.labels(o.name, o.severity).set(1 if o.passed else 0)
            for path, v in o.values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    value.labels(o.name, path).set(v)
        signal = Gauge("mlspec_signal", "live signals from the newest monitor attestation", ["signal"],
                       registry=registry)
        for name, v in self.signals.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                signal.labels(name).set(v)
        return generate_latest(registry)


class MonitorService:
    """Re-verifies the bundle when it changes (or every ``refresh`` seconds) and serves the state."""

    def __init__(self, bundle: Path, policy: Policy | Path, refresh: float = 10.0, log_dir: Path | None = None):
        self.bundle = Path(bundle)
        self.log_dir = log_dir  # the inference log the signed log attestations are checked against
        self.policy = policy if isinstance(policy, Policy) else Policy.from_file(policy)
        self.refresh = refresh
        self._lock = threading.Lock()
        self._state: ChainState | None = None
        self._stamp: tuple[float, int] | None = None

    def _bundle_stamp(self) -> tuple[float, int] | None:
        """Cheap change detector; None when attestations/ is unreadable (verification then says why)."""
        from mlspec_attest._internal.files import list_names
        from mlspec_attest.errors import InputError

        try:
            st = (self.bundle / "attestations").lstat()
            return st.st_mtime, len(list_names(self.bundle, "attestations"))
        except (OSError, InputError):
            return None

    def state(self) -> ChainState:
        with self._lock:
            stamp = self._bundle_stamp()
            stale = (self._state is None or stamp is None or stamp != self._stamp
                     or time.time() - self._state.verified_at > self.refresh)
            if stale:
                self._state = ChainState.from_report(verify_bundle(self.bundle, self.policy, log_dir=self.log_dir))
                self._stamp = stamp
            assert self._state is not None
            return self._state

    def make_server(self, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                """Answer every request; a bundle that cannot be verified is a 503, never a dropped connection."""
                from mlspec_attest.errors import MlspecError

                try:
                    self._route()
                except MlspecError as exc:
                    self._send(503, f"bundle cannot be verified: {exc}\n".encode(), "text/plain; charset=utf-8")
                except RecursionError:
                    self._send(503, b"bundle cannot be verified: input nested too deeply\n",
                               "text/plain; charset=utf-8")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                except Exception as exc:  # the service keeps serving; the scrape sees the failure
                    self._send(500, f"internal error: {type(exc).__name__}\n".encode(), "text/plain; charset=utf-8")

            def _route(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/ok":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                elif path == "/varz":
                    body = json.dumps(service.state().varz(), indent=2).encode()
                    self._send(200, body, "application/json")
                elif path == "/metrics":
                    from prometheus_client import CONTENT_TYPE_LATEST

                    self._send(200, service.state().metrics(), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found: try /ok, /varz or /metrics\n", "text/plain; charset=utf-8")

            def log_message(self, format: str, *args: Any) -> None:  # quiet by default
                pass

        return ThreadingHTTPServer((host, port), Handler)
