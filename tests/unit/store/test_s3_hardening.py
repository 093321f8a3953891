"""The adversarial review of the S3 store (H2-H5): proxies, Rust panics, credentials in text, a lying store.

Each test is the reviewer's attack, made again through the CLI (or the bundle) and shown refused.
Only loopback listeners are used; no S3 server is needed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Project

from mlspec_attest.errors import InputError
from mlspec_attest.store import HeadKept
from mlspec_attest.store import s3 as s3_mod
from mlspec_attest.store.base import StoreConflict
from mlspec_attest.store.s3 import PLAIN_HTTP_PROXY_VARIABLES, S3Bundle, S3Store, StoreLiedError, endpoint_from_env

REPO = Path(__file__).resolve().parents[3]


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proxies = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
    child = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k.upper() not in proxies}
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd,
                          env=child | env | {"PYTHONPATH": str(REPO)}, text=True, capture_output=True, timeout=120)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class Listener:
    """A loopback TCP listener that records whether anything connected (the would-be proxy)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(4096))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def _one_line_exit_2(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "panicked" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- H2: plain http through a proxy -------------------------------------------------------------
def test_the_proxy_threat_is_real_obstore_sends_plain_http_to_the_proxy(listener: Listener, tmp_path: Path) -> None:
    """The control: without our check, obstore's client hands the signed request to HTTP_PROXY."""
    script = ("import obstore; from obstore.store import S3Store as S\n"
              f"s = S('bkt', config={{'endpoint': 'http://127.0.0.1:{_closed_port()}', 'region': 'us-east-1', "
              "'access_key_id': 'AKIAEXAMPLEKEY', 'secret_access_key': 'examplesecretkey'}, "
              "client_options={'allow_http': True, 'timeout': '3s', 'connect_timeout': '2s'}, "
              "retry_config={'max_retries': 0})\n"
              "try:\n    list(obstore.list(s, prefix='p/'))\nexcept Exception:\n    pass\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"HTTP_PROXY": f"http://127.0.0.1:{listener.port}"}
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, timeout=60)
    assert any(b"127.0.0.1" in got and b"AWS4-HMAC-SHA256" in got for got in listener.received), listener.received


@pytest.mark.parametrize("variable", PLAIN_HTTP_PROXY_VARIABLES)
def test_a_proxy_variable_with_a_plain_http_endpoint_is_refused_and_nothing_reaches_the_proxy(
        variable: str, listener: Listener, tmp_path: Path, project: Project) -> None:
    """H2: HTTP_PROXY (any spelling reqwest reads) would carry the signed plain-http request off the host."""
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY": "examplesecretkey",
           variable: f"http://127.0.0.1:{listener.port}"}
    result = _cli(["verify", "s3://bkt/p", "--policy", str(project.policy())], env, tmp_path)
    _one_line_exit_2(result)
    assert f"{variable} is set" in result.stderr and "NO_PROXY" in result.stderr
    assert listener.received == []


@pytest.mark.parametrize(("host", "no_proxy"), [("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "localhost, 127.0.0.1"),
                                              ("127.0.0.1", "127.0.0.0/8"), ("localhost", "localhost"),
                                              ("[::1]", "::1")])
def test_no_proxy_covering_the_loopback_endpoint_goes_direct(host: str, no_proxy: str, listener: Listener,
                                                            tmp_path: Path, project: Project) -> None:
    """With NO_PROXY exempting the endpoint the request goes straight to it (refused here), never to the proxy.

    Each accepted NO_PROXY form is one the client inside obstore was seen to honour here.
    """
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{_closed_port()}", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY": "examplesecretkey",
           "HTTP_PROXY": f"http://127.0.0.1:{listener.port}", "NO_PROXY": no_proxy}
    result = _cli(["verify", "s3://bkt/p", "--policy", str(project.policy())], env, tmp_path)
    _one_line_exit_2(result)
    assert "HTTP_PROXY is set" not in result.stderr and "cannot list the bucket" in result.stderr, result.stderr
    assert listener.received == []


def test_no_proxy_that_names_another_host_does_not_count() -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "http_proxy": "http://proxy:3128",
           "no_proxy": "localhost,10.0.0.0/8,127.0.0.10"}
    for no_proxy in ("localhost,10.0.0.0/8,127.0.0.10", "*"):  # '*': obstore's client still used the proxy
        with pytest.raises(InputError, match="http_proxy is set"):
            endpoint_from_env(env | {"no_proxy": no_proxy})
    with pytest.raises(InputError, match="http_proxy is set"):
        endpoint_from_env(env)
    assert endpoint_from_env({"AWS_ENDPOINT_URL": "https://s3.example.com", "HTTPS_PROXY": "http://p:3128"}) == (
        "https://s3.example.com", False)  # TLS end to end: a proxy sees only ciphertext


# -- H3: values the Rust client panics on ---------------------------------------------------------
@pytest.mark.parametrize(("variable", "value"), [
    ("AWS_REGION", "us-east-1\n"), ("AWS_REGION", "us-east\x7f1"), ("AWS_DEFAULT_REGION", "eu\nwest"),
    ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE\nKEY"), ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE\x7fKEY"),
    ("AWS_SESSION_TOKEN", "token-value-long\x7f"), ("AWS_SESSION_TOKEN", "token\nvalue-long"),
    ("AWS_SECRET_ACCESS_KEY", "secret\x01value-long"),
    ("AWS_ENDPOINT_URL", "http://127.0.0.1:99999"), ("AWS_ENDPOINT_URL", "http://127.0.0.1 :9000"),
    ("AWS_ENDPOINT_URL", "http://127.0.0.1\\@evil.example:9000"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:0"),
    ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000/a b"), ("AWS_ENDPOINT", "http://127.0.0.1:9000\\x"),
])
def test_a_value_the_s3_client_would_panic_on_is_one_line_exit_2(variable: str, value: str, tmp_path: Path,
                                                                   project: Project) -> None:
    """H3: a Rust panic is a BaseException with a traceback; the value is refused before obstore sees it."""
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY": "examplesecretkey"} | {variable: value}
    result = _cli(["verify", "s3://bkt/p", "--policy", str(project.policy())], env, tmp_path)
    _one_line_exit_2(result)
    assert variable in result.stderr
    if variable in s3_mod.SECRET_VARIABLES:
        assert value.strip() not in result.stderr and value.split("\n")[0] not in result.stderr


def test_a_panic_inside_obstore_is_still_one_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backstop: should a value get past the checks, the panic (a BaseException) becomes an InputError."""
    import obstore

    class PanicLike(BaseException):
        pass

    def panic(*_a: object, **_k: object) -> None:
        raise PanicLike("called `Result::unwrap()` on an `Err` value: InvalidHeaderValue")

    store = S3Store("s3://bkt/p", environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "us-east-1"})
    for name in ("list", "head", "get", "put"):
        monkeypatch.setattr(obstore, name, panic)
    with pytest.raises(InputError, match="cannot list the bucket"):
        store.list("attestations")
    with pytest.raises(InputError, match="cannot reach the object"):
        store.exists("head.dsse.json")
    with pytest.raises(InputError, match="cannot read the"):
        store.read("head.dsse.json", limit=10, what="chain head")
    with pytest.raises(InputError, match="cannot write the object"):
        store.create("blobs/x", b"x")
    monkeypatch.setattr(obstore, "list", lambda *_a, **_k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is never turned into a message
        store.list("attestations")


# -- H4: credentials in the endpoint and in store error text --------------------------------------
@pytest.mark.parametrize("variable", s3_mod.ENDPOINT_VARIABLES)
@pytest.mark.parametrize("netloc", ["admin:Hunter2pw@127.0.0.1:9000", "admin@127.0.0.1", "admin:Hunter2pw@10.0.0.5",
                                    ":Hunter2pw@s3.example.com"])
def test_userinfo_in_an_endpoint_is_refused_without_echoing_it(variable: str, netloc: str, tmp_path: Path,
                                                                project: Project) -> None:
    scheme = "https" if "example" in netloc else "http"
    result = _cli(["verify", "s3://bkt/p", "--policy", str(project.policy())],
                  {variable: f"{scheme}://{netloc}", "AWS_REGION": "us-east-1"}, tmp_path)
    _one_line_exit_2(result)
    assert "user name or password" in result.stderr and variable in result.stderr
    assert "Hunter2pw" not in result.stdout + result.stderr and "admin" not in result.stdout + result.stderr


def _store(secrets: dict[str, str]) -> S3Store:
    return S3Store("s3://bkt/p", environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "us-east-1"}
                   | secrets)


def test_a_short_secret_withholds_the_store_text_instead_of_blanking_letters() -> None:
    """Blanking 'a' or 'east' char-by-char garbles the text and shows where the secret sits: withhold it."""
    store = _store({"AWS_SECRET_ACCESS_KEY": "east", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY"})
    said = store._quiet(RuntimeError("connection to us-east-1 refused; key east rejected"))
    assert "east" not in said and "***" not in said and "RuntimeError" in said and "withheld" in said


def test_a_long_secret_is_blanked_and_the_rest_of_the_text_kept() -> None:
    store = _store({"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-K7MDENG", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
                    "AWS_SESSION_TOKEN": "wJalrXUtnFEMI-K7MDENG-and-more"})
    said = store._quiet(RuntimeError("denied for AKIAEXAMPLEKEY token wJalrXUtnFEMI-K7MDENG-and-more\nsecond line"))
    assert said == "denied for *** token ***"  # the longer secret first: no tail of it is left behind


def test_a_proxy_password_is_blanked_from_store_text() -> None:
    store = S3Store("s3://bkt/p", environ={"AWS_ENDPOINT_URL": "https://s3.example.com", "AWS_REGION": "us-east-1",
                                          "HTTPS_PROXY": "http://user:proxy-Password-9@127.0.0.1:3128"})
    assert "proxy-Password-9" not in store._quiet(RuntimeError("proxy user:proxy-Password-9 refused"))


# -- H5: a store that lies about conditional creates ---------------------------------------------
class DictStore(S3Store):
    """An in-memory store; honest unless a test makes it lie (no server, no obstore)."""

    def __init__(self) -> None:
        self.bucket, self.prefix, self.label, self._secrets = "b", "p", "s3://b/p", ()
        self.objs: dict[str, bytes] = {}
        self.let_through: set[str] = set()

    def list(self, folder: str) -> list[tuple[str, int]]:
        return sorted((k[len(folder) + 1:], len(v)) for k, v in self.objs.items() if k.startswith(folder + "/"))

    def _get(self, name: str, *, limit: int, what: str) -> tuple[bytes, str] | None:
        return (self.objs[name], "etag") if name in self.objs else None

    def _put(self, name: str, data: bytes, *, mode: object) -> None:
        if mode == "create" and name in self.objs and name not in self.let_through:
            raise StoreConflict(name)
        self.let_through.discard(name)
        self.objs[name] = data


def test_a_racing_claim_that_passed_the_store_is_refused_not_reported_appended() -> None:
    """The reviewer's repro: B's claim PUT raced past A's; B must not be told its attestation was appended."""
    store = DictStore()
    a, b = S3Bundle("s3://b/p", store=store), S3Bundle("s3://b/p", store=store)
    a.write_new("0013-monitor.dsse.json", b"A-signed-bytes")
    store.let_through.add("claims/000000000013")
    with pytest.raises(StoreLiedError, match="claim the same sequence number"):
        b.write_new("0013-monitor.dsse.json", b"B-signed-bytes")
    assert store.objs["attestations/0013-monitor.dsse.json"] == b"A-signed-bytes"


def test_a_store_that_only_refuses_identical_bytes_fails_the_honesty_probe() -> None:
    """A store that de-duplicates identical PUTs but overwrites on different bytes passed a same-bytes probe."""

    class Dedup(DictStore):
        def _put(self, name: str, data: bytes, *, mode: object) -> None:
            if mode == "create" and self.objs.get(name) == data:
                raise StoreConflict(name)
            self.objs[name] = data

    bundle = S3Bundle("s3://b/p", store=Dedup())
    with pytest.raises(StoreLiedError, match="accepted a second"):
        bundle.write_new("0000-objectives.dsse.json", b"signed")
    assert "attestations/0000-objectives.dsse.json" not in bundle.store.objs  # type: ignore[attr-defined]


def test_an_honest_store_appends_and_a_finisher_copy_of_the_same_bytes_is_fine() -> None:
    """A writer killed after its claim: the next one finishes the same bytes; nothing is refused."""
    store = DictStore()
    bundle = S3Bundle("s3://b/p", store=store)
    assert bundle.write_new("0000-objectives.dsse.json", b"signed") == "s3://b/p/attestations/0000-objectives.dsse.json"
    bundle._finish("0000-objectives.dsse.json", b"signed")  # again: already there with our bytes
    with pytest.raises(StoreLiedError):
        bundle._finish("0000-objectives.dsse.json", b"other bytes")
    with pytest.raises(_bundle_sequence_taken()):
        S3Bundle("s3://b/p", store=store).write_new("0000-ingest.dsse.json", b"x")


def _bundle_sequence_taken() -> type[Exception]:
    from mlspec_attest.bundle import SequenceTaken

    return SequenceTaken


def test_write_head_says_when_it_kept_a_later_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller must not print 'signed head: sequence 12' when the head stayed on sequence 14."""
    store = DictStore()
    store.objs["head.dsse.json"] = b"later head"
    monkeypatch.setattr(s3_mod, "_head_sequence", lambda data: 14 if data == b"later head" else -1)
    bundle = S3Bundle("s3://b/p", store=store)
    kept = bundle.write_head(b"head 12", 12)
    assert isinstance(kept, HeadKept) and kept.kept_sequence == 14 and kept == "s3://b/p/head.dsse.json"
    assert store.objs["head.dsse.json"] == b"later head"
    written = bundle.write_head(b"head 15", 15)
    assert not isinstance(written, HeadKept) and store.objs["head.dsse.json"] == b"head 15"
