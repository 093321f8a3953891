"""Writers on different machines, one S3 bucket, one chain (docs/storage.md) — against a real S3 server.

Each writer is its own process in its own working directory (its own mlspec.yaml and key
copy), sharing nothing but the bucket, as Kubeflow pods or CI runners would. The attacks:
writers racing for the same sequence number (a fork), writers killed between claiming a
number and publishing it (a hole or a stuck chain), a store that ignores If-None-Match
(two winners), and writers finishing out of order (a head that goes backwards).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Project, build_lifecycle
from seaweed import SeaweedS3

from mlspec_attest.bundle import extract_payload
from mlspec_attest.digests import digest_path
from mlspec_attest.model.canonical import parse_json, sha256_hex
from mlspec_attest.store import open_bundle
from mlspec_attest.store.s3 import CLAIMS, PAUSE_AFTER_CLAIM_ENV, StoreLiedError
from mlspec_attest.verify import verify_bundle

REPO = Path(__file__).resolve().parents[2]
WRITERS = 16

# A writer process: everything imported first, then it waits for the starting gun, so all
# sixteen append at the same instant (the race is real, not staggered by interpreter start-up).
WRITER = """\
import sys, time
from pathlib import Path
import mlspec_attest.cli.attest, mlspec_attest.attest.attestor, mlspec_attest.store.s3, obstore
from mlspec_attest.cli.main import main
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
main(sys.argv[2:], prog_name="mlspec")
"""


def _chain(url: str) -> list[tuple[int, str, dict]]:
    """(sequence, payload sha256, chain link) of every attestation object, in file order."""
    out = []
    for bf in open_bundle(url).files():
        payload = extract_payload(bf.kind, bf.data)
        statement = parse_json(payload, source=bf.path.name)
        out.append((statement["predicate"]["chain"]["sequence"], sha256_hex(payload), statement["predicate"]["chain"]))
    return sorted(out, key=lambda t: t[0])


def _assert_linear(chain: list[tuple[int, str, dict]], length: int) -> None:
    assert [seq for seq, _, _ in chain] == list(range(length)), "one attestation per sequence, no gap, no fork"
    for (_, before, _), (_, _, link) in zip(chain, chain[1:]):
        assert link["previous"] == before


def _lifecycle(project: Project, url: str) -> str:
    """The 13-stage chain in the bucket; returns the serve attestation's payload sha256."""
    project.bundle = url  # type: ignore[assignment]
    build_lifecycle(project)
    serve = next(bf for bf in open_bundle(url).files() if bf.path.name.endswith("-serve.dsse.json"))
    return sha256_hex(extract_payload(serve.kind, serve.data))


def _writer_dir(base: Path, n: int, project: Project, url: str, serve_sha: str) -> Path:
    """A working directory of its own: mlspec.yaml naming the bucket, a copy of the key, the metadata."""
    home = base / f"writer-{n:02d}"
    home.mkdir(parents=True)
    (home / "pipeline.key").write_bytes(project.key("pipeline").read_bytes())
    (home / "pipeline.key").chmod(0o600)
    (home / "mlspec.yaml").write_text(f"bundle: {url}\nkey: pipeline.key\nhead: {{key: pipeline.key}}\n")
    (home / "monitor.json").write_text(json.dumps({
        "signals": {"latency_p99_ms": 10.0 + n}, "serve_attestation": serve_sha,
        "rollback_target": {"name": "pkg", "digest": {"sha256": digest_path(project.root / "pkg").sha256}}}))
    return home


def _spawn(home: Path, go: Path, env: dict[str, str], *, pause: float | None = None) -> subprocess.Popen[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env
    child_env["PYTHONPATH"] = str(REPO)
    if pause is not None:
        child_env[PAUSE_AFTER_CLAIM_ENV] = str(pause)
    return subprocess.Popen([sys.executable, "-c", WRITER, str(go), "attest", "stage", "monitor",
                             "--metadata", "monitor.json"], cwd=home, env=child_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _verify_cli(url: str, policy: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env
    child_env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", "verify", url, "--policy", str(policy)],
                          cwd=cwd, env=child_env, text=True, capture_output=True, timeout=180)


def test_sixteen_writers_in_separate_processes_give_one_linear_chain(
        s3_env: SeaweedS3, project: Project, tmp_path: Path) -> None:
    """16 concurrent appends, sharing only the bucket: one chain of all 16, links intact, retries seen, gate passes."""
    url = f"s3://{s3_env.new_bucket()}/team/model-a"
    serve_sha = _lifecycle(project, url)
    base = len(_chain(url))
    go = tmp_path / "go"
    writers = [_spawn(_writer_dir(tmp_path, n, project, url, serve_sha), go, s3_env.env()) for n in range(WRITERS)]
    time.sleep(1.0)  # let every interpreter import and reach the gun
    go.touch()
    outputs = [w.communicate(timeout=120) for w in writers]
    refused = [f"writer {n}: exit {w.returncode}: {err}" for n, (w, (_, err)) in enumerate(zip(writers, outputs))
               if w.returncode]
    assert not refused, "\n".join(refused)
    retries = sum(int(m.group(1)) for out, err in outputs for m in re.finditer(r"lost (\d+) claim", out + err))
    chain = _chain(url)
    _assert_linear(chain, base + WRITERS)
    sequences = sorted(int(re.search(r"appended sequence (\d+)", out).group(1)) for out, _ in outputs)  # type: ignore[union-attr]
    assert sequences == list(range(base, base + WRITERS)), "each writer got its own number"
    print(f"\n16 writers: chain length {len(chain)} ({base} + {WRITERS}), claims lost and retried: {retries}")
    assert retries > 0, "the writers raced (at least one lost a claim and re-linked)"
    result = _verify_cli(url, project.policy(), s3_env.env(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kill_9_mid_append_leaves_a_chain_that_verifies_and_the_next_writer_carries_on(
        s3_env: SeaweedS3, project: Project, tmp_path: Path) -> None:
    """SIGKILL writers between claiming a sequence and publishing it: no hole, no fork; the next writer finishes."""
    url = f"s3://{s3_env.new_bucket()}/killed"
    serve_sha = _lifecycle(project, url)
    base = len(_chain(url))
    go = tmp_path / "go"
    go.touch()
    killed = 4
    victims = [_spawn(_writer_dir(tmp_path, n, project, url, serve_sha), go, s3_env.env(), pause=120)
               for n in range(killed)]
    bundle = open_bundle(url)
    deadline = time.monotonic() + 90  # a hang guard, not a timing assertion
    while len(bundle.store.list(CLAIMS)) < base + killed and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.1)
    claims = len(bundle.store.list(CLAIMS))  # type: ignore[attr-defined]
    for v in victims:
        v.send_signal(signal.SIGKILL)
        v.wait(timeout=10)
    assert claims == base + killed, "every victim claimed its number before it was killed"
    # Each victim's claim was published by the next victim; the last one's is claimed but unpublished.
    chain = _chain(url)
    _assert_linear(chain, base + killed - 1)
    report = verify_bundle(url, project.policy())
    errors = {f.code for f in report.findings if f.severity == "error"}
    assert errors <= {"HEAD_BEHIND"}, errors  # the kill came before the head re-sign: nothing forged, nothing lost
    # The next writer finishes the dead one's append, then appends its own and re-signs the head.
    survivor = _spawn(_writer_dir(tmp_path, 99, project, url, serve_sha), go, s3_env.env())
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    assert f"appended sequence {base + killed} " in out
    _assert_linear(_chain(url), base + killed + 1)
    report = verify_bundle(url, project.policy())
    assert report.passed, [(f.code, f.message) for f in report.findings if f.severity == "error"]


def test_kill_9_at_random_instants_never_forks(s3_env: SeaweedS3, project: Project, tmp_path: Path) -> None:
    """Writers killed wherever they happen to be (before, during, after the claim): the survivors' chain verifies."""
    url = f"s3://{s3_env.new_bucket()}/random-kills"
    serve_sha = _lifecycle(project, url)
    base = len(_chain(url))
    go = tmp_path / "go"
    writers = [_spawn(_writer_dir(tmp_path, n, project, url, serve_sha), go, s3_env.env()) for n in range(8)]
    time.sleep(1.0)
    go.touch()
    for delay, w in zip((0.05, 0.15, 0.3, 0.5), writers[::2]):
        time.sleep(delay)
        w.send_signal(signal.SIGKILL)
    for w in writers:
        w.communicate(timeout=120)
    finisher = _spawn(_writer_dir(tmp_path, 99, project, url, serve_sha), go, s3_env.env())
    _, err = finisher.communicate(timeout=120)
    assert finisher.returncode == 0, err
    chain = _chain(url)
    survivors = sum(w.returncode == 0 for w in writers)
    assert base + survivors + 1 <= len(chain) <= base + len(writers) + 1
    _assert_linear(chain, len(chain))
    report = verify_bundle(url, project.policy())
    assert report.passed, [(f.code, f.message) for f in report.findings if f.severity == "error"]


def test_a_store_that_ignores_if_none_match_is_refused_not_forked(
        s3_env: SeaweedS3, project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that acknowledges every conditional create (no If-None-Match honoured) is caught on the first claim."""
    from mlspec_attest.store import s3 as s3mod

    url = f"s3://{s3_env.new_bucket()}/liar"
    serve_sha = _lifecycle(project, url)
    base = len(_chain(url))
    honest_put = s3mod.S3Store._put

    def lying_put(self: s3mod.S3Store, name: str, data: bytes, *, mode: object) -> None:
        honest_put(self, name, data, mode="overwrite")  # the condition is dropped, the answer is still 200

    monkeypatch.setattr(s3mod.S3Store, "_put", lying_put)
    home = _writer_dir(tmp_path, 0, project, url, serve_sha)
    writer = project.attestor("pipeline", bundle=url)  # type: ignore[arg-type]
    with pytest.raises(StoreLiedError, match="does not honour conditional writes"):
        writer.attest("monitor", metadata_files=[home / "monitor.json"])
    monkeypatch.setattr(s3mod.S3Store, "_put", honest_put)
    # Nothing was published by the refused writer: the chain is as it was, and still verifies.
    _assert_linear(_chain(url), base)
    assert verify_bundle(url, project.policy()).passed


def test_the_head_never_goes_back_when_writers_finish_out_of_order(
        s3_env: SeaweedS3, project: Project) -> None:
    """A slow writer re-signing the head for an older sequence must not replace a newer head (HEAD_BEHIND)."""
    from mlspec_attest.attest.head import HeadSigning, sign_head_locked
    from mlspec_attest.keys import load_signer
    from mlspec_attest.model.head import HEAD_FILE

    url = f"s3://{s3_env.new_bucket()}/heads"
    _lifecycle(project, url)
    bundle = open_bundle(url)
    newest = bundle.head()
    assert newest is not None
    head_now = bundle.read(HEAD_FILE, limit=65536, what="chain head")
    # The slow writer's head names an older sequence: it is left out, the newer head stays.
    signing = HeadSigning((load_signer(project.key("pipeline")),))
    from mlspec_attest.attest import head as head_mod
    from mlspec_attest.store.s3 import S3Bundle

    assert isinstance(bundle, S3Bundle)
    older = head_mod.Envelope(payload_type=head_mod.IN_TOTO_PAYLOAD_TYPE, payload=head_mod.canonicalize(
        head_mod.head_statement(head_mod.ChainHead(genesis=newest.genesis, sequence=newest.sequence - 1,
                                                   payload_sha256="0" * 64, issued=_now(), expires=_now(1)))))
    older.sign(load_signer(project.key("pipeline")))
    bundle.write_head(older.to_json(), newest.sequence - 1)
    assert bundle.read(HEAD_FILE, limit=65536, what="chain head") == head_now
    # A concurrent replacement between read and write (If-Match fails) is retried, not lost.
    real = bundle.store.read_versioned
    calls = {"n": 0}

    def stale_once(name: str, **kw: object):  # type: ignore[no-untyped-def]
        found = real(name, **kw)  # type: ignore[arg-type]
        calls["n"] += 1
        return (found[0], '"stale-etag"') if calls["n"] == 1 and found else found

    bundle.store.read_versioned = stale_once  # type: ignore[method-assign]
    sign_head_locked(bundle, signing)
    assert bundle.head_retries == 1 and calls["n"] == 2
    assert verify_bundle(url, project.policy()).passed


def _now(hours: int = 0):  # type: ignore[no-untyped-def]
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=hours)


def test_a_head_signed_between_reading_the_tip_and_the_head_is_a_race_not_a_truncation(
        s3_env: SeaweedS3, project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by CI: with 16 writers, one read tip N, another appended and signed head N+k, then the
    first read that head and refused the chain as truncated. A tip that moved is re-read and re-linked."""
    from mlspec_attest.store.s3 import S3Bundle

    url = f"s3://{s3_env.new_bucket()}/race"
    serve_sha = _lifecycle(project, url)
    stale = open_bundle(url).head()
    first = _writer_dir(tmp_path, 0, project, url, serve_sha)
    project.attestor("pipeline", bundle=url).attest("monitor", metadata_files=[first / "monitor.json"])  # type: ignore[arg-type]
    honest_head = S3Bundle.head
    calls = {"n": 0}

    def stale_first_read(self: S3Bundle):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return stale if calls["n"] == 1 else honest_head(self)

    monkeypatch.setattr(S3Bundle, "head", stale_first_read)
    second = _writer_dir(tmp_path, 1, project, url, serve_sha)
    done = project.attestor("pipeline", bundle=url).attest("monitor", metadata_files=[second / "monitor.json"])  # type: ignore[arg-type]
    monkeypatch.setattr(S3Bundle, "head", honest_head)
    assert stale is not None and done.sequence == stale.sequence + 2, "re-linked after the tip it had read"
    _assert_linear(_chain(url), stale.sequence + 3)
    assert verify_bundle(url, project.policy()).passed


def _lifecycle_with_tail_cut(s3_env: SeaweedS3, project: Project, prefix: str):  # type: ignore[no-untyped-def]
    """The 13-stage chain in a fresh bucket with its newest attestation deleted, claim and all, as a bucket
    writer would (without the claim the next writer would restore it); (url, serve sha256, raw store)."""
    import obstore

    bucket = s3_env.new_bucket()
    url = f"s3://{bucket}/{prefix}"
    serve_sha = _lifecycle(project, url)
    chain = _chain(url)
    newest = sorted(bf.path.name for bf in open_bundle(url).files())[-1]
    raw = s3_env.raw_store(bucket)
    obstore.delete(raw, f"{prefix}/attestations/{newest}")
    obstore.delete(raw, f"{prefix}/{CLAIMS}/{chain[-1][0]:012d}")
    assert [seq for seq, _, _ in _chain(url)] == [seq for seq, _, _ in chain[:-1]]
    return url, serve_sha, raw


def test_a_truncated_bucket_is_still_refused_by_the_next_writer(
        s3_env: SeaweedS3, project: Project, tmp_path: Path) -> None:
    """The re-read above only continues while the chain grows: a deleted tail stays a HeadAhead refusal."""

    from mlspec_attest.attest.head import HeadAhead

    url, serve_sha, _raw = _lifecycle_with_tail_cut(s3_env, project, "cut")
    before = _chain(url)
    home = _writer_dir(tmp_path, 0, project, url, serve_sha)
    with pytest.raises(HeadAhead, match="attestations were removed"):
        project.attestor("pipeline", bundle=url).attest("monitor", metadata_files=[home / "monitor.json"])  # type: ignore[arg-type]
    assert _chain(url) == before


def test_an_unsigned_head_planted_in_the_bucket_does_not_launder_a_truncation(
        s3_env: SeaweedS3, project: Project, tmp_path: Path) -> None:
    """Found by the second review: a bucket writer deletes the tail and its claim, writes an unsigned
    head naming the new tip; the next honest writer must refuse, not sign a valid head over it."""
    import obstore

    from mlspec_attest.attest.head import HeadAhead
    from mlspec_attest.model.canonical import canonicalize
    from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
    from mlspec_attest.model.head import HEAD_FILE, ChainHead, head_statement

    url, serve_sha, raw = _lifecycle_with_tail_cut(s3_env, project, "planted")
    tip = open_bundle(url).head()
    assert tip is not None
    issued = _now()
    fake = ChainHead(genesis=tip.genesis, sequence=tip.sequence, payload_sha256=tip.payload_sha256,
                     issued=issued, expires=_now(1))
    obstore.put(raw, f"planted/{HEAD_FILE}",
                Envelope(payload_type=IN_TOTO_PAYLOAD_TYPE, payload=canonicalize(head_statement(fake))).to_json())
    before = _chain(url)
    home = _writer_dir(tmp_path, 0, project, url, serve_sha)
    with pytest.raises(HeadAhead, match="signed by no key this writer trusts"):
        project.attestor("pipeline", bundle=url).attest("monitor", metadata_files=[home / "monitor.json"])  # type: ignore[arg-type]
    assert _chain(url) == before


@pytest.mark.parametrize("shape", ["shrinks", "alternates", "vanishes"])
def test_the_tip_reread_continues_only_while_the_chain_grows(
        s3_env: SeaweedS3, project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    """Found by the second review: the re-read went on whenever the tip differed, not only when it grew.
    A tip that shrinks, alternates or vanishes under a head ahead of it is refused at once."""
    from mlspec_attest.attest.head import HeadAhead
    from mlspec_attest.bundle import Head
    from mlspec_attest.store.s3 import S3Bundle

    url = f"s3://{s3_env.new_bucket()}/moving"
    serve_sha = _lifecycle(project, url)
    real = open_bundle(url).head()
    assert real is not None
    older = Head(sequence=real.sequence - 2, payload_sha256="0" * 64, genesis=real.genesis)
    behind = Head(sequence=real.sequence - 1, payload_sha256="1" * 64, genesis=real.genesis)
    answers = {"shrinks": [behind, older], "alternates": [older, behind, older, behind],
               "vanishes": [behind, None]}[shape]
    calls = {"n": 0}

    def moving(self: S3Bundle):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return answers[(calls["n"] - 1) % len(answers)]

    monkeypatch.setattr(S3Bundle, "head", moving)
    home = _writer_dir(tmp_path, 0, project, url, serve_sha)
    with pytest.raises(HeadAhead):
        project.attestor("pipeline", bundle=url).attest("monitor", metadata_files=[home / "monitor.json"])  # type: ignore[arg-type]
    assert calls["n"] <= 3, f"re-read {calls['n']} times for a tip that never grew"
