"""Item #13.14: a revoked key's signature is never rescued by a time its signer wrote.

Attack: the pipeline key leaks; the policy revokes it ``after: T``. The thief re-signs
the chain with a swapped model and the original ``finishedOn`` times (all before T):
it used to PASS. Now a revoked key's signature counts only with time the policy
trusts: an RFC 3161 token from a TSA the policy names (genTime < T), or a chain head
by a non-revoked key issued before T that covers the attestation. Times in the future
beyond ``clock_skew`` are TIME_IN_FUTURE; a time of the wrong type is TIME_INVALID.

The TSA is real: OpenSSL's ``openssl ts -reply`` with a root and a TSA certificate
(critical timeStamping EKU) made here with ``cryptography``; requests and
verification go through ``rfc3161-client``.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import Project, build_lifecycle, resign_head
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import mlspec_attest.attest.attestor as attestor_module
from mlspec_attest.evidence.timestamp import timestamp_request, token_name
from mlspec_attest.keys import load_signer
from mlspec_attest.model.head import HEAD_FILE
from mlspec_attest.policy import Policy
from mlspec_attest.verify import Verifier

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the in-test TSA is 'openssl ts -reply'; openssl is absent")
KEY_USAGE = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)


class LocalTSA:
    """A real RFC 3161 TSA: OpenSSL's ``ts -reply`` over certificates made with ``cryptography``."""

    def __init__(self, directory: Path, name: str = "tsa") -> None:
        directory.mkdir(parents=True)
        self.dir = directory
        now = datetime.now(timezone.utc)

        def dn(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        root_key, tsa_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        root = (x509.CertificateBuilder().subject_name(dn(f"{name} root")).issuer_name(dn(f"{name} root"))
                .public_key(root_key.public_key()).serial_number(1)
                .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **KEY_USAGE),
                               critical=True)
                .sign(root_key, hashes.SHA256()))
        leaf = (x509.CertificateBuilder().subject_name(dn(name)).issuer_name(dn(f"{name} root"))
                .public_key(tsa_key.public_key()).serial_number(2)
                .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                             **{**KEY_USAGE, "content_commitment": True}), critical=True)
                .sign(root_key, hashes.SHA256()))
        (directory / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
        (directory / "tsa.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (directory / "tsa.key").write_bytes(tsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (directory / "serial").write_text("01\n")
        (directory / "ts.cnf").write_text(
            f"[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\nserial = {directory}/serial\nsigner_cert = {directory}/tsa.pem\n"
            f"signer_key = {directory}/tsa.key\nsigner_digest = sha256\ndefault_policy = 1.3.6.1.4.1.57264.2\n"
            "digests = sha256\naccuracy = secs:1\ness_cert_id_alg = sha256\n")

    def stamp(self, data: bytes) -> bytes:
        return self.reply(timestamp_request(data))

    def reply(self, query: bytes) -> bytes:
        (self.dir / "q.tsq").write_bytes(query)
        subprocess.run([OPENSSL, "ts", "-reply", "-config", str(self.dir / "ts.cnf"), "-queryfile",
                        str(self.dir / "q.tsq"), "-out", str(self.dir / "r.tsr")], check=True, capture_output=True)
        return (self.dir / "r.tsr").read_bytes()

    def policy_entry(self, policy_dir: Path) -> str:
        rel = Path("..") / self.dir.relative_to(policy_dir.parent)
        return f"{{name: {self.dir.name}, certificate: {rel}/tsa.pem, roots: [{rel}/root.pem]}}"


def signatures(bundle: Path) -> list[tuple[Path, bytes]]:
    out = []
    for f in sorted((bundle / "attestations").glob("*.dsse.json")):
        for s in json.loads(f.read_bytes())["signatures"]:
            out.append((f, base64.b64decode(s["sig"])))
    return out


def timestamp_all(bundle: Path, tsa: LocalTSA) -> None:
    for _, sig in signatures(bundle):
        target = bundle / token_name(sig)
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(tsa.stamp(sig))


def codes(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in report.findings if f.severity == "error"}


def utc(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


NOW = datetime.now(timezone.utc)
LATER = NOW + timedelta(hours=2)  # the gate runs after the revocation took effect


def revoking_policy(project: Project, after: datetime, *, tsas: list[LocalTSA] = (), head: str = "") -> Policy:
    """The default policy, the pipeline key revoked from ``after``; the head is signed by the owner."""
    keyid = load_signer(project.key("pipeline")).keyid
    text = "".join(line for line in project.policy().read_text().splitlines(keepends=True)
                   if not line.startswith("head:"))
    text += f"\nrevoked: [{{keyid: {keyid}, after: '{utc(after)}', reason: key leaked}}]\n"
    text += head or "head: {signers: [owner], required: true}\n"
    if tsas:
        text += "timestamp_authorities: [" + ", ".join(t.policy_entry(project.root / "policies") for t in tsas) + "]\n"
    return Policy.from_file(project.write("policies/revoked.yaml", text))


@pytest.fixture
def tsa(tmp_path: Path) -> LocalTSA:
    return LocalTSA(tmp_path / "proj" / "tsa")


@pytest.fixture
def chain(project: Project) -> Project:
    """The honest chain, made before the revocation; its head re-signed by the (unrevoked) owner."""
    build_lifecycle(project)
    resign_head(project.bundle, [load_signer(project.key("owner"))], timedelta(hours=24))
    return project


def _thief_resigns(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thief rebuilds the chain with the stolen key, a swapped model and the honest chain's old times."""
    old = json.loads(base64.b64decode(json.loads(
        (project.bundle / "attestations" / "0001-ingest.dsse.json").read_bytes())["payload"]))
    backdated = old["predicate"]["run"]["finishedOn"]
    shutil.rmtree(project.bundle)
    project.write("out/model.bin", "backdoored-model")
    project.write("pkg/model.bin", "backdoored-model")
    monkeypatch.setattr(attestor_module, "utc_now", lambda: backdated)
    build_lifecycle(project)
    resign_head(project.bundle, [load_signer(project.key("pipeline"))], timedelta(hours=24))


# -- trusted time keeps honest signatures; the signer's own time never does ------------------------
def test_honest_chain_timestamped_before_the_revocation_still_passes(chain: Project, tsa: LocalTSA) -> None:
    timestamp_all(chain.bundle, tsa)
    (chain.bundle / HEAD_FILE).unlink()  # no head proof: the tokens alone must carry it
    policy = revoking_policy(chain, NOW + timedelta(hours=1), tsas=[tsa], head="head: {signers: [owner], required: false}\n")
    report = Verifier(policy, now=LATER).verify(chain.bundle)
    assert report.passed, [f.message for f in report.findings]


def test_stated_times_before_the_revocation_do_not_rescue_a_signature(chain: Project) -> None:
    (chain.bundle / HEAD_FILE).unlink()
    policy = revoking_policy(chain, NOW + timedelta(hours=1), head="head: {signers: [owner], required: false}\n")
    report = Verifier(policy, now=LATER).verify(chain.bundle)
    revoked = [f for f in report.findings if f.code == "KEY_REVOKED"]
    assert {f.sequence for f in revoked} == set(range(1, 13)) and not report.passed
    assert "the time the attestation states does not count" in revoked[0].message


def test_thief_re_signing_with_original_times_and_a_swapped_model_is_refused(
        chain: Project, tsa: LocalTSA, monkeypatch: pytest.MonkeyPatch) -> None:
    timestamp_all(chain.bundle, tsa)
    honest_tokens = sorted((chain.bundle / "timestamps").iterdir())
    keep = chain.root / "honest-tokens"
    shutil.copytree(chain.bundle / "timestamps", keep)
    _thief_resigns(chain, monkeypatch)
    policy = revoking_policy(chain, NOW + timedelta(hours=1), tsas=[tsa])
    assert codes(Verifier(policy, now=LATER).verify(chain.bundle)) >= {"KEY_REVOKED"}
    # Variation: the honest tokens renamed to the forged signatures' names.
    forged = [sig for f, sig in signatures(chain.bundle) if "objectives" not in f.name]
    (chain.bundle / "timestamps").mkdir()
    for sig, token in zip(forged, sorted(keep.iterdir())):
        (chain.bundle / token_name(sig)).write_bytes(token.read_bytes())
    report = Verifier(policy, now=LATER).verify(chain.bundle)
    assert {"KEY_REVOKED", "TIMESTAMP_INVALID"} <= codes(report) and not report.passed
    assert len(honest_tokens) == 13


def test_token_from_a_tsa_the_policy_does_not_name_is_refused(chain: Project, tsa: LocalTSA, tmp_path: Path) -> None:
    rogue = LocalTSA(tmp_path / "proj" / "rogue", name="rogue")
    timestamp_all(chain.bundle, rogue)
    (chain.bundle / HEAD_FILE).unlink()
    policy = revoking_policy(chain, NOW + timedelta(hours=1), tsas=[tsa], head="head: {signers: [owner], required: false}\n")
    report = Verifier(policy, now=LATER).verify(chain.bundle)
    assert {"KEY_REVOKED", "TIMESTAMP_INVALID"} <= codes(report)


def test_genuine_token_dated_after_the_revocation_does_not_count(chain: Project, tsa: LocalTSA) -> None:
    timestamp_all(chain.bundle, tsa)  # a real token, but the TSA's clock says: after T
    (chain.bundle / HEAD_FILE).unlink()
    policy = revoking_policy(chain, NOW - timedelta(hours=1), tsas=[tsa], head="head: {signers: [owner], required: false}\n")
    report = Verifier(policy, now=LATER).verify(chain.bundle)
    assert "KEY_REVOKED" in codes(report) and "TIMESTAMP_INVALID" not in codes(report)


def test_head_by_an_unrevoked_key_issued_before_the_revocation_proves_the_chain(chain: Project) -> None:
    policy = revoking_policy(chain, NOW + timedelta(hours=1))
    assert Verifier(policy, now=NOW + timedelta(hours=1, minutes=30)).verify(chain.bundle).passed


def test_honest_head_does_not_cover_a_re_signed_chain(chain: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    honest_head = (chain.bundle / HEAD_FILE).read_bytes()
    _thief_resigns(chain, monkeypatch)
    (chain.bundle / HEAD_FILE).write_bytes(honest_head)
    policy = revoking_policy(chain, NOW + timedelta(hours=1))
    assert {"KEY_REVOKED", "HEAD_MISMATCH"} <= codes(Verifier(policy, now=LATER).verify(chain.bundle))


def test_head_signed_by_the_revoked_key_proves_nothing(chain: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _thief_resigns(chain, monkeypatch)  # signs the head with the stolen pipeline key
    policy = revoking_policy(chain, NOW + timedelta(hours=1), head="head: {signers: [pipeline, owner]}\n")
    report = Verifier(policy, now=LATER).verify(chain.bundle)
    assert {"KEY_REVOKED", "HEAD_SIGNATURE_INVALID"} <= codes(report)
    assert "revoked keys (pipeline) do not count" in next(
        f.message for f in report.findings if f.code == "HEAD_SIGNATURE_INVALID")


def test_unconditional_revocation_is_never_rescued(chain: Project, tsa: LocalTSA) -> None:
    timestamp_all(chain.bundle, tsa)
    keyid = load_signer(chain.key("pipeline")).keyid
    text = chain.policy().read_text() + f"\nrevoked: [{{keyid: {keyid}}}]\ntimestamp_authorities: [" \
        + tsa.policy_entry(chain.root / "policies") + "]\n"
    report = Verifier(Policy.from_file(chain.write("policies/r.yaml", text))).verify(chain.bundle)
    assert "KEY_REVOKED" in codes(report)


# -- clock: the future and the wrong type ---------------------------------------------------------
@pytest.mark.parametrize("value,code", [
    (12345, "TIME_INVALID"),
    (None, "TIME_INVALID"),
    (["2026-01-01T00:00:00Z"], "TIME_INVALID"),
    ("yesterday", "TIME_INVALID"),
    (utc(NOW + timedelta(hours=3)), "TIME_IN_FUTURE"),
    (utc(NOW + timedelta(days=3650)), "TIME_IN_FUTURE"),
])
def test_run_times_of_the_wrong_type_or_in_the_future_are_refused(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                                  value: object, code: str) -> None:
    monkeypatch.setattr(attestor_module, "utc_now", lambda: value)
    build_lifecycle(project, stages=("objectives", "ingest"))
    text = project.policy().read_text()
    policy = Policy.from_file(project.write("policies/two.yaml", text.replace("required: true}", "required: false}")))
    report = Verifier(policy).verify(project.bundle)
    assert code in codes(report) and not report.passed


def test_started_on_alone_in_the_future_is_refused(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    build_lifecycle(project, stages=("objectives",))
    future = utc(NOW + timedelta(hours=1))
    original = attestor_module.Attestor.attest

    def attest(self, stage, **kwargs):  # type: ignore[no-untyped-def]
        return original(self, stage, started_on=future, **kwargs)

    monkeypatch.setattr(attestor_module.Attestor, "attest", attest)
    build_lifecycle(project, stages=("ingest",))
    text = project.policy().read_text().replace("required: true}", "required: false}")
    report = Verifier(Policy.from_file(project.write("policies/two.yaml", text))).verify(project.bundle)
    assert "TIME_IN_FUTURE" in codes(report)


def test_clock_skew_is_a_policy_setting(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attestor_module, "utc_now", lambda: utc(NOW + timedelta(minutes=30)))
    build_lifecycle(project, stages=("objectives", "ingest"))
    text = project.policy().read_text().replace("required: true}", "required: false}")
    default = Policy.from_file(project.write("policies/two.yaml", text))
    assert default.clock_skew == timedelta(minutes=5)
    assert "TIME_IN_FUTURE" in codes(Verifier(default).verify(project.bundle))
    lenient = Policy.from_file(project.write("policies/skew.yaml", text + "\nclock_skew: 1h\n"))
    assert "TIME_IN_FUTURE" not in codes(Verifier(lenient).verify(project.bundle))


def test_head_issued_in_the_future_is_refused(project: Project) -> None:
    build_lifecycle(project)
    resign_head(project.bundle, [load_signer(project.key("pipeline"))], timedelta(hours=2),
              now=NOW + timedelta(hours=1))
    assert "TIME_IN_FUTURE" in codes(Verifier(Policy.from_file(project.policy())).verify(project.bundle))


@pytest.mark.parametrize("field,message", [
    ("clock_skew: soon", "not a duration"),
    ("timestamp_authorities: {name: x}", "must be a list"),
    ("timestamp_authorities: [{name: x}]", "needs certificate"),
    ("timestamp_authorities: [{certificate: ../nope.pem}]", "not found"),
])
def test_bad_time_trust_fields_are_input_errors(project: Project, field: str, message: str) -> None:
    from mlspec_attest.errors import InputError

    path = project.write("policies/bad.yaml", project.policy().read_text() + "\n" + field + "\n")
    with pytest.raises(InputError, match=message):
        Policy.from_file(path)


# -- mlspec attest timestamp --tsa URL, against a TSA served on 127.0.0.1 -----------------------------
@pytest.fixture
def tsa_url(tsa: LocalTSA):  # type: ignore[no-untyped-def]
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = self.rfile.read(int(self.headers["Content-Length"]))
            body = tsa.reply(query) if self.path == "/tsa" else b"<html>not a TSA</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_attest_timestamp_gets_tokens_the_gate_then_trusts(chain: Project, tsa: LocalTSA, tsa_url: str) -> None:
    from click.testing import CliRunner

    from mlspec_attest.cli.main import main

    for f in sorted((chain.bundle / "attestations").glob("*.dsse.json")):
        result = CliRunner().invoke(main, ["attest", "timestamp", str(f), "--tsa", tsa_url + "/tsa"])
        assert result.exit_code == 0, result.output
        assert "stored time-stamp token" in result.output
    (chain.bundle / HEAD_FILE).unlink()
    policy = revoking_policy(chain, NOW + timedelta(hours=1), tsas=[tsa], head="head: {signers: [owner], required: false}\n")
    report = Verifier(policy, now=LATER).verify(chain.bundle)
    assert report.passed, [f.message for f in report.findings]


def test_attest_timestamp_refuses_an_answer_that_is_no_token(chain: Project, tsa_url: str) -> None:
    from click.testing import CliRunner

    from mlspec_attest.cli.main import main

    f = chain.bundle / "attestations" / "0001-ingest.dsse.json"
    result = CliRunner().invoke(main, ["attest", "timestamp", str(f), "--tsa", tsa_url + "/elsewhere"])
    assert result.exit_code == 2 and "not a granted RFC 3161 token" in result.output
    assert not (chain.bundle / "timestamps").exists()
    result = CliRunner().invoke(main, ["attest", "timestamp", str(f), "--tsa", "file:///etc/passwd"])
    assert result.exit_code == 2 and "http:// or https://" in result.output


# -- added in the integration merge: variations a reviewer would try ----------------------------------
@pytest.mark.parametrize("keyid", ["", "0" * 64])
def test_revoked_key_signature_with_an_edited_keyid_field_is_still_revoked(chain: Project, keyid: str) -> None:
    """The envelope's keyid field is unsigned: blanking or changing it must not hide a revoked key's signature
    from the trusted-time check (interop accepts foreign envelopes, whose keyid may legitimately be empty)."""
    (chain.bundle / HEAD_FILE).unlink()
    for path in sorted((chain.bundle / "attestations").glob("*.dsse.json")):
        env = json.loads(path.read_bytes())
        for sig in env["signatures"]:
            sig["keyid"] = keyid
        path.write_text(json.dumps(env))
    policy = revoking_policy(chain, NOW + timedelta(hours=1), head="head: {signers: [owner], required: false}\n")
    report = Verifier(policy, now=LATER).verify(chain.bundle)
    revoked = {f.sequence for f in report.findings if f.code == "KEY_REVOKED"}
    assert revoked == set(range(1, 13)) and not report.passed


def test_symlinked_timestamp_token_is_refused_not_followed(chain: Project, tsa: LocalTSA) -> None:
    """A token planted as a symlink (to a genuine token elsewhere) is not read: TIMESTAMP_INVALID, KEY_REVOKED."""
    timestamp_all(chain.bundle, tsa)
    (chain.bundle / HEAD_FILE).unlink()
    outside = chain.root / "elsewhere"
    shutil.move(chain.bundle / "timestamps", outside)
    (chain.bundle / "timestamps").mkdir()
    for token in outside.iterdir():
        (chain.bundle / "timestamps" / token.name).symlink_to(token)
    policy = revoking_policy(chain, NOW + timedelta(hours=1), tsas=[tsa], head="head: {signers: [owner], required: false}\n")
    report = Verifier(policy, now=LATER).verify(chain.bundle)
    assert {"KEY_REVOKED", "TIMESTAMP_INVALID"} <= codes(report) and not report.passed
    assert any("symlink" in f.message for f in report.findings if f.code == "TIMESTAMP_INVALID")
