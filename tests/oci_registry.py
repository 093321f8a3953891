"""A real OCI registry for tests: Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1.

Started on a free port with a temporary config and filesystem storage, polled until
``/v2/`` answers, stopped afterwards. Tests skip, saying why, only when the binary is
absent (``.ci/run`` installs it: apt-get install docker-registry).
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlspec_attest.model.report import Report
from mlspec_attest.oci.push import PushResult, push
from mlspec_attest.oci.reference import OciReference
from mlspec_attest.policy import Policy
from mlspec_attest.verify import verify_bundle

BINARY = shutil.which("docker-registry") or ("/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists()
                                              else None)
MISSING = None if BINARY else "docker-registry is not installed (apt-get install docker-registry; .ci/run does)"

CONFIG = """version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{auth}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_registry(workdir: Path, *, htpasswd: str | None = None) -> Iterator[str]:
    """Yield ``127.0.0.1:PORT`` of a fresh registry (Basic auth when ``htpasswd`` lines are given); stop it on exit."""
    assert BINARY is not None, MISSING
    port = _free_port()
    config = workdir / "registry.yml"
    auth = ""
    if htpasswd is not None:
        (workdir / "htpasswd").write_text(htpasswd)
        auth = f"auth:\n  htpasswd:\n    realm: mlspec-test\n    path: {workdir / 'htpasswd'}\n"
    config.write_text(CONFIG.format(root=workdir / "storage", port=port, auth=auth))
    log = (workdir / "registry.log").open("wb")
    proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30  # a hang guard, not a timing assertion
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as response:
                    if response.status == 200:
                        break
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, and asking for credentials
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {(workdir / 'registry.log').read_text()[-500:]}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class Demo:
    root: Path
    bundle: Path
    package: Path
    policy: Policy

    def report(self, bundle: Path | None = None) -> Report:
        return verify_bundle(bundle or self.bundle, self.policy, [self.package], log_dir=self.log)

    @property
    def log(self) -> Path:
        """The inference log the chain's log stage seals (the policy requires it)."""
        return self.root / "logs" / "inference"


def push_demo(demo: Demo, ref: OciReference, *, vsa: bytes | None = None) -> PushResult:
    report = demo.report()
    assert report.passed, [f.code for f in report.findings]
    return push(report, demo.bundle, demo.package, ref, plain_http=True, vsa=vsa)


def _media_type(body: object) -> str | None:
    import json

    try:
        doc = json.loads(body) if isinstance(body, bytes) else None
    except ValueError:
        return None
    return doc.get("mediaType") if isinstance(doc, dict) and isinstance(doc.get("mediaType"), str) else None


class HostileRegistry:
    """A registry that lies: forwards GET/HEAD to a real one, except the paths a test overrides.

    ``overrides[path] = (status, body)``; ``body`` may be bytes or an iterable of chunks (sent
    without Content-Length, so a client must cap what it reads; a ``None`` chunk breaks the body
    off there). ``seen`` lists requested paths.
    An override's Content-Type is the body's own ``mediaType`` (as a registry sends it), or
    ``content_types[path]`` when a test sets one.
    """

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading

        import requests

        self.upstream = upstream
        self.overrides: dict[str, tuple[int, object]] = {}
        self.content_types: dict[str, str] = {}
        self.seen: list[str] = []
        hostile = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self, head: bool) -> None:
                hostile.seen.append(self.path)
                if self.path in hostile.overrides:
                    status, body = hostile.overrides[self.path]
                    self.send_response(status)
                    content_type = hostile.content_types.get(self.path) or _media_type(body)
                    if content_type:
                        self.send_header("Content-Type", content_type)
                    if isinstance(body, bytes):
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        if not head:
                            self.wfile.write(body)
                        return
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for chunk in body:  # type: ignore[attr-defined]
                            if chunk is None:  # break the body off mid-stream: no terminating chunk
                                self.wfile.flush()
                                self.close_connection = True
                                self.connection.shutdown(socket.SHUT_RDWR)
                                return
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.write(b"0\r\n\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                got = requests.request("HEAD" if head else "GET", f"http://{hostile.upstream}{self.path}",
                                       headers={k: v for k, v in self.headers.items() if k.lower() == "accept"},
                                       timeout=30)
                self.send_response(got.status_code)
                for key in ("Content-Type", "Docker-Content-Digest"):
                    if key in got.headers:
                        self.send_header(key, got.headers[key])
                self.send_header("Content-Length", str(len(got.content) if not head else
                                                       int(got.headers.get("Content-Length", "0"))))
                self.end_headers()
                if not head:
                    self.wfile.write(got.content)

            def do_GET(self) -> None:
                self._serve(False)

            def do_HEAD(self) -> None:
                self._serve(True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def htpasswd_line(user: str, password: str) -> str:
    """One bcrypt htpasswd line (what docker-registry's htpasswd auth reads), from libxcrypt via crypt."""
    import warnings

    import pytest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:  # removed in Python 3.13
            pytest.skip("no bcrypt for an htpasswd file: the crypt module is gone from this Python")

    salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)  # bcrypt cost 4: the registry checks it per request
    return f"{user}:{crypt.crypt(password, salt)}\n"


# -- fixtures (imported by the OCI test modules under their own names; a conftest.py below tests/
# would shadow tests/conftest.py for the modules that import from it) --------------------
_names = itertools.count()


@pytest.fixture(scope="session", name="registry")
def registry_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if MISSING:
        pytest.skip(MISSING)
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture(scope="session", name="demo_project")
def demo_project_fixture(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    pytest.importorskip("sklearn", reason="the demo needs scikit-learn (the [demo] extra, installed by make test)")
    from mlspec_attest.demo.runner import run_demo

    root = tmp_path_factory.mktemp("oci-demo") / "demo"
    assert run_demo(root, echo=lambda _line: None) == 0
    return Demo(root, root / "bundle", root / "package" / "credit-model",
                Policy.from_file(root / "policies" / "default.yaml"))


@pytest.fixture(name="demo")
def demo_fixture(demo_project: Demo, tmp_path: Path) -> Demo:
    """A private copy of the session's demo project (tests change their copy freely)."""
    root = tmp_path / "demo"
    shutil.copytree(demo_project.root, root, symlinks=True)
    return Demo(root, root / "bundle", root / "package" / "credit-model",
                Policy.from_file(root / "policies" / "default.yaml"))


@pytest.fixture(name="repo")
def repo_fixture(registry: str) -> OciReference:
    """A fresh repository (a tag in it) for each test."""
    return OciReference.parse(f"oci://{registry}/test/model-{next(_names)}:v1")
