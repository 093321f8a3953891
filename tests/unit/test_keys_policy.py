"""Keys and the policy's time rules: pinning, revocation by time, expiry, passphrases,
permissions, 'mlspec keys list', and the signed chain head (truncation and rollback)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Project, build_lifecycle, resign_head, serve_payload

from mlspec_attest.cli.main import main
from mlspec_attest.errors import InputError
from mlspec_attest.keys import PASSPHRASE_ENV, generate, load_signer
from mlspec_attest.model.head import HEAD_FILE
from mlspec_attest.policy import Policy
from mlspec_attest.verify import Verifier, verify_bundle


def codes(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in report.findings if f.severity == "error"}


def policy_with(project: Project, extra: str, name: str = "p.yaml", *, head: bool = True) -> Path:
    """The default policy plus ``extra``; a ``head:`` in ``extra`` (or ``head=False``) replaces the default one."""
    lines = project.policy().read_text().splitlines(keepends=True)
    if "head:" in extra or not head:
        lines = [line for line in lines if not line.startswith("head:")]
    return project.write(f"policies/{name}", "".join(lines) + "\n" + extra)


@pytest.fixture
def lifecycle(project: Project) -> Project:
    build_lifecycle(project)
    return project


# -- pinning -------------------------------------------------------------------------------
def test_pinned_keyid_mismatch_is_refused(project: Project) -> None:
    pub = load_signer(project.key("pipeline")).public
    text = project.policy().read_text().replace("pipeline: ../keys/pipeline.pub",
                                                 "pipeline: {path: ../keys/pipeline.pub, keyid: %s}" % pub.keyid)
    assert Policy.from_file(project.write("policies/pinned.yaml", text)).keys["pipeline"].keyid == pub.keyid
    # Someone replaces the key file the policy points at: the pin refuses it.
    os.replace(project.root / "keys" / "intruder.pub", project.root / "keys" / "pipeline.pub")
    with pytest.raises(InputError, match="pinned keyid .* does not match"):
        Policy.from_file(project.policy("pinned.yaml"))


# -- revocation and expiry ------------------------------------------------------------------
def test_revoked_key_counts_only_with_trusted_time_never_the_stated_time(lifecycle: Project) -> None:
    keyid = load_signer(lifecycle.key("pipeline")).keyid
    past = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Revoked from tomorrow: the attestations state today's time, but a thief could write that too;
    # with no timestamp token and no head by an unrevoked key nothing proves it (docs/security.md).
    report = verify_bundle(lifecycle.bundle, policy_with(lifecycle, f"revoked: [{{keyid: {keyid}, after: '{future}'}}]"))
    assert {f.sequence for f in report.findings if f.code == "KEY_REVOKED"} == set(range(1, 13))
    # A head signed (today) by the owner, who is not revoked, proves the chain existed before tomorrow.
    resign_head(lifecycle.bundle, [load_signer(lifecycle.key("owner"))], timedelta(hours=24))
    owner_head = "head: {signers: [owner], required: true}\n"
    report = verify_bundle(lifecycle.bundle, policy_with(
        lifecycle, owner_head + f"revoked: [{{keyid: {keyid}, after: '{future}'}}]", "o.yaml"))
    assert report.passed, [f.message for f in report.findings]
    # Revoked since yesterday: everything it signed is refused, by sequence.
    report = verify_bundle(lifecycle.bundle, policy_with(
        lifecycle, owner_head + f"revoked: [{{keyid: {keyid}, after: '{past}', reason: key leaked}}]", "y.yaml"))
    revoked = [f for f in report.findings if f.code == "KEY_REVOKED"]
    assert len(revoked) == 12 and "key leaked" in revoked[0].message
    assert {f.sequence for f in revoked} == set(range(1, 13))


def test_policy_expiry(lifecycle: Project) -> None:
    # Years later the 24h chain head has expired too; this test is about the policy's own expiry.
    policy = Policy.from_file(policy_with(lifecycle, "expires: '2030-01-01T00:00:00Z'", head=False))
    assert Verifier(policy, now=datetime(2029, 12, 31, tzinfo=timezone.utc)).verify(lifecycle.bundle).passed
    late = Verifier(policy, now=datetime(2030, 1, 2, tzinfo=timezone.utc)).verify(lifecycle.bundle)
    assert "POLICY_EXPIRED" in codes(late)


def test_freshness_and_max_age(lifecycle: Project) -> None:
    policy = Policy.from_file(policy_with(lifecycle, "freshness: 1d\nmax_age: 30d", head=False))
    later = datetime.now(timezone.utc) + timedelta(days=2)
    assert codes(Verifier(policy, now=later).verify(lifecycle.bundle)) == {"CHAIN_STALE"}
    much_later = datetime.now(timezone.utc) + timedelta(days=31)
    assert "ATTESTATION_TOO_OLD" in codes(Verifier(policy, now=much_later).verify(lifecycle.bundle))


# -- private keys ---------------------------------------------------------------------------
def test_passphrase_by_default_and_wrong_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    result = CliRunner().invoke(main, ["keys", "generate", "ci", "--dir", str(tmp_path)])
    assert result.exit_code == 0 and "encrypted" in result.output
    assert b"ENCRYPTED" in (tmp_path / "ci.key").read_bytes()
    assert oct((tmp_path / "ci.key").stat().st_mode & 0o777) == "0o600"
    assert load_signer(tmp_path / "ci.key").keyid
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(InputError, match="wrong passphrase"):
        load_signer(tmp_path / "ci.key")
    monkeypatch.delenv(PASSPHRASE_ENV)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    result = CliRunner().invoke(main, ["keys", "generate", "nopass", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "no passphrase" in result.stderr


def test_wrong_passphrase_in_cli_is_one_line(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    generate("locked", project.root / "keys", "ed25519", b"right")
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    monkeypatch.chdir(project.root)
    result = CliRunner().invoke(main, ["attest", "stage", "objectives", "--bundle", "bundle",
                                       "--key", "keys/locked.key", "--set", "x=1"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: keys/locked.key: wrong passphrase from MLSPEC_KEY_PASSPHRASE (or corrupted key file)"]
    assert not (project.bundle / "attestations").exists() or not any((project.bundle / "attestations").iterdir())


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_group_or_world_readable_key_refused(project: Project, mode: int) -> None:
    os.chmod(project.key("pipeline"), mode)
    with pytest.raises(InputError, match="readable by group or others.*chmod 600"):
        load_signer(project.key("pipeline"))


def test_keys_list_shows_keyids(project: Project) -> None:
    result = CliRunner().invoke(main, ["keys", "list", str(project.root / "keys")])
    assert result.exit_code == 0
    for name in ("owner", "pipeline", "intruder"):
        keyid = load_signer(project.key(name)).keyid
        assert any(line.startswith(name) and keyid in line for line in result.output.splitlines())
    assert "ecdsa-p256" in result.output and "ed25519" in result.output


# -- the signed chain head: truncation and rollback ---------------------------------------------------
HEAD = "head: {signers: [pipeline], required: true, max_validity: 7d}"


def test_head_required_and_checked(lifecycle: Project) -> None:
    policy = Policy.from_file(policy_with(lifecycle, HEAD))
    (lifecycle.bundle / HEAD_FILE).unlink()  # the head every append re-signed is removed
    assert codes(Verifier(policy).verify(lifecycle.bundle)) == {"HEAD_MISSING"}
    args = ["attest", "head", "--bundle", str(lifecycle.bundle), "--key", str(lifecycle.key("pipeline")), "--expires", "24h"]
    refused = CliRunner().invoke(main, args)  # a missing head over attestations is how a truncation is laundered
    assert refused.exit_code == 1 and "--initial" in refused.output, refused.output
    result = CliRunner().invoke(main, [*args, "--initial"])  # the operator checked the chain: its first head
    assert result.exit_code == 0, result.output
    assert "sequence 12" in result.output
    assert Verifier(policy).verify(lifecycle.bundle).passed
    # Only the head signers count: an owner-signed head is refused.
    resign_head(lifecycle.bundle, [load_signer(lifecycle.key("owner"))], timedelta(hours=1))
    assert codes(Verifier(policy).verify(lifecycle.bundle)) == {"HEAD_SIGNATURE_INVALID"}
    # Longer than the policy's max_validity.
    resign_head(lifecycle.bundle, [load_signer(lifecycle.key("pipeline"))], timedelta(days=30))
    assert codes(Verifier(policy).verify(lifecycle.bundle)) == {"HEAD_INVALID"}


def test_truncation_is_refused(lifecycle: Project) -> None:
    """The monitor withdrew the model; the attacker deletes that attestation."""
    pipeline = load_signer(lifecycle.key("pipeline"))
    lifecycle.attestor().attest("monitor", materials=["pkg"], metadata={
        "signals": {"drift": 0.9}, "decision": "withdraw", "serve_attestation": serve_payload(lifecycle.bundle),
        "rollback_target": json.loads(json.dumps({"name": "pkg", "digest": {"sha256": _pkg_digest(lifecycle)}}))})
    resign_head(lifecycle.bundle, [pipeline], timedelta(hours=24))
    policy = Policy.from_file(policy_with(lifecycle, HEAD))
    assert Verifier(policy).verify(lifecycle.bundle).passed
    newest = sorted((lifecycle.bundle / "attestations").iterdir())[-1]
    assert newest.name == "0013-monitor.dsse.json"
    newest.unlink()
    # Without a head rule the truncated chain is a valid, complete chain: that is the attack.
    assert verify_bundle(lifecycle.bundle, policy_with(lifecycle, "", "nohead.yaml", head=False)).passed
    # The shipped default policy requires the head, so the truncation is refused by default.
    assert codes(verify_bundle(lifecycle.bundle, lifecycle.policy())) == {"CHAIN_ROLLBACK"}
    report = Verifier(policy).verify(lifecycle.bundle)
    assert codes(report) == {"CHAIN_ROLLBACK"}
    assert "sequence 13" in next(f.message for f in report.findings if f.code == "CHAIN_ROLLBACK")


def test_rollback_to_an_older_valid_chain_is_refused(lifecycle: Project, tmp_path: Path) -> None:
    import shutil

    pipeline = load_signer(lifecycle.key("pipeline"))
    t0 = datetime.now(timezone.utc)
    resign_head(lifecycle.bundle, [pipeline], timedelta(hours=1), now=t0)
    old = tmp_path / "old-bundle"
    shutil.copytree(lifecycle.bundle, old)  # the attacker keeps this complete, valid chain and its head
    lifecycle.attestor().attest("monitor", materials=["pkg"], metadata={
        "serve_attestation": serve_payload(lifecycle.bundle),
        "signals": {"drift": 0.9}, "rollback_target": {"name": "pkg", "digest": {"sha256": _pkg_digest(lifecycle)}}})
    resign_head(lifecycle.bundle, [pipeline], timedelta(hours=24), now=t0 + timedelta(minutes=30))
    policy = Policy.from_file(policy_with(lifecycle, HEAD))
    later = t0 + timedelta(hours=2)
    assert Verifier(policy, now=later).verify(lifecycle.bundle).passed
    # The older chain with its own (now expired) head:
    assert codes(Verifier(policy, now=later).verify(old)) == {"HEAD_EXPIRED"}
    # The older chain with the current head:
    shutil.copyfile(lifecycle.bundle / HEAD_FILE, old / HEAD_FILE)
    assert codes(Verifier(policy, now=later).verify(old)) == {"CHAIN_ROLLBACK"}
    # A newer attestation the head does not cover yet (appended by a writer without the head key).
    lifecycle.attestor(head=False).attest("log", metadata={"tree_size": 0, "root_hash": "e" * 64,
                                                           "pipeline": serve_payload(lifecycle.bundle)})
    assert codes(Verifier(policy, now=later).verify(lifecycle.bundle)) == {"HEAD_BEHIND"}


def test_head_from_another_chain_is_refused(project: Project) -> None:
    build_lifecycle(project, stages=("objectives", "ingest"))
    other = Project(root=project.root, bundle=project.root / "other")
    build_lifecycle(other, stages=("objectives", "ingest"))
    resign_head(other.bundle, [load_signer(project.key("pipeline"))], timedelta(hours=1))
    (other.bundle / HEAD_FILE).rename(project.bundle / HEAD_FILE)
    policy = Policy.from_file(policy_with(project, HEAD + "\n", "h.yaml"))
    assert "HEAD_MISMATCH" in codes(Verifier(policy).verify(project.bundle))


def test_head_of_empty_bundle_is_input_error(project: Project) -> None:
    (project.bundle / "attestations").mkdir(parents=True)
    result = CliRunner().invoke(main, ["attest", "head", "--bundle", str(project.bundle),
                                       "--key", str(project.key("pipeline"))])
    assert result.exit_code == 2 and "no attestation" in result.stderr


def _pkg_digest(project: Project) -> str:
    from mlspec_attest.digests import digest_path

    return digest_path(project.root / "pkg").sha256


def test_format_duration_is_what_parse_duration_reads_back() -> None:
    """CLI output spells durations as a policy does ('1d', not '1 day, 0:00:00'), so they can be pasted back."""
    from datetime import timedelta

    from mlspec_attest.policy import format_duration, parse_duration

    for text, spelled in [("1d", "1d"), ("5m", "5m"), ("1w2d", "1w2d"), ("90s", "1m30s"), ("1h30m", "1h30m"),
                          ("0s", "0s"), ("24h", "1d")]:
        assert format_duration(parse_duration(text, "t")) == spelled
    assert format_duration(timedelta(days=1)) == "1d"
    assert parse_duration(format_duration(timedelta(seconds=93784)), "t") == timedelta(seconds=93784)
