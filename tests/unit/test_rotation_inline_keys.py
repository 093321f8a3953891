"""Rotation as a policy change, and inline PEM keys that make a policy one self-contained file."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from conftest import Project, build_lifecycle

from mlspec_attest.attest.attestor import Attestor
from mlspec_attest.errors import InputError
from mlspec_attest.keys import generate, load_signer, new_key
from mlspec_attest.policy import Policy
from mlspec_attest.rotation import key_entry, plan_rotation
from mlspec_attest.verify import verify_bundle


def _rotate(project: Project, *, now: datetime, inline: bool = False) -> Path:
    policy = project.policy()
    key = new_key("pipeline-2", project.root / "keys", "ed25519")
    plan = plan_rotation(policy, "pipeline", key.public, key_entry(key.public, policy, key.paths[1], inline), now)
    key.write()
    plan.write_policy()
    return key.paths[0]


def test_rotation_keeps_old_history_valid_trusts_new_key_and_revokes_old_from_now(project: Project) -> None:
    build_lifecycle(project)  # signed with the old pipeline key
    new_key_path = _rotate(project, now=datetime.now(timezone.utc) + timedelta(seconds=2))
    # trust-time: the old key's stated times no longer prove anything once it is revoked; the history
    # stands when trusted time does, e.g. a chain head signed with the new (unrevoked) key before the revocation.
    from conftest import resign_head

    resign_head(project.bundle, [load_signer(new_key_path)], timedelta(hours=24))
    assert verify_bundle(project.bundle, project.policy()).passed  # history proven older than the rotation stands

    fresh = Project(root=project.root, bundle=project.root / "bundle-new")
    fresh_attestor = fresh.attestor

    def attestor(*names: str, bundle: Path | None = None) -> Attestor:
        # conftest re-signs the head with the old (now revoked) key: the new key signs it below instead
        return fresh_attestor(*("pipeline-2" if n == "pipeline" else n for n in names or ("pipeline",)), bundle=bundle,
                              head=False)

    fresh.attestor = attestor  # type: ignore[method-assign]
    build_lifecycle(fresh)
    resign_head(fresh.bundle, [load_signer(new_key_path)], timedelta(hours=24))
    assert verify_bundle(fresh.bundle, project.policy()).passed


def test_old_key_signing_after_rotation_is_refused_key_revoked(project: Project) -> None:
    """Whoever still holds the rotated-out key cannot sign new history with it."""
    _rotate(project, now=datetime.now(timezone.utc) - timedelta(seconds=5))
    build_lifecycle(project)  # the old key, after its revocation time
    report = verify_bundle(project.bundle, project.policy())
    assert not report.passed
    assert "KEY_REVOKED" in {f.code for f in report.findings}


def test_rotation_never_lets_old_and_new_key_count_as_two_signers(project: Project) -> None:
    """A stage needing two signatures must not accept the same holder's old and new keys."""
    policy = project.policy()
    data = yaml.safe_load(policy.read_text())
    generate("reviewer", project.root / "keys", "ed25519", None)
    data["keys"]["reviewer"] = "../keys/reviewer.pub"
    data["stages"]["train"] = {"required": True, "signers": ["pipeline", "reviewer"], "threshold": 2}
    data["stages"]["package"] = {"required": True, "threshold": 2}  # inherits defaults.signers
    data["defaults"]["signers"] = ["pipeline", "reviewer"]
    policy.write_text(yaml.safe_dump(data))
    key = new_key("pipeline-2", project.root / "keys", "ed25519")
    plan = plan_rotation(policy, "pipeline", key.public, key_entry(key.public, policy, key.paths[1], False))
    key.write()
    after = Policy.from_dict(yaml.safe_load(plan.after), source=policy)
    assert plan.retired_name not in after.stages["train"].signers
    assert plan.retired_name not in after.stages["package"].signers
    assert plan.retired_name in after.stages["ingest"].signers  # threshold 1: history keeps verifying
    assert set(plan.not_added) == {"stages.train", "stages.package"}


def test_plan_changes_nothing_until_written_and_the_diff_shows_the_revocation(project: Project) -> None:
    policy = project.policy()
    before = policy.read_bytes()
    key = new_key("pipeline-2", project.root / "keys", "ed25519")
    plan = plan_rotation(policy, "pipeline", key.public, key_entry(key.public, policy, key.paths[1], False))
    assert policy.read_bytes() == before and not key.paths[0].exists()
    diff = plan.diff()
    added = [line for line in diff.splitlines() if line.startswith("+")]
    assert any(f"keyid: {plan.old.keyid}" in line and "after:" in line for line in added)  # the revocation
    assert any(f"keyid: {key.public.keyid}" in line for line in added)
    with pytest.raises(InputError, match="no key named"):
        plan_rotation(policy, "nobody", key.public, {})
    with pytest.raises(InputError, match="already trusted"):
        plan_rotation(policy, "pipeline", plan.old, {})


def test_inline_pem_policy_travels_alone(project: Project, tmp_path: Path) -> None:
    build_lifecycle(project)
    policy = project.policy()
    data = yaml.safe_load(policy.read_text())
    for name in ("owner", "pipeline"):
        data["keys"][name] = {"pem": (project.root / "keys" / f"{name}.pub").read_text()}
    lone = tmp_path / "elsewhere" / "policy.yaml"
    lone.parent.mkdir()
    lone.write_text(yaml.safe_dump(data))
    shutil.rmtree(project.root / "keys")  # no keys directory anywhere near it
    assert verify_bundle(project.bundle, lone).passed


@pytest.mark.parametrize("entry,message", [
    ({"pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}, "unreadable public key"),
    ({"pem": "PRIVATE"}, "exactly one PEM"),
    ({"pem": 7}, "pem must be"),
    ({"pem": "x", "path": "y"}, "not both"),
    ({"keyid": "0" * 64}, "give a path"),
])
def test_bad_inline_pem_entries_are_refused(project: Project, entry: dict[str, object], message: str) -> None:
    data = yaml.safe_load(project.policy().read_text())
    data["keys"]["pipeline"] = entry
    with pytest.raises(InputError, match=message):
        Policy.from_dict(data, source=project.policy())


def test_inline_pem_with_a_second_block_or_a_private_key_is_refused(project: Project) -> None:
    """Someone editing the policy cannot smuggle a second key behind the first, or paste a private key."""
    pub = (project.root / "keys" / "pipeline.pub").read_text()
    intruder = (project.root / "keys" / "intruder.pub").read_text()
    priv = (project.root / "keys" / "pipeline.key").read_text()
    data = yaml.safe_load(project.policy().read_text())
    for pem in (pub + intruder, priv, "junk\n" + pub):
        data["keys"]["pipeline"] = {"pem": pem}
        with pytest.raises(InputError):
            Policy.from_dict(data, source=project.policy())


def test_inline_pem_pinned_keyid_must_match(project: Project) -> None:
    data = yaml.safe_load(project.policy().read_text())
    data["keys"]["pipeline"] = {"pem": (project.root / "keys" / "intruder.pub").read_text(),
                                "keyid": load_signer(project.key("pipeline")).keyid}
    with pytest.raises(InputError, match="does not match the inline pem"):
        Policy.from_dict(data, source=project.policy())
