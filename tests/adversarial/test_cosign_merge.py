"""Two co-signers, separate copies, different passphrases: merge their signatures, nothing else.

Attacks tried (each refuses the whole merge with nothing written): a changed payload, another
payloadType, an extra envelope field, a statement only the other copy has, a signature by a key
the policy does not know, a forged signature under a known keyid, a real signature under a
swapped keyid hint, a signature by a revoked key, a signature listed twice, a symlinked file in
the other copy, the bundle merged into itself. And a merge cannot drop a signature: the other
copy's missing signatures stay.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Project, build_lifecycle

from mlspec_attest.attest.merge import merge_cosignatures
from mlspec_attest.errors import InputError
from mlspec_attest.keys import generate, load_signer
from mlspec_attest.model.envelope import Envelope, Signature, b64encode
from mlspec_attest.policy import Policy
from mlspec_attest.verify import verify_bundle

PASS = {"alice": b"alice-pass", "bob": b"bob-pass"}


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLSPEC_KEY_PASSPHRASE")}
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, text=True,
                          capture_output=True, env={**base, **env}, timeout=300)


@pytest.fixture
def two(project: Project) -> Project:
    """A full chain whose policy wants train signed by alice AND bob (threshold 2), keys with own passphrases."""
    generate("alice", project.root / "keys", "ed25519", PASS["alice"])
    generate("bob", project.root / "keys", "ecdsa-p256", PASS["bob"])
    build_lifecycle(project)
    data = yaml.safe_load(project.policy().read_text())
    data["keys"].update(alice="../keys/alice.pub", bob="../keys/bob.pub")
    data["stages"]["train"] = {"required": True, "signers": ["alice", "bob"], "threshold": 2}
    project.policy().write_text(yaml.safe_dump(data))
    return project


def train(bundle: Path) -> Path:
    return next((bundle / "attestations").glob("*-train.dsse.json"))


def copies(project: Project) -> tuple[Path, Path]:
    a, b = project.root / "copy-a", project.root / "copy-b"
    shutil.copytree(project.bundle, a)
    shutil.copytree(project.bundle, b)
    return a, b


def cosign(bundle: Path, who: str) -> None:
    envelope = Envelope.from_dict(json.loads(train(bundle).read_bytes()))
    envelope.sign(load_signer(Path(bundle).parent / "keys" / f"{who}.key", PASS[who]))
    train(bundle).write_bytes(envelope.to_json())


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def policy_of(project: Project) -> Policy:
    return Policy.from_file(project.policy())


def merge(project: Project, a: Path, b: Path, policy: Policy | None = None) -> Any:
    policy = policy or policy_of(project)
    return merge_cosignatures(a, b, policy.keys.values(), [r.keyid for r in policy.revoked])


def test_two_signers_with_different_passphrases_merge_and_pass_threshold_two(two: Project) -> None:
    """The whole flow through the CLI: per-key variable, passphrase file, cosign, merge, gate."""
    a, b = copies(two)
    (two.root / "bob.pass").write_text("bob-pass\n")
    (two.root / "bob.pass").chmod(0o600)
    r = run(["attest", "cosign", str(train(a)), "--key", "keys/alice.key"], two.root,
            MLSPEC_KEY_PASSPHRASE_ALICE="alice-pass", MLSPEC_KEY_PASSPHRASE="not-alices")
    assert r.returncode == 0, r.stderr
    r = run(["attest", "cosign", str(train(b)), "--key", "keys/bob.key", "--passphrase-file",
             "keys/bob.key=bob.pass"], two.root, MLSPEC_KEY_PASSPHRASE="not-bobs")
    assert r.returncode == 0, r.stderr
    gate = ["verify", str(a), "--policy", str(two.policy())]
    before = run(gate, two.root)
    assert before.returncode == 1 and "THRESHOLD_NOT_MET" in before.stdout, before.stdout  # alice alone
    r = run(["attest", "merge", str(a), str(b), "--policy", str(two.policy())], two.root)
    assert r.returncode == 0, r.stderr
    assert "added signature by bob" in r.stdout and "merged 1 signature(s)" in r.stdout
    after = run(gate, two.root)
    assert after.returncode == 0, after.stdout + after.stderr
    again = run(["attest", "merge", str(a), str(b), "--policy", str(two.policy())], two.root)
    assert again.returncode == 0 and "merged 0 signature(s)" in again.stdout  # idempotent


def test_two_keys_with_different_passphrases_sign_one_stage(two: Project) -> None:
    """`--key a --key b` with a passphrase each (the old single variable could not)."""
    (two.root / "bob.pass").write_text("bob-pass")
    (two.root / "bob.pass").chmod(0o600)
    two.write("work/extra.json", "{}")
    r = run(["attest", "stage", "monitor", "--bundle", str(two.bundle), "--key", "keys/alice.key", "--key",
             "keys/bob.key", "--passphrase-file", "keys/bob.key=bob.pass", "--no-head", "--set",
             "signals.x=1", "--set", "rollback_target.name=pkg", "--set", f"rollback_target.digest.sha256=\"{'0' * 64}\""],
            two.root, MLSPEC_KEY_PASSPHRASE_ALICE="alice-pass")
    assert r.returncode == 0, r.stderr
    newest = sorted((two.bundle / "attestations").glob("*-monitor.dsse.json"))[-1]
    assert len(json.loads(newest.read_text())["signatures"]) == 2
    loose = two.root / "loose.pass"
    loose.write_text("bob-pass")
    loose.chmod(0o644)
    r = run(["attest", "cosign", str(newest), "--key", "keys/bob.key", "--passphrase-file",
             f"keys/bob.key={loose}"], two.root)
    assert r.returncode == 2 and "readable by group or others" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_passphrase_files_in_mlspec_yaml(two: Project) -> None:
    (two.root / "secrets").mkdir()
    for who in PASS:
        (two.root / "secrets" / f"{who}.pass").write_bytes(PASS[who])
        (two.root / "secrets" / f"{who}.pass").chmod(0o600)
    (two.root / "mlspec.yaml").write_text("version: 1\nbundle: bundle\npassphrase_files:\n"
                                          "  keys/alice.key: secrets/alice.pass\n  keys/bob.key: secrets/bob.pass\n")
    r = run(["attest", "cosign", str(train(two.bundle)), "--key", "keys/alice.key"], two.root)
    assert r.returncode == 0, r.stderr
    r = run(["attest", "cosign", str(train(two.bundle)), "--key", "keys/bob.key"], two.root)
    assert r.returncode == 0, r.stderr
    assert verify_bundle(two.bundle, two.policy()).passed


def _edit_train(bundle: Path, edit: Any) -> None:
    doc = json.loads(train(bundle).read_bytes())
    edit(doc)
    train(bundle).write_text(json.dumps(doc, indent=2))


def _bob_sig(project: Project, payload_type: str, payload: bytes) -> Signature:
    env = Envelope(payload_type, payload)
    env.sign(load_signer(project.key("bob"), PASS["bob"]))
    return env.signatures[0]


def _changed_payload(project: Project, b: Path) -> None:
    """bob signs a changed statement (another metric) and offers it as his co-signature."""
    env = Envelope.from_dict(json.loads(train(b).read_bytes()))
    payload = env.payload.replace(b'"C":1', b'"C":9')
    assert payload != env.payload
    changed = Envelope(env.payload_type, payload, [_bob_sig(project, env.payload_type, payload)])
    train(b).write_bytes(changed.to_json())


def _unknown_key(project: Project, b: Path) -> None:
    env = Envelope.from_dict(json.loads(train(b).read_bytes()))
    env.sign(load_signer(project.key("intruder")))
    train(b).write_bytes(env.to_json())


def _forged_under_bob(project: Project, b: Path) -> None:
    bob = load_signer(project.key("bob"), PASS["bob"])
    _edit_train(b, lambda d: d["signatures"].append({"keyid": bob.keyid, "sig": b64encode(b"\x30" * 70)}))


def _swapped_hint(project: Project, b: Path) -> None:
    env = Envelope.from_dict(json.loads(train(b).read_bytes()))
    sig = _bob_sig(project, env.payload_type, env.payload)
    alice = load_signer(project.key("alice"), PASS["alice"])
    _edit_train(b, lambda d: d["signatures"].append({"keyid": alice.keyid, "sig": b64encode(sig.sig)}))


def _payload_type(project: Project, b: Path) -> None:
    env = Envelope.from_dict(json.loads(train(b).read_bytes()))
    other = Envelope("application/json", env.payload, [_bob_sig(project, "application/json", env.payload)])
    train(b).write_bytes(other.to_json())


def _extra_field(project: Project, b: Path) -> None:
    cosign(b, "bob")
    _edit_train(b, lambda d: d.update(note="merge me"))


def _listed_twice(project: Project, b: Path) -> None:
    cosign(b, "bob")
    _edit_train(b, lambda d: d["signatures"].append(d["signatures"][-1]))


def _extra_statement(project: Project, b: Path) -> None:
    cosign(b, "bob")
    shutil.copyfile(train(b), b / "attestations" / "0099-monitor.dsse.json")


def _symlinked(project: Project, b: Path) -> None:
    cosign(b, "bob")
    real = project.root / "elsewhere.json"
    shutil.move(train(b), real)
    (b / "attestations" / real.name).unlink(missing_ok=True)
    os.symlink(real, b / "attestations" / next((project.bundle / "attestations").glob("*-train.dsse.json")).name)


@pytest.mark.parametrize("attack, needle", [
    (_changed_payload, "signed payload differs"),
    (_unknown_key, "verifies under no key of the policy"),
    (_forged_under_bob, "verifies under no key of the policy"),
    (_swapped_hint, "the gate refuses such a hint"),
    (_payload_type, "payloadType"),
    (_extra_field, "unknown envelope fields"),
    (_listed_twice, "listed twice"),
    (_extra_statement, "only adds signatures, never statements"),
    (_symlinked, "symlink"),
])
def test_merge_refuses_everything_but_added_signatures(two: Project, attack: Any, needle: str) -> None:
    a, b = copies(two)
    # an honest co-signature on another file of the other copy comes first: the refusal must still write nothing
    ingest = next((b / "attestations").glob("*-ingest.dsse.json"))
    env = Envelope.from_dict(json.loads(ingest.read_bytes()))
    env.sign(load_signer(two.key("alice"), PASS["alice"]))
    ingest.write_bytes(env.to_json())
    attack(two, b)
    before = snapshot(a)
    with pytest.raises(InputError, match=needle):
        merge(two, a, b)
    assert snapshot(a) == before


def test_merge_refuses_a_revoked_signer(two: Project) -> None:
    a, b = copies(two)
    cosign(b, "bob")
    data = yaml.safe_load(two.policy().read_text())
    data["revoked"] = [{"keyid": load_signer(two.key("bob"), PASS["bob"]).keyid, "after": "2020-01-01T00:00:00Z"}]
    two.policy().write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="revoked"):
        merge(two, a, b)


def test_merge_never_drops_a_signature(two: Project) -> None:
    """The other copy lacks this copy's signatures (alice's, even the pipeline's): they stay."""
    a, b = copies(two)
    cosign(a, "alice")
    cosign(b, "bob")
    _edit_train(b, lambda d: d.update(signatures=d["signatures"][-1:]))  # only bob's is left there
    merge(two, a, b)
    sigs = json.loads(train(a).read_bytes())["signatures"]
    assert len(sigs) == 3  # pipeline, alice, bob
    assert verify_bundle(a, two.policy()).passed


def test_merge_with_an_older_copy_and_into_itself(two: Project) -> None:
    a, b = copies(two)
    cosign(b, "bob")
    newest = sorted((b / "attestations").iterdir())[-1]
    newest.unlink()  # the co-signer's copy predates the newest append: fine, nothing is removed here
    merge(two, a, b)
    assert len(json.loads(train(a).read_bytes())["signatures"]) == 2
    with pytest.raises(InputError, match="is the bundle itself"):
        merge(two, a, a)


def test_merge_cli_bad_input_is_one_line(two: Project) -> None:
    a, b = copies(two)
    _changed_payload(two, b)
    r = run(["attest", "merge", str(a), str(b), "--policy", str(two.policy())], two.root)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "nothing was merged" in r.stderr
