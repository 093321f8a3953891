"""`mlspec keys` with a real SoftHSM2 token, `mlspec keys rotate` and `mlspec policy check`, as a user runs them.

Token commands run in subprocesses: each gets the token's SOFTHSM2_CONF and the PIN in its environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import OBJECTIVES_YAML, Project
from softhsm import SoftHSM, softhsm_missing


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, text=True,
                          capture_output=True, env=env or dict(os.environ), timeout=300, input=stdin)


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> SoftHSM:
    reason = softhsm_missing()
    if reason:
        pytest.skip(reason)
    hsm = SoftHSM.create(tmp_path_factory.mktemp("softhsm-cli"))
    created = run(["keys", "generate", "pipeline", "--type", "ecdsa-p256", "--pkcs11", hsm.uri("pipeline"),
                   "--dir", str(hsm.directory / "pub")], hsm.directory, hsm.env())
    assert created.returncode == 0, created.stderr
    assert hsm.pin not in created.stdout + created.stderr
    return hsm


def test_generate_on_token_writes_only_the_public_key_and_export_matches(token: SoftHSM, tmp_path: Path) -> None:
    pub_dir = token.directory / "pub"
    assert sorted(p.name for p in pub_dir.iterdir()) == ["pipeline.pub"]  # no private key file, ever
    out = tmp_path / "exported.pub"
    exported = run(["keys", "export-public", token.uri("pipeline"), "--out", str(out)], tmp_path, token.env())
    assert exported.returncode == 0, exported.stderr
    assert out.read_bytes() == (pub_dir / "pipeline.pub").read_bytes()
    listed = run(["keys", "list", str(pub_dir)], tmp_path, token.env())
    assert "ecdsa-p256" in listed.stdout


def test_stage_signed_on_token_verifies_with_exported_key(token: SoftHSM, project: Project) -> None:
    project.write("objectives.yaml", OBJECTIVES_YAML)
    (project.root / "keys" / "owner.pub").write_bytes((token.directory / "pub" / "pipeline.pub").read_bytes())
    signed = run(["attest", "stage", "objectives", "--bundle", "bundle", "--key", token.uri("pipeline"),
                  "--metadata", "objectives.yaml"], project.root, token.env())
    assert signed.returncode == 0, signed.stderr
    envelope = next((project.root / "bundle").rglob("*.dsse.json"))
    inspected = run(["inspect", str(envelope), "--key", "keys/owner.pub"], project.root, token.env())
    assert inspected.returncode == 0 and "valid" in inspected.stdout.lower() and "invalid" not in inspected.stdout


@pytest.mark.parametrize("case", ["wrong-pin", "missing-object", "missing-module", "unknown-token"])
def test_token_mistakes_are_one_line_exit_2_and_write_nothing(token: SoftHSM, project: Project, case: str) -> None:
    uri, env = token.uri("pipeline"), token.env()
    needle = {"wrong-pin": "wrong PIN", "missing-object": "no public key object",
              "missing-module": "module not found", "unknown-token": "no token"}[case]
    if case == "wrong-pin":
        env = token.env(MLSPEC_PKCS11_PIN="0000-not-it")
    elif case == "missing-object":
        uri = token.uri("nobody", pin=True)  # the PIN in the URI must not come back in the message
    elif case == "missing-module":
        uri = f"pkcs11:token={token.label};object=pipeline?module-path=/nonexistent/libsofthsm9.so"
    else:
        uri = f"pkcs11:token=not-{token.label};object=pipeline?module-path={token.module}"
    project.write("objectives.yaml", OBJECTIVES_YAML)
    result = run(["attest", "stage", "objectives", "--bundle", "bundle", "--key", uri,
                  "--metadata", "objectives.yaml"], project.root, env)
    one_line_error(result, needle)
    assert token.pin not in result.stderr and "0000-not-it" not in result.stderr
    assert not (project.root / "bundle").exists() or not any((project.root / "bundle").rglob("*.dsse.json"))


def test_demo_with_pipeline_key_on_token_passes_its_gate(token: SoftHSM, tmp_path: Path) -> None:
    result = run(["demo", str(tmp_path / "demo"), "--pipeline-key", token.uri("pipeline")], tmp_path, token.env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Deploy gate: PASSED. 13 attestations verified" in result.stdout
    assert "pipeline key: on the token" in result.stdout
    assert not (tmp_path / "demo" / "keys" / "pipeline.key").exists()
    assert (tmp_path / "demo" / "keys" / "pipeline.pub").read_bytes() == \
        (token.directory / "pub" / "pipeline.pub").read_bytes()
    assert token.pin not in result.stdout + result.stderr
    again = run(["verify", "bundle"], tmp_path / "demo", token.env())
    assert again.returncode == 0, again.stdout


def test_demo_with_wrong_pin_leaves_no_directory(token: SoftHSM, tmp_path: Path) -> None:
    result = run(["demo", str(tmp_path / "demo"), "--pipeline-key", token.uri("pipeline")], tmp_path,
                 token.env(MLSPEC_PKCS11_PIN="1"))
    one_line_error(result, "wrong PIN")
    assert not (tmp_path / "demo").exists()


# -- rotation and policy check (local keys) ------------------------------------------------
def test_rotate_without_confirmation_writes_nothing(project: Project) -> None:
    policy = project.policy()
    before = policy.read_bytes()
    keys_before = sorted(p.name for p in (project.root / "keys").iterdir())
    result = run(["keys", "rotate", "pipeline", "--policy", str(policy), "--no-passphrase"], project.root)
    one_line_error(result, "--yes")
    assert policy.read_bytes() == before
    assert sorted(p.name for p in (project.root / "keys").iterdir()) == keys_before


def test_rotate_shows_the_diff_then_writes_key_and_policy(project: Project) -> None:
    policy = project.policy()
    result = run(["keys", "rotate", "pipeline", "--policy", str(policy), "--no-passphrase", "--yes"], project.root)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("+++ ") < out.index("wrote ")  # shown before it is written
    data = yaml.safe_load(policy.read_text())
    new_pub = project.root / "policies" / data["keys"]["pipeline"]["path"]
    assert new_pub.is_file() and new_pub.with_suffix(".key").is_file()
    assert oct(new_pub.with_suffix(".key").stat().st_mode & 0o777) == "0o600"
    old_keyid = [r["keyid"] for r in data["revoked"]]
    checked = run(["policy", "check", str(policy)], project.root)
    assert checked.returncode == 0
    assert "REVOKED" in checked.stdout and old_keyid[0] in checked.stdout


def test_rotate_inline_makes_a_self_contained_policy(project: Project) -> None:
    policy = project.policy()
    result = run(["keys", "rotate", "owner", "--policy", str(policy), "--no-passphrase", "--yes", "--inline"],
                 project.root)
    assert result.returncode == 0, result.stderr
    entry = yaml.safe_load(policy.read_text())["keys"]["owner"]
    assert entry["pem"].startswith("-----BEGIN PUBLIC KEY-----") and "path" not in entry
    # Rotating an inline key again keeps the policy self-contained without being asked.
    again = run(["keys", "rotate", "owner", "--policy", str(policy), "--no-passphrase", "--yes"], project.root)
    assert again.returncode == 0, again.stderr
    assert "pem" in yaml.safe_load(policy.read_text())["keys"]["owner"]


def test_policy_check_prints_signers_thresholds_and_requirements(project: Project) -> None:
    data = yaml.safe_load(project.policy().read_text())
    data["stages"]["train"] = {"required": True, "signers": ["pipeline", "owner"], "threshold": 2}
    data["objectives"]["separate_signer"] = False  # the owner co-signs train here: allowed, and warned about
    project.policy().write_text(yaml.safe_dump(data))
    result = run(["policy", "check", str(project.policy())], project.root)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith("  ")}
    assert rows["train"][1:4] == ["yes", "2", "no"] and "pipeline," in rows["train"] and "owner" in rows["train"]
    assert rows["serve"][1] == "no" and rows["objectives"][-1] == "owner"
    assert "chain head: required, 1 of pipeline" in result.stdout  # the shipped policies require a head (trust-time)
    del data["head"]
    project.policy().write_text(yaml.safe_dump(data))
    result = run(["policy", "check", str(project.policy())], project.root)
    assert "chain head: not configured" in result.stdout


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["stages"]["train"].update(signers=["ghost"]), "not defined under keys"),
    (lambda d: d.update(colour="blue"), "unknown field"),
    (lambda d: d["keys"].update(pipeline={"pem": "-----BEGIN PUBLIC KEY-----\nAA\n-----END PUBLIC KEY-----"}),
     "unreadable public key"),
])
def test_policy_check_refuses_invalid_policies_in_one_line(project: Project, mutate, needle: str) -> None:
    data = yaml.safe_load(project.policy().read_text())
    data["stages"]["train"] = dict(data["stages"]["train"] or {})
    mutate(data)
    project.policy().write_text(yaml.safe_dump(data))
    one_line_error(run(["policy", "check", str(project.policy())], project.root), needle)


def test_rotate_onto_a_token_writes_no_private_key(token: SoftHSM, project: Project) -> None:
    policy = project.policy()
    before = sorted(p.name for p in (project.root / "keys").iterdir())
    result = run(["keys", "rotate", "pipeline", "--policy", str(policy), "--type", "ed25519", "--yes",
                  "--pkcs11", token.uri("pipeline-next")], project.root, token.env())
    assert result.returncode == 0, result.stderr
    added = sorted(set(p.name for p in (project.root / "keys").iterdir()) - set(before))
    assert len(added) == 1 and added[0].endswith(".pub")  # the private half stayed on the token
    exported = run(["keys", "export-public", token.uri("pipeline-next")], project.root, token.env())
    assert exported.stdout == (project.root / "keys" / added[0]).read_text()
    assert run(["policy", "check", str(policy)], project.root).returncode == 0


# --------------------------------------------------------------------------- keys review (holes 1, 4, 6, 8, 10, PIN)
def test_policy_check_shows_the_revocation_the_gate_uses(project: Project) -> None:
    """Hole 1: two entries for one key; policy check must print the earliest, as the gate applies it."""
    from mlspec_attest.keys import load_signer

    kid = load_signer(project.key("pipeline")).public.keyid
    policy = project.write("policies/rev.yaml", project.policy().read_text() + (
        f'\nrevoked:\n  - {{keyid: {kid}, after: "2099-01-01T00:00:00Z", reason: planned}}\n'
        f"  - {{keyid: {kid}, reason: stolen}}\n"))
    result = run(["policy", "check", str(policy)], project.root)
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.strip().startswith("pipeline "))
    assert "REVOKED for signatures from 0001-01-01" in line and "stolen" in line and "2099" not in line


def test_policy_check_refuses_a_smuggled_inline_pem(project: Project) -> None:
    """Hole 4 through the CLI: a private key body after a first END line is exit 2, one line."""
    pub = (project.root / "keys" / "pipeline.pub").read_text()
    body = "".join(project.key("pipeline").read_text().splitlines(keepends=True)[1:-1])
    pem = pub + body + "-----END PUBLIC KEY-----\n"
    policy = project.write("policies/p.yaml", yaml.safe_dump(
        {"version": 1, "keys": {"k": {"pem": pem}}, "stages": {"train": {"signers": ["k"]}}}))
    one_line_error(run(["policy", "check", str(policy)], project.root), "keys.k", "PUBLIC KEY")


def test_rotate_into_another_dir_makes_git_ignore_the_new_private_key(project: Project) -> None:
    """Hole 6: keys rotate --dir ci-keys inside a git repository must not leave the .key stageable."""
    import shutil

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(project.root)], check=True)
    result = run(["keys", "rotate", "pipeline", "--policy", str(project.policy()), "--dir", "ci-keys", "--yes",
                  "--no-passphrase"], project.root)
    assert result.returncode == 0, result.stderr
    new_keys = list((project.root / "ci-keys").glob("*.key"))
    assert len(new_keys) == 1
    subprocess.run(["git", "add", "-A"], cwd=project.root, check=True)
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=project.root, check=True,
                            capture_output=True, text=True).stdout.splitlines()
    ours = [name for name in staged if name.startswith("ci-keys/")]  # (the fixture's keys/ is not ours)
    assert ours and not any(name.endswith(".key") for name in ours), ours


@pytest.mark.parametrize("name", ["../../outside/x", "sub/x", "..", ".hidden"])
def test_rotate_refuses_a_key_name_that_is_not_a_file_name(project: Project, name: str) -> None:
    """Hole 10: a policy key name with ../ must not choose where the new key files are written."""
    text = project.policy().read_text().replace("  pipeline: ../keys/pipeline.pub",
                                                f"  pipeline: ../keys/pipeline.pub\n  {json.dumps(name)}: ../keys/pipeline.pub")
    policy = project.write("policies/p.yaml", text)
    before = sorted(str(p) for p in project.root.parent.rglob("*"))
    result = run(["keys", "rotate", name, "--policy", str(policy), "--yes", "--no-passphrase"], project.root)
    one_line_error(result, "key name")
    assert sorted(str(p) for p in project.root.parent.rglob("*")) == before


def test_rotate_onto_a_token_refuses_a_traversing_name(token: SoftHSM, project: Project) -> None:
    """Hole 10, the --pkcs11 path (the reviewer's repro): nothing written outside, nothing created."""
    text = project.policy().read_text().replace("  pipeline: ../keys/pipeline.pub",
                                                '  pipeline: ../keys/pipeline.pub\n  "../../outside/x": ../keys/pipeline.pub')
    policy = project.write("policies/p.yaml", text)
    result = run(["keys", "rotate", "../../outside/x", "--policy", str(policy), "--yes",
                  "--pkcs11", token.uri("traversal")], project.root, token.env())
    one_line_error(result, "key name")
    assert not (project.root.parent / "outside").exists()


def test_keys_list_refuses_a_fifo_pub(project: Project) -> None:
    """Hole 8: a FIFO named *.pub is refused (exit 2, one line), never opened for a blocking read."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(project.root / "keys" / "stuck.pub")
    one_line_error(run(["keys", "list", "keys"], project.root), "stuck.pub", "not a regular file")


def test_generate_on_token_without_pin_and_terminal_says_how(token: SoftHSM, tmp_path: Path) -> None:
    """The PIN: environment, pin-source or a terminal prompt (docs/keys.md); with none, one line, exit 2."""
    env = {k: v for k, v in token.env().items() if k != "MLSPEC_PKCS11_PIN"}
    result = run(["keys", "generate", "nopin", "--pkcs11", token.uri("nopin"), "--dir", str(tmp_path)],
                 tmp_path, env)
    one_line_error(result, "no terminal")
    assert not (tmp_path / "nopin.pub").exists()


def test_generate_on_token_asks_the_secrets_handler_for_the_pin(token: SoftHSM, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """What the CLI passes (keys.ask_secret) is asked for the PIN when neither env nor URI has one."""
    from mlspec_attest.signers import generate_on_token

    for key, value in token.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLSPEC_PKCS11_PIN", raising=False)
    asked: list[str] = []

    def handler(what: str) -> str:
        asked.append(what)
        return token.pin

    assert generate_on_token(token.uri("asked"), "ed25519", handler) is not None
    assert asked == ["PIN"]
