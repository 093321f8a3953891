"""A small but real credit-approval pipeline whose 13 lifecycle stages each run real
code on real files and attest them through :class:`mlspec_attest.attest.attestor.Attestor`.

Why it exists: ``mlspec demo`` must show the tool on an actual ML workflow, not on
placeholder files, so that what a user explores afterwards (data, model, package,
inference log, bundle) is what a pipeline of theirs would produce.

The data are synthetic (a seeded numpy generator, no download) credit applications
with a protected ``group`` attribute (A/B) that is *not* a model feature but is used
for fairness slices. numpy and scikit-learn are imported lazily by the functions
that need them, so importing this module is cheap.

Stage by stage (files relative to the project directory):

==========  ===============================================  =====================================
stage       runs                                             attests (products / key metadata)
==========  ===============================================  =====================================
objectives  writes objectives.yaml, compiles its criteria    objectives.yaml, signed by *owner*
ingest      generates data/raw/applications.csv              raw CSV, rows, generator and seed
analyze     statistics per feature and group, outliers       reports/statistics.json
transform   drops missing/outliers, maps purpose, derives     data/clean.csv, data/feature_maps.json
validate    schema and range checks on the clean data        reports/validation.json, passed
split       stratified 60/20/20 split, row-hash overlap      train / validation / holdback CSVs
train       grid-searched LogisticRegression, pickled        models/model.pkl
evaluate    metrics overall and per group on validation      reports/evaluation.json
test        metrics overall and per group on the hold-back   reports/test.json
package     model + model card + requirements + schema      package/credit-model/ (directory)
serve       HTTP server on 127.0.0.1, roll-out checks        reports/rollout.json
monitor     latency, error rate, drift (PSI) of live calls   reports/monitor.json, rollback target
log         Merkle-sealed per-inference records              logs/inference/checkpoints/...
==========  ===============================================  =====================================
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mlspec_attest.attest.attestor import AppendPolicy, Attestation, Attestor
from mlspec_attest.attest.head import DEFAULT_HEAD_VALIDITY, HeadSigning
from mlspec_attest.digests import digest_path
from mlspec_attest.errors import InputError
from mlspec_attest.keys import Signer

DEFAULT_ROWS = 6000
DEFAULT_SEED = 3  # chosen after measuring: recall gap 0.014 (limit 0.10), see docs/demo.md
LIVE_REQUESTS = 200
APPLICATION_ID = "credit-approval-demo"
MODEL_NAME = "credit-model"

NUMERIC = ["age", "income", "debt_ratio", "credit_history_years", "late_payments", "loan_amount"]
PURPOSES = ["business", "car", "education", "home"]
RAW_COLUMNS = ["application_id", *NUMERIC, "purpose", "group", "decision"]
# The model's inputs: the group attribute is deliberately not one of them.
FEATURES = [*NUMERIC, "loan_to_income", "purpose"]
CLEAN_COLUMNS = ["application_id", *FEATURES, "group", "label"]
OUTLIER_FEATURES = ["income", "loan_amount"]
OUTLIER_IQR = 6.0
SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "holdback": 0.2}

# Codified before training: the chain's genesis. Thresholds are set so that the
# demo's model passes with margin and the --fail-objective model does not.
OBJECTIVES_YAML = """\
# Codified objectives for the credit-approval model: attested FIRST (sequence 0),
# signed by the product owner, so they cannot be loosened once results are known.
# 'mlspec objectives check objectives.yaml' compiles every criterion.
version: 1
project: credit-model    # the demo's policies pin this project (mlspec init --project credit-model)
revision: 1
description: Approve or deny retail credit applications; fair across applicant groups.

outputs:
  task: classification
  labels: [approve, deny]
  description: One label per application with an approval score in [0, 1] (approve when >= 0.5).

errors:
  - name: false_approve
    description: An application that should be denied is approved (credit loss).
    handling: Scores within 0.05 of the threshold are routed to manual review.
  - name: false_deny
    description: A creditworthy applicant is denied (lost business, possible unfair treatment).
    handling: Denied applicants can ask for a human review; denials are sampled weekly per group.

criteria:
  - name: test_accuracy
    stage: test
    expression: metrics.accuracy >= 0.82
    severity: block
    description: Accuracy on the hold-back set of at least 82%.
  - name: test_auc
    stage: test
    expression: metrics.auc >= 0.90
    severity: block
    description: Ranking quality (ROC AUC) on the hold-back set of at least 0.90.
  - name: evaluate_recall_gap
    stage: evaluate
    expression: slices.group.max_gap("recall") <= 0.10
    severity: block
    description: Equal opportunity - recall differs by at most 10 points between applicant groups.
  - name: test_min_group_recall
    stage: test
    expression: min(slices.group, "recall") >= 0.80
    severity: warn
    description: No applicant group below 80% recall on the hold-back set (reported, not blocking).
  - name: monitor_live_health
    stage: monitor
    expression: signals.error_rate == 0.0 && signals.latency_p99_ms <= 250.0
    severity: block
    description: The rolled-out endpoint answered every live request, 99% of them within 250 ms.
  - name: monitor_drift
    stage: monitor
    expression: signals.drift_psi_max <= 0.25
    severity: warn
    description: No input feature drifted (PSI above 0.25) between training data and live traffic.
"""

Echo = Callable[[str], Any]


# --------------------------------------------------------------------------- helpers


def _now_iso(ms: bool = False) -> str:
    now = datetime.now(timezone.utc)
    text = now.isoformat(timespec="milliseconds" if ms else "seconds")
    return text.replace("+00:00", "Z")


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """CSV with a fixed float format, so the same data always hashes the same."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else (f"{v:.4f}".rstrip("0").rstrip(".") if isinstance(v, float) else v)
                         for v in row])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _r(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


def _column(rows: list[dict[str, str]], name: str) -> Any:
    import numpy as np

    return np.array([float(r[name]) for r in rows], dtype=float)


def _matrix(rows: list[dict[str, str]]) -> Any:
    import numpy as np

    return np.column_stack([_column(rows, f) for f in FEATURES])


def _labels(rows: list[dict[str, str]]) -> Any:
    import numpy as np

    return np.array([int(r["label"]) for r in rows], dtype=int)


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else 0.0


def _reference_bins(values: Any, bins: int = 10) -> dict[str, list[float]]:
    """Decile edges and the fraction of rows per bin: the baseline drift is measured against."""
    import numpy as np

    edges = np.unique(np.percentile(values, np.linspace(0, 100, bins + 1))[1:-1])
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return {"edges": [_r(e) for e in edges], "fractions": [_r(c / len(values), 6) for c in counts]}


def population_stability_index(reference: dict[str, list[float]], values: Any) -> float:
    """PSI of ``values`` against reference bins (0.1: watch, 0.25: significant shift)."""
    import numpy as np

    edges = np.asarray(reference["edges"], dtype=float)
    expected = np.asarray(reference["fractions"], dtype=float)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    actual = counts / max(len(values), 1)
    eps = 1e-4
    e, a = np.clip(expected, eps, None), np.clip(actual, eps, None)
    return float(np.sum((a - e) * np.log(a / e)))


def classification_metrics(y: Any, pred: Any, score: Any) -> dict[str, float]:
    """The metrics the objectives read: accuracy, precision, recall, f1, auc (and counts)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    out = {
        "accuracy": _r(accuracy_score(y, pred)),
        "precision": _r(precision_score(y, pred, zero_division=0)),
        "recall": _r(recall_score(y, pred, zero_division=0)),
        "f1": _r(f1_score(y, pred, zero_division=0)),
        "approval_rate": _r(float(pred.mean())),
        "rows": len(y),
    }
    out["auc"] = _r(roc_auc_score(y, score)) if len(set(y.tolist())) == 2 else 0.0
    return out


# --------------------------------------------------------------------------- data


def generate_applications(rows: int, seed: int) -> list[list[Any]]:
    """Synthetic credit applications with a known approval rule, some missing incomes
    and a few data-entry outliers (so that analyze and transform have real work)."""
    import numpy as np

    r = np.random.default_rng(seed)
    group = np.where(r.random(rows) < 0.35, "B", "A")
    b = group == "B"
    age = np.where(b, r.integers(21, 56, rows), r.integers(21, 71, rows))
    income = np.exp(r.normal(np.where(b, 3.80, 3.95), 0.35))  # thousands per year
    history = np.clip(np.minimum(age - 18, r.gamma(np.where(b, 2.0, 4.0), 2.2)), 0, None)
    debt = r.beta(2, 5, rows)
    late = r.poisson(np.where(history < 3, 1.2, 0.6))
    loan = np.exp(r.normal(2.6, 0.5, rows))  # thousands
    purpose = r.choice(PURPOSES, rows, p=[0.15, 0.35, 0.15, 0.35])
    purpose_effect = np.select([purpose == "business", purpose == "education"], [-0.3, 0.2], 0.0)
    logit = (0.6 + 1.3 * (np.log(income) - 3.9) / 0.35 - 5.0 * (debt - 0.286) - 0.8 * late
             + 0.05 * np.minimum(history, 10) - 3.0 * (loan / income - 0.3) + purpose_effect)
    approved = r.random(rows) < 1 / (1 + np.exp(-2.0 * logit))
    # Data quality problems the pipeline must deal with (decided before they are applied).
    missing = r.random(rows) < 0.008
    outlier = (r.random(rows) < 0.003) & ~missing
    out = []
    for i in range(rows):
        inc = None if missing[i] else float(income[i] * (1000.0 if outlier[i] else 1.0))
        out.append([f"APP-{i + 1:06d}", int(age[i]), None if inc is None else round(inc, 2), round(float(debt[i]), 4),
                    round(float(history[i]), 1), int(late[i]), round(float(loan[i]), 2), str(purpose[i]),
                    str(group[i]), "approve" if approved[i] else "deny"])
    return out


# --------------------------------------------------------------------------- serving


class _PredictionServer:
    """The packaged model behind ``POST /predict`` and ``GET /ok`` on 127.0.0.1.

    Every answered request is handed to ``on_request`` (the inference log), which is
    what a real serving sidecar would do.
    """

    def __init__(self, model: Any, model_id: str):
        self.model = model
        self.model_id = model_id
        self.on_request: Callable[[dict[str, Any]], None] | None = None
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: avoid 40 ms delayed-ACK stalls

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the inference log replaces the access log

            def _send(self, status: int, body: dict[str, Any]) -> int:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return len(data)

            def do_GET(self) -> None:
                if self.path == "/ok":
                    self._send(200, {"status": "ok", "model": server.model_id})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                started = time.perf_counter()
                received = _now_iso(ms=True)
                record = server.on_request  # taken now: the client may detach it once it has the answer
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                    instances = body["instances"]
                    matrix = [[float(inst[f]) for f in FEATURES] for inst in instances]
                except (ValueError, KeyError, TypeError) as exc:
                    self._send(400, {"error": f"bad request: {exc!r}", "features": FEATURES})
                    return
                if self.path != "/predict":
                    self._send(404, {"error": "not found"})
                    return
                with server.lock:  # sklearn estimators are not documented as thread-safe
                    scores = server.model.predict_proba(matrix)[:, 1]
                preds = [{"label": "approve" if s >= 0.5 else "deny", "score": round(float(s), 4)} for s in scores]
                sent = self._send(200, {"model": server.model_id, "predictions": preds})
                if record is not None:
                    record({
                        "requestId": self.headers.get("X-Request-Id") or f"req-{time.time_ns()}",
                        "time": received, "request": f"{self.command} {self.path} {self.request_version}",
                        "status": 200, "bytes": sent, "host": self.client_address[0],
                        "latency": round((time.perf_counter() - started) * 1000.0, 3),
                        "instances": instances, "predictions": preds,
                    })

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="mlspec-demo-serve", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/predict"

    def __enter__(self) -> _PredictionServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _Client:
    """A keep-alive HTTP client on loopback (never through a proxy)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method: str, path: str, body: Any = None, request_id: str | None = None) -> tuple[int, Any, float]:
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["X-Request-Id"] = request_id
        data = None if body is None else json.dumps(body).encode()
        started = time.perf_counter()
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        payload = resp.read()
        elapsed = (time.perf_counter() - started) * 1000.0
        return resp.status, json.loads(payload or b"null"), elapsed

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- the pipeline


@dataclass
class StageReport:
    """What one stage attested, for the demo's one-line-per-stage output."""

    sequence: int
    stage: str
    signer: str
    attested: str
    summary: str
    payload_sha256: str


@dataclass
class PipelineResult:
    root: Path
    bundle: Path
    package: Path
    stages: list[StageReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class CreditPipeline:
    """The 13 stages as methods; each does its work, then attests it in a ``with`` block."""

    def __init__(self, root: Path, owner: Signer, pipeline: Signer, *, weak: bool = False,
                 rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, echo: Echo | None = None,
                 bundle: Path | str | None = None, policy: AppendPolicy | None = None):
        self.root = Path(root)
        from mlspec_attest.store.base import is_remote

        # an s3:// bundle stays a URL (the Attestor and the gate open it through mlspec_attest.store)
        self.bundle: Path = (bundle if is_remote(bundle)  # type: ignore[assignment]
                             else Path(bundle) if bundle is not None else self.root / "bundle")
        # Every append re-signs the chain head with the pipeline key (mlspec.yaml's head:), as the CLI does.
        head = HeadSigning((pipeline,), DEFAULT_HEAD_VALIDITY)
        # With ``policy`` (the runner passes the project's), every append is judged by the gate's rules first.
        self.owner = Attestor(self.bundle, owner, base_dir=self.root, head=head, policy=policy)
        self.attestor = Attestor(self.bundle, pipeline, base_dir=self.root, head=head, policy=policy)
        self.weak = weak
        self.rows = rows
        self.seed = seed
        self.echo = echo
        self.result = PipelineResult(root=self.root, bundle=self.bundle, package=self.root / "package" / MODEL_NAME)
        self.state: dict[str, Any] = {}

    # -- plumbing ---------------------------------------------------------------------
    def p(self, rel: str) -> Path:
        return self.root / rel

    def _record(self, att: Attestation | None, signer: str, attested: str, summary: str) -> None:
        assert att is not None
        report = StageReport(att.sequence, att.stage, signer, attested, summary, att.payload_sha256)
        self.result.stages.append(report)
        if self.echo is not None:
            self.echo(f"  {att.sequence:>3}  {att.stage:<10} {attested:<34} {summary}")

    def run(self) -> PipelineResult:
        for name in ("objectives", "ingest", "analyze", "transform", "validate", "split", "train",
                     "evaluate", "test", "package", "serve_monitor_log"):
            started = time.perf_counter()
            getattr(self, name)()
            self.result.timings[name] = round(time.perf_counter() - started, 3)
        return self.result

    # -- 1. objectives ----------------------------------------------------------------
    def objectives(self) -> None:
        """Codify the success criteria before any data is touched; owner-signed genesis."""
        import yaml

        from mlspec_attest.objectives.criteria import check_file

        path = self.p("objectives.yaml")
        path.write_text(OBJECTIVES_YAML, encoding="utf-8")
        objectives = check_file(path)  # refuse to start on criteria that do not compile
        with self.owner.stage("objectives") as s:
            s.product(path)
            s.metadata(yaml.safe_load(OBJECTIVES_YAML))
        blocking = sum(1 for c in objectives.criteria if c.severity == "block")
        self._record(s.result, "owner", "objectives.yaml",
                     f"{len(objectives.criteria)} criteria ({blocking} block, "
                     f"{len(objectives.criteria) - blocking} warn), signed by owner")

    # -- 2. ingest --------------------------------------------------------------------
    def ingest(self) -> None:
        """Generate the source data set and hash it; the generator spec is the external input."""
        spec = {"generator": "mlspec_attest.demo.credit.generate_applications", "rows": self.rows,
                "seed": self.seed, "columns": RAW_COLUMNS}
        spec_path = _write_json(self.p("data/source/generator.json"), spec)
        raw = _write_csv(self.p("data/raw/applications.csv"), RAW_COLUMNS,
                         generate_applications(self.rows, self.seed))
        with self.attestor.stage("ingest") as s:
            s.material(spec_path, role="external")
            s.product(raw, role="raw-data")
            s.metadata(
                connectors=["csv"],
                sources=[{"name": "applications", "connector": "synthetic-generator",
                          "uri": "data/raw/applications.csv", "format": "csv"}],
                synthetic={"generator": spec["generator"], "seed": self.seed, "numpy_bit_generator": "PCG64"},
                labelling={"label": "decision", "values": ["approve", "deny"],
                           "method": "logistic rule over income, debt, late payments, loan/income"},
                rows=self.rows, isDeprecated=False)
        self._record(s.result, "pipeline", "data/raw/applications.csv",
                     f"{self.rows:,} rows, synthetic (seed {self.seed})")

    # -- 3. analyze -------------------------------------------------------------------
    def analyze(self) -> None:
        """Descriptive statistics per feature and per group slice; IQR outliers; drift baseline."""
        import numpy as np

        rows = _read_csv(self.p("data/raw/applications.csv"))
        stats: dict[str, Any] = {}
        outliers: dict[str, int] = {}
        reference: dict[str, Any] = {}
        for f in NUMERIC:
            raw = [r[f] for r in rows]
            values = np.array([float(v) for v in raw if v != ""], dtype=float)
            q1, q3 = np.percentile(values, [25, 75])
            stats[f] = {"mean": _r(values.mean()), "std": _r(values.std()), "min": _r(values.min()),
                        "max": _r(values.max()), "p50": _r(np.median(values)), "missing": raw.count("")}
            if f in OUTLIER_FEATURES:
                iqr = q3 - q1
                outliers[f] = int(((values > q3 + OUTLIER_IQR * iqr) | (values < q1 - OUTLIER_IQR * iqr)).sum())
            reference[f] = _reference_bins(values)
        purposes = [r["purpose"] for r in rows]
        stats["purpose"] = {p: purposes.count(p) for p in PURPOSES}
        slices: dict[str, Any] = {"group": {}}
        for g in ("A", "B"):
            sub = [r for r in rows if r["group"] == g]
            incomes = [float(r["income"]) for r in sub if r["income"] != ""]
            slices["group"][g] = {"rows": len(sub), "approval_rate": _r(sum(r["decision"] == "approve" for r in sub) / len(sub)),
                                  "income_p50": _r(_percentile(incomes, 50)),
                                  "credit_history_years_mean": _r(float(np.mean([float(r["credit_history_years"]) for r in sub])))}
        approval = _r(sum(r["decision"] == "approve" for r in rows) / len(rows))
        report = {"rows": len(rows), "statistics": stats, "slices": slices, "outliers": outliers,
                  "approval_rate": approval, "reference_bins": reference,
                  "outlier_rule": f"outside [Q1 - {OUTLIER_IQR} IQR, Q3 + {OUTLIER_IQR} IQR]"}
        out = _write_json(self.p("reports/statistics.json"), report)
        with self.attestor.stage("analyze") as s:
            s.material(self.p("data/raw/applications.csv"), role="raw-data")
            s.product(out, role="statistics")
            s.metadata(rows=len(rows), statistics=stats, slices=slices, outliers=outliers,
                       label_balance={"approve": approval})
        missing = sum(v.get("missing", 0) for v in stats.values() if isinstance(v, dict) and "missing" in v)
        self._record(s.result, "pipeline", "reports/statistics.json",
                     f"{len(NUMERIC)} numeric features, 2 group slices, {missing} missing, "
                     f"{sum(outliers.values())} outliers")

    # -- 4. transform -----------------------------------------------------------------
    def transform(self) -> None:
        """Drop incomplete rows and outliers, map purpose to integers, derive loan_to_income."""
        import numpy as np

        rows = _read_csv(self.p("data/raw/applications.csv"))
        bounds = {}
        for f in OUTLIER_FEATURES:
            values = np.array([float(r[f]) for r in rows if r[f] != ""])
            q1, q3 = np.percentile(values, [25, 75])
            bounds[f] = (q1 - OUTLIER_IQR * (q3 - q1), q3 + OUTLIER_IQR * (q3 - q1))
        feature_map = {"purpose": {p: i for i, p in enumerate(PURPOSES)}, "label": {"deny": 0, "approve": 1}}
        clean, dropped_missing, dropped_outliers = [], 0, 0
        for r in rows:
            if any(r[c] == "" for c in RAW_COLUMNS):
                dropped_missing += 1
                continue
            if any(not bounds[f][0] <= float(r[f]) <= bounds[f][1] for f in OUTLIER_FEATURES):
                dropped_outliers += 1
                continue
            income, loan = float(r["income"]), float(r["loan_amount"])
            clean.append([r["application_id"], *(float(r[f]) for f in NUMERIC), round(loan / income, 4),
                          feature_map["purpose"][r["purpose"]], r["group"], feature_map["label"][r["decision"]]])
        out = _write_csv(self.p("data/clean.csv"), CLEAN_COLUMNS, clean)
        maps = _write_json(self.p("data/feature_maps.json"), feature_map)
        with self.attestor.stage("transform") as s:
            s.material(self.p("data/raw/applications.csv"), role="raw-data")
            s.product(out, role="clean-data")
            s.product(maps, role="feature-maps")
            s.metadata(
                transformations=[
                    {"name": "drop-incomplete", "rows_removed": dropped_missing},
                    {"name": "drop-outliers", "features": OUTLIER_FEATURES,
                     "rule": f"outside [Q1 - {OUTLIER_IQR} IQR, Q3 + {OUTLIER_IQR} IQR]",
                     "rows_removed": dropped_outliers},
                    {"name": "derive", "feature": "loan_to_income", "formula": "loan_amount / income"},
                    {"name": "map-to-integer", "features": ["purpose", "decision->label"]},
                ],
                feature_maps=feature_map, outliers_removed=dropped_outliers, rows_in=len(rows), rows_out=len(clean))
        self._record(s.result, "pipeline", "data/clean.csv",
                     f"{len(rows):,} -> {len(clean):,} rows ({dropped_missing} incomplete, "
                     f"{dropped_outliers} outliers removed)")

    # -- 5. validate ------------------------------------------------------------------
    def validate(self) -> None:
        """Check the clean data against schema credit-applications@1; stop the pipeline on failure."""
        rows = _read_csv(self.p("data/clean.csv"))
        ranges = {"age": (18, 100), "income": (1, 1000), "debt_ratio": (0, 1), "credit_history_years": (0, 82),
                  "late_payments": (0, 50), "loan_amount": (0.1, 1000), "loan_to_income": (0, 100)}
        ids = [r["application_id"] for r in rows]
        results: dict[str, Any] = {
            "columns": list(rows[0].keys()) == CLEAN_COLUMNS if rows else False,
            "no-missing-values": all(all(v != "" for v in r.values()) for r in rows),
            "unique-application-id": len(set(ids)) == len(ids),
            "label-is-binary": {r["label"] for r in rows} <= {"0", "1"},
            "group-in-A-B": {r["group"] for r in rows} <= {"A", "B"},
            "purpose-mapped": {r["purpose"] for r in rows} <= {str(i) for i in range(len(PURPOSES))},
        }
        for f, (lo, hi) in ranges.items():
            results[f"{f}-in-[{lo},{hi}]"] = all(lo <= float(r[f]) <= hi for r in rows)
        results["min-rows-1000"] = len(rows) >= 1000
        passed = all(results.values())
        out = _write_json(self.p("reports/validation.json"),
                          {"schema": "credit-applications@1", "rows": len(rows), "results": results, "passed": passed})
        with self.attestor.stage("validate") as s:
            s.material(self.p("data/clean.csv"), role="clean-data")
            s.product(out, role="validation-report")
            s.metadata(schema_version="1", schema="credit-applications@1", checks=sorted(results),
                       results={k: "pass" if v else "fail" for k, v in results.items()}, passed=passed,
                       isDeprecated=False, rows=len(rows))
        self._record(s.result, "pipeline", "reports/validation.json",
                     f"schema credit-applications@1: {sum(results.values())}/{len(results)} checks passed")
        if not passed:
            failed = ", ".join(k for k, v in results.items() if not v)
            raise InputError(f"validation failed ({failed}); the pipeline stops here")

    # -- 6. split ---------------------------------------------------------------------
    def split(self) -> None:
        """Stratified (label x group) 60/20/20 split; row hashes prove the sets are disjoint."""
        import numpy as np

        rows = _read_csv(self.p("data/clean.csv"))
        rng = np.random.default_rng(self.seed + 1)
        assignment: dict[str, list[dict[str, str]]] = {k: [] for k in SPLIT_FRACTIONS}
        strata: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(rows):
            strata.setdefault((r["label"], r["group"]), []).append(i)
        for key in sorted(strata):
            idx = rng.permutation(strata[key])
            n_train = round(len(idx) * SPLIT_FRACTIONS["train"])
            n_val = round(len(idx) * SPLIT_FRACTIONS["validation"])
            for name, part in (("train", idx[:n_train]), ("validation", idx[n_train:n_train + n_val]),
                               ("holdback", idx[n_train + n_val:])):
                assignment[name].extend(rows[j] for j in part)
        paths = {"train": "data/splits/train.csv", "validation": "data/splits/validation.csv",
                 "holdback": "data/splits/holdback.csv"}
        from mlspec_attest.leakage import overlap, parse_fingerprints, write_fingerprints

        fingerprints: dict[str, Path] = {}
        sets: dict[str, Any] = {}
        for name, members in assignment.items():
            members.sort(key=lambda r: r["application_id"])
            _write_csv(self.p(paths[name]), CLEAN_COLUMNS, [[r[c] for c in CLEAN_COLUMNS] for r in members])
            # Row fingerprints (64-bit XXH3 of each CSV line, v2 blobs): the verifier re-proves disjointness from them.
            fingerprints[name] = write_fingerprints(self.p(paths[name]), self.p(paths[name]).with_suffix(".fp"))
            sets[name] = {"size": len(members), "fraction": _r(len(members) / len(rows)), "path": paths[name],
                          "statistics": {"approval_rate": _r(sum(r["label"] == "1" for r in members) / len(members)),
                                         "group_b_share": _r(sum(r["group"] == "B" for r in members) / len(members))}}
        fp = {k: parse_fingerprints(v.read_bytes(), str(v)) for k, v in fingerprints.items()}
        pairs = {f"{a}/{b}": overlap(fp[a], fp[b])
                 for a, b in (("train", "validation"), ("train", "holdback"), ("validation", "holdback"))}
        overlap_rows = sum(pairs.values())
        if overlap_rows:
            raise InputError(f"split leaks rows between sets: {pairs}")
        with self.attestor.stage("split") as s:
            s.material(self.p("data/clean.csv"), role="clean-data")
            s.product(self.p(paths["train"]), role="train-data")
            s.product(self.p(paths["validation"]), role="eval-data")
            s.product(self.p(paths["holdback"]), role="holdback-data")
            # The attestor fingerprints each set itself and names the set's digest (the gate binds the proof to it).
            s.fingerprints.extend((name, self.p(paths[name])) for name in ("train", "validation", "holdback"))
            s.metadata(method="stratified by label and group", seed=self.seed + 1, sets=sets,
                       leakage={"overlap": overlap_rows, "pairs": pairs,
                                "method": "64-bit XXH3 fingerprints of each CSV row (mlspec_attest.leakage, format v2)"})
        self._record(s.result, "pipeline", "data/splits/*.csv (3 sets)",
                     " / ".join(f"{k} {v['size']:,}" for k, v in sets.items()) + f", row overlap {overlap_rows}")

    # -- 7. train ---------------------------------------------------------------------
    def train(self) -> None:
        """Grid-search a scaled LogisticRegression (3-fold CV, ROC AUC) and pickle the best model.

        ``weak`` (``--fail-objective``) reproduces a classic fairness failure: the model
        learns from historical labels in which most group-B approvals were recorded as
        denials. ``group`` is still not a feature, but its proxies (age, credit history,
        income) carry the bias into the model.
        """
        import numpy as np
        import sklearn
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        rows = _read_csv(self.p("data/splits/train.csv"))
        X, y = _matrix(rows), _labels(rows)
        data_note = "all training rows"
        if self.weak:
            rng = np.random.default_rng(self.seed + 2)
            group_b = np.array([r["group"] == "B" for r in rows])
            y = y.copy()
            y[group_b & (rng.random(len(y)) < 0.9)] = 0
            data_note = "historical labels: 90% of group-B approvals recorded as denials (deliberately biased)"
        numeric_idx = list(range(len(FEATURES) - 1))
        model = Pipeline([
            ("features", ColumnTransformer([("scale", StandardScaler(), numeric_idx),
                                            ("purpose", OneHotEncoder(handle_unknown="ignore"), [len(FEATURES) - 1])])),
            ("classifier", LogisticRegression(solver="newton-cholesky", max_iter=1000)),
        ])
        grid = {"classifier__C": [0.01, 0.1, 1.0, 10.0]}
        search = GridSearchCV(model, grid, cv=3, scoring="roc_auc", n_jobs=1).fit(X, y)
        best = search.best_estimator_
        path = self.p("models/model.pkl")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(best, protocol=5))
        train_metrics = classification_metrics(y, best.predict(X), best.predict_proba(X)[:, 1])
        self.state["model_sha256"] = _sha256_file(path)
        with self.attestor.stage("train") as s:
            s.material(self.p("data/splits/train.csv"), role="train-data")
            s.product(path, role="model")
            s.metadata(
                framework={"name": "scikit-learn", "version": sklearn.__version__, "numpy": np.__version__},
                model={"type": "LogisticRegression", "preprocessing": ["StandardScaler(numeric)", "OneHotEncoder(purpose)"],
                       "features": FEATURES, "excluded_features": ["group"], "format": "pickle protocol 5"},
                hyperparameters={"C": float(search.best_params_["classifier__C"]), "max_iter": 1000, "penalty": "l2",
                                 "solver": "newton-cholesky"},
                hyperparameter_search={"method": "grid", "cv_folds": 3, "scoring": "roc_auc",
                                       "trials": len(grid["classifier__C"]),
                                       "results": {str(c): _r(m) for c, m in zip(grid["classifier__C"],
                                                                               search.cv_results_["mean_test_score"])},
                                       "best": {"C": float(search.best_params_["classifier__C"])}},
                distribution="single process", training_data=data_note,
                metrics={k: v for k, v in train_metrics.items() if k != "rows"}, rows=len(rows))
        self._record(s.result, "pipeline", "models/model.pkl",
                     f"LogisticRegression C={search.best_params_['classifier__C']} (grid of 4, cv AUC "
                     f"{search.best_score_:.3f}){' WEAK' if self.weak else ''}")

    # -- 8/9. evaluate and test ---------------------------------------------------------
    def _score(self, csv_rel: str) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
        """Load the model from disk (the attested file) and score one data set, overall and per group."""
        import numpy as np

        model = pickle.loads(self.p("models/model.pkl").read_bytes())
        rows = _read_csv(self.p(csv_rel))
        X, y = _matrix(rows), _labels(rows)
        score = model.predict_proba(X)[:, 1]
        pred = (score >= 0.5).astype(int)
        groups = np.array([r["group"] for r in rows])
        metrics = classification_metrics(y, pred, score)
        slices = {"group": {g: classification_metrics(y[groups == g], pred[groups == g], score[groups == g])
                            for g in ("A", "B")}}
        tn = int(((pred == 0) & (y == 0)).sum())
        confusion = {"tp": int(((pred == 1) & (y == 1)).sum()), "fp": int(((pred == 1) & (y == 0)).sum()),
                     "tn": tn, "fn": int(((pred == 0) & (y == 1)).sum())}
        return metrics, slices, confusion

    def _summary(self, label: str, metrics: dict[str, float], slices: dict[str, Any]) -> str:
        a, b = slices["group"]["A"]["recall"], slices["group"]["B"]["recall"]
        return (f"{label}: acc {metrics['accuracy']:.3f} auc {metrics['auc']:.3f} f1 {metrics['f1']:.3f}; "
                f"recall A {a:.3f} B {b:.3f} (gap {abs(a - b):.3f})")

    def evaluate(self) -> None:
        """Metrics overall and per group on the validation set."""
        metrics, slices, confusion = self._score("data/splits/validation.csv")
        out = _write_json(self.p("reports/evaluation.json"), {"dataset": "data/splits/validation.csv", "metrics": metrics,
                                                              "slices": slices, "confusion": confusion, "threshold": 0.5})
        with self.attestor.stage("evaluate") as s:
            s.material(self.p("models/model.pkl"), role="model")
            s.material(self.p("data/splits/validation.csv"), role="eval-data")
            s.product(out, role="evaluation-report")
            s.metadata_file(out)  # bound: the gate checks the signed metrics are the report's
            s.metadata(holdback=False)
        self._record(s.result, "pipeline", "reports/evaluation.json", self._summary("validation", metrics, slices))

    def test(self) -> None:
        """Final confirmation on the hold-back set, which no earlier stage has used."""
        metrics, slices, confusion = self._score("data/splits/holdback.csv")
        self.state["test_metrics"] = metrics
        out = _write_json(self.p("reports/test.json"), {"dataset": "data/splits/holdback.csv", "metrics": metrics,
                                                        "slices": slices, "confusion": confusion, "threshold": 0.5})
        with self.attestor.stage("test") as s:
            s.material(self.p("models/model.pkl"), role="model")
            s.material(self.p("data/splits/holdback.csv"), role="holdback-data")
            s.product(out, role="test-report")
            s.metadata_file(out)  # bound: the gate checks the signed metrics are the report's
        self._record(s.result, "pipeline", "reports/test.json", self._summary("hold-back", metrics, slices))

    # -- 10. package ------------------------------------------------------------------
    def package(self) -> None:
        """A deployable directory: model, model card (seed model_example.yml fields), requirements, schema."""
        import numpy as np
        import sklearn
        import yaml

        pkg = self.result.package
        pkg.mkdir(parents=True, exist_ok=True)
        model_bytes = self.p("models/model.pkl").read_bytes()
        (pkg / "model.pkl").write_bytes(model_bytes)
        model_sha = hashlib.sha256(model_bytes).hexdigest()
        schema = {"inputs": {f: ("integer code, see purpose_map" if f == "purpose" else "number") for f in FEATURES},
                  "purpose_map": {p: i for i, p in enumerate(PURPOSES)},
                  "output": {"label": ["approve", "deny"], "score": "approval probability in [0, 1]"},
                  "request": {"POST /predict": {"instances": [{f: "..." for f in FEATURES}]}}}
        _write_json(pkg / "input_schema.json", schema)
        (pkg / "requirements.txt").write_text(f"scikit-learn=={sklearn.__version__}\nnumpy=={np.__version__}\n",
                                              encoding="utf-8")
        test_metrics = self.state.get("test_metrics", {})
        card = {
            "specVersion": "0.0.1",
            "name": MODEL_NAME,
            "runtimeArtifacts": {"model": {"location": "model.pkl", "relativePath": "model.pkl", "sha256": model_sha},
                                 "requirements": {"location": "requirements.txt"},
                                 "schema": {"location": "input_schema.json"}},
            "framework": {"name": "scikit-learn", "version": sklearn.__version__},
            "created_by": "mlspec demo pipeline (mlspec_attest.demo.credit)",
            "purpose": "binary_classification",
            "custom": {"origin": {"dataAssets": "data/splits/train.csv", "pipeline": "bundle/ (mlspec attestations)",
                                  "codeAssets": "mlspec_attest/demo/credit.py"},
                       "metadata": {"schema": {"features": FEATURES, "link_to_dataset": "data/clean.csv",
                                               "service_schema": "input_schema.json"},
                                    "output_schema": {"label": "approve|deny", "score": "float"},
                                    "metrics": {k: v for k, v in test_metrics.items() if k in ("accuracy", "auc", "f1")},
                                    "tags": {"fairness_attribute": "group", "weak_demo_model": self.weak}}},
        }
        (pkg / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
        contents = sorted(p.name for p in pkg.iterdir())
        with self.attestor.stage("package") as s:
            s.material(self.p("models/model.pkl"), role="model")
            s.product(pkg, role="package")
            s.metadata(
                name=MODEL_NAME, model_identifier=f"{MODEL_NAME}@sha256:{model_sha[:16]}", format="pickle",
                framework={"name": "scikit-learn", "version": sklearn.__version__},
                contents=[{"path": n, "sha256": _sha256_file(pkg / n)} for n in contents],
                security={"run_as_non_root": True, "network": "loopback only in the demo",
                          "pickle": "load only after 'mlspec verify --artifact' matched this package's digest"},
                monitoring_agents=["inference log (Merkle-sealed)", "latency/error/drift signals"],
                infrastructure={"cpu": 1, "ram_gb": 0.5, "gpus": 0})
        self.state["package_digest"] = digest_path(pkg).sha256
        self._record(s.result, "pipeline", f"package/{MODEL_NAME}/",
                     f"{len(contents)} files, directory sha256 {self.state['package_digest'][:12]}")

    # -- 11/12/13. serve, monitor, log ------------------------------------------------
    def serve_monitor_log(self) -> None:
        """Roll the package out on loopback, send live traffic, attest signals and the sealed log."""
        import numpy as np
        import yaml

        pkg = self.result.package
        card_sha = yaml.safe_load((pkg / "model.yaml").read_text(encoding="utf-8"))["runtimeArtifacts"]["model"]["sha256"]
        if _sha256_file(pkg / "model.pkl") != card_sha:
            raise InputError(f"{pkg}/model.pkl does not match its model card; refusing to serve it")
        model = pickle.loads((pkg / "model.pkl").read_bytes())  # the packaged copy, not models/model.pkl
        model_id = f"{MODEL_NAME}@sha256:{card_sha[:16]}"
        holdback = _read_csv(self.p("data/splits/holdback.csv"))
        offline = model.predict_proba(_matrix(holdback))[:, 1]

        def instance(r: dict[str, str]) -> dict[str, float]:
            return {f: float(r[f]) for f in FEATURES}

        records: list[dict[str, Any]] = []
        with _PredictionServer(model, model_id) as server:
            client = _Client(server.port)
            try:
                # -- 11. serve: roll-out checks against the running endpoint
                checks: dict[str, Any] = {}
                status, body, _ = client.call("GET", "/ok")
                checks["health"] = {"passed": status == 200 and body.get("status") == "ok", "status": status}
                smoke = holdback[:20]
                status, body, ms = client.call("POST", "/predict", {"instances": [instance(r) for r in smoke]})
                served = [p["score"] for p in body.get("predictions", [])] if status == 200 else []
                agree = sum(abs(a - round(float(b), 4)) < 1e-9 for a, b in zip(served, offline[:20]))
                checks["smoke"] = {"passed": status == 200 and agree == len(smoke), "instances": len(smoke),
                                   "agreement_with_offline": _r(agree / len(smoke)), "latency_ms": _r(ms, 2)}
                status, _, _ = client.call("POST", "/predict", {"instances": [{"age": 30}]})
                checks["rejects-malformed-input"] = {"passed": status == 400, "status": status}
                ok = all(c["passed"] for c in checks.values())
                rollout = {"status": "succeeded" if ok else "failed", "strategy": "canary on loopback",
                           "endpoint": server.endpoint, "traffic": 1.0, "replicas": 1, "model": model_id,
                           "checks": checks}
                out = _write_json(self.p("reports/rollout.json"), rollout)
                with self.attestor.stage("serve") as s:
                    s.material(pkg, role="package")
                    s.product(out, role="rollout-report")
                    s.metadata(rollout=rollout, endpoint=server.endpoint,
                               serve={"server": "http.server.ThreadingHTTPServer", "host": "127.0.0.1",
                                      "port": server.port, "routes": ["GET /ok", "POST /predict"]})
                serve_att = s.result
                assert serve_att is not None
                self._record(serve_att, "pipeline", "reports/rollout.json",
                             f"{rollout['status']} at {server.endpoint}: {sum(c['passed'] for c in checks.values())}"
                             f"/{len(checks)} roll-out checks")
                if not ok:
                    raise InputError(f"roll-out checks failed: {json.dumps(checks)}")

                # -- live traffic, logged by the server as it answers
                server.on_request = records.append
                rng = np.random.default_rng(self.seed + 3)
                statuses: list[int] = []
                for n, j in enumerate(rng.choice(len(holdback), LIVE_REQUESTS, replace=False)):
                    status, _, _ = client.call("POST", "/predict", {"instances": [instance(holdback[int(j)])]},
                                               request_id=f"req-{n + 1:05d}")
                    statuses.append(status)
                deadline = time.monotonic() + 5.0  # the handler logs just after it answers
                while len(records) < LIVE_REQUESTS and time.monotonic() < deadline:
                    time.sleep(0.001)
                server.on_request = None
            finally:
                client.close()
        self.state["records"] = records
        self._monitor(records, statuses, serve_att)
        self._log(records, serve_att, model_id)

    def _monitor(self, records: list[dict[str, Any]], statuses: list[int], serve_att: Attestation) -> None:
        """Live signals from the served requests; the rollback target is the attested package."""
        import numpy as np

        stats = json.loads(self.p("reports/statistics.json").read_text())
        latencies = np.array([r["latency"] for r in records], dtype=float)
        inputs = {f: np.array([r["instances"][0][f] for r in records], dtype=float) for f in NUMERIC}
        psi = {f: _r(population_stability_index(stats["reference_bins"][f], inputs[f])) for f in NUMERIC}
        approvals = [r["predictions"][0]["label"] == "approve" for r in records]
        signals = {
            "requests": len(statuses),
            "error_rate": _r(sum(st != 200 for st in statuses) / max(len(statuses), 1)),
            "unlogged_requests": len(statuses) - len(records),
            "latency_p50_ms": _r(np.percentile(latencies, 50), 3),
            "latency_p99_ms": _r(np.percentile(latencies, 99), 3),
            "approval_rate": _r(np.mean(approvals)),
            "approval_rate_training": stats["approval_rate"],
            "drift_psi_max": max(psi.values()),
            **{f"drift_psi_{f}": v for f, v in psi.items()},
        }
        pkg = self.result.package
        metadata = {
            "signals": signals,
            "thresholds": {"error_rate": {"max": 0.0}, "latency_p99_ms": {"max": 250.0}, "drift_psi_max": {"max": 0.25}},
            "rollback_target": {"name": f"package/{MODEL_NAME}", "digest": {"sha256": self.state["package_digest"]},
                                "note": "the package verified at roll-out (sequence of the package stage)"},
            "window": {"start": records[0]["time"] if records else None, "end": records[-1]["time"] if records else None},
            "source": "server-side request records (see logs/inference/records.jsonl)",
            "serve_attestation": serve_att.payload_sha256,
        }
        out = _write_json(self.p("reports/monitor.json"), metadata)
        with self.attestor.stage("monitor") as s:
            s.material(pkg, role="package")
            s.material(self.p("reports/statistics.json"), role="drift-baseline")
            s.product(out, role="monitor-report")
            s.metadata_file(out)  # bound: the gate checks the signed signals are the report's
        self._record(s.result, "pipeline", "reports/monitor.json",
                     f"{signals['requests']} requests, p50 {signals['latency_p50_ms']:.1f} ms, p99 "
                     f"{signals['latency_p99_ms']:.1f} ms, errors {signals['error_rate']}, PSI max "
                     f"{signals['drift_psi_max']:.3f}; rollback -> package {self.state['package_digest'][:12]}")

    def _log(self, records: list[dict[str, Any]], serve_att: Attestation, model_id: str) -> None:
        """Write the per-inference records into a Merkle-sealed InferenceLog; the seal is the log attestation."""
        from mlspec_attest.log.inference import InferenceLog

        directory = self.p("logs/inference")
        seals: list[Attestation] = []
        fields = ["host", "time", "request", "status", "bytes", "applicationId", "requestId", "requestTimestamp",
                  "latency", "modelId", "inputFeatures", "prediction", "pipeline"]

        def seal_fn(metadata: dict[str, Any], products: list[Path]) -> str:
            with self.attestor.stage("log") as s:
                s.material(self.result.package, role="package")
                for p in products:
                    s.product(p, role="checkpoint")
                s.metadata(metadata, records=metadata["tree_size"], record_fields=fields, model=model_id,
                           records_sha256=_sha256_file(directory / "records.jsonl"))
            assert s.result is not None
            seals.append(s.result)
            return s.result.payload_sha256

        with InferenceLog(directory, serve_att.payload_sha256, seal_fn=seal_fn, origin=f"{APPLICATION_ID}/inference-log") as log:
            for r in records:
                log.append({
                    "host": r["host"], "ident": None, "user": None, "time": r["time"], "request": r["request"],
                    "status": r["status"], "bytes": r["bytes"], "applicationId": APPLICATION_ID,
                    "requestId": r["requestId"], "requestTimestamp": r["time"], "latency": r["latency"],
                    "modelId": model_id, "inputFeatures": r["instances"][0], "prediction": r["predictions"][0],
                })
        if len(seals) != 1:
            raise InputError(f"expected one log seal, got {len(seals)}")
        att = seals[0]
        md = att.statement["predicate"]["metadata"]
        self._record(att, "pipeline", "logs/inference/ (sealed)",
                     f"{md['tree_size']} records, Merkle root {md['root_hash'][:16]}, bound to serve "
                     f"{serve_att.payload_sha256[:12]}")


def run_pipeline(root: Path, owner: Signer, pipeline: Signer, *, weak: bool = False, rows: int = DEFAULT_ROWS,
                 seed: int = DEFAULT_SEED, echo: Echo | None = None, bundle: str | None = None,
                 policy: AppendPolicy | None = None) -> PipelineResult:
    """Run all 13 stages in ``root`` (an ``mlspec init`` project), appending to ``root/bundle`` (or ``bundle``)."""
    return CreditPipeline(root, owner, pipeline, weak=weak, rows=rows, seed=seed, echo=echo, bundle=bundle,
                          policy=policy).run()
