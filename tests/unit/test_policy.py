"""The trust policy parsed completely at load: typed objects, wrong types and unknown fields refused.

Each refusal here is a way a policy author's typo (or a reviewer's miss) would
otherwise weaken the gate silently: a misspelt field drops a rule, a quoted
"false" is a truthy string, a CEL check that does not compile is found mid-verify.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Project

from mlspec_attest.errors import InputError
from mlspec_attest.evidence.identity import IdentityRule
from mlspec_attest.policy import Check, EvidenceRule, HeadRule, ObjectivesPin, Policy, Revocation, StageRule

GHA = "https://token.actions.githubusercontent.com"
BASE = """\
version: 1
keys: {owner: ../keys/owner.pub, pipeline: ../keys/pipeline.pub}
objectives: {project: my-model}
defaults: {signers: [pipeline]}
stages:
  objectives: {signers: [owner]}
"""


def load(project: Project, text: str, name: str = "t.yaml") -> Policy:
    return Policy.from_file(project.write(f"policies/{name}", textwrap.dedent(text)))


def refused(project: Project, text: str) -> str:
    with pytest.raises(InputError) as exc:
        load(project, text)
    return str(exc.value)


def test_shipped_policies_parse_into_typed_objects(project: Project) -> None:
    for name in ("default.yaml", "minimal.yaml"):
        policy = Policy.from_file(project.policy(name))
        assert all(isinstance(rule, StageRule) for rule in policy.stages.values())
        assert isinstance(policy.objectives, ObjectivesPin) and policy.objectives.project == "my-model"
        assert policy.stages["objectives"].signers == ("owner",) and policy.stages["objectives"].required
        assert policy.weaknesses == ()
        with pytest.raises(AttributeError):
            policy.stages["train"].repeat = True  # type: ignore[misc]  # frozen: nothing edits a loaded rule


@pytest.mark.parametrize("field,place", [
    ("repeat", "stages.train.repeat"), ("required", "stages.train.required")])
def test_quoted_false_is_refused_not_truthy(project: Project, field: str, place: str) -> None:
    message = refused(project, BASE + f"  train: {{{field}: \"false\"}}\n")
    assert f"t.yaml: {place}: expected true or false, got the string 'false'" in message


@pytest.mark.parametrize("extra,needle", [
    ("artifact_flow: 'false'\n", "artifact_flow: expected true or false, got the string 'false'"),
    ("artifact_flow: {enabled: 'no'}\n", "artifact_flow.enabled: expected true or false"),
    ("head: {signers: [pipeline], required: 'false'}\n", "head.required: expected true or false"),
    ("head: {signers: [pipeline], threshold: '1'}\n", "head.threshold: expected an integer >= 1"),
])
def test_top_level_wrong_types_are_refused(project: Project, extra: str, needle: str) -> None:
    assert needle in refused(project, BASE + "  train: {}\n" + extra)


@pytest.mark.parametrize("stage,needle", [
    ("{threshold: '2'}", "stages.train.threshold: expected an integer >= 1, got the string '2'"),
    ("{threshold: true}", "stages.train.threshold: expected an integer >= 1, got the boolean true"),
    ("{signers: pipeline}", "stages.train.signers: expected a non-empty list of names, got the string"),
    ("{signers: [pipeline, pipeline]}", "listed twice"),
    ("{checks: {name: x}}", "stages.train.checks: expected a list"),
    ("{evidence: [{name: e, predicate_typ: x, key: ../keys/pipeline.pub}]}", "unknown field(s) predicate_typ"),
    ("{evidence: [{name: e, subject_role: code}]}", "give either identities (keyless signer) or key"),
    ("{evidence: [{name: e, key: ../keys/nothere.pub}]}", "evidence[0].key"),
    ("{evidence: [{name: e, identities: [{san: a@b.c, issuer: x}]}]}", "needs trust_config"),
    ("{identities: [{san: a@b.c}]}", "'issuer' is required"),
    ("{checks: [{name: c, expression: 'metadata.x >= '}]}", "stages.train.checks[0].expression"),
    ("{checks: [{name: c, expression: 'nosuchvar.x'}]}", "unknown variable 'nosuchvar'"),
    ("{checks: [{name: c, expression: 'true'}, {name: c, expression: 'true'}]}", "check names must be unique"),
])
def test_stage_rules_refuse_wrong_types_typos_and_bad_cel_at_load(project: Project, stage: str, needle: str) -> None:
    assert needle in refused(project, BASE + f"  train: {stage}\n")


@pytest.mark.parametrize("entry,needle", [
    ("{keyid: ABC}", "64 lowercase hex"),
    ("{after: '2026-01-01T00:00:00Z'}", "exactly one of keyid"),
    (f"{{keyid: {'a' * 64}, san: x@y.z}}", "exactly one of keyid"),
    ("{issuer: x}", "exactly one of keyid"),
    (f"{{keyid: {'a' * 64}, after: tomorrow}}", "is not an RFC 3339 time"),
    (f"{{keyid: {'a' * 64}, reason: 3}}", "revoked[0].reason: expected a non-empty string"),
])
def test_revocations_are_validated(project: Project, entry: str, needle: str) -> None:
    assert needle in refused(project, BASE + f"  train: {{}}\nrevoked: [{entry}]\n")


def test_every_policy_object_is_typed(project: Project) -> None:
    project.write("trust.json", "{}")
    policy = load(project, BASE + f"""\
  train:
    checks: [{{name: sk, expression: 'metadata.framework.name == "sklearn"'}}]
    evidence:
      - {{name: prov, subject_role: code, predicate_type: https://slsa.dev/provenance/v1,
          identities: [{{san: a@b.c, issuer: {GHA}}}]}}
  package: {{identities: [{{san_pattern: '.*@b\\.c', issuer: {GHA}}}]}}
trust_config: ../trust.json
revoked: [{{san: a@b.c, issuer: {GHA}, after: '2026-01-01T00:00:00Z'}}, {{keyid: {'b' * 64}}}]
head: {{signers: [pipeline], max_validity: 2d}}
""")
    train = policy.stages["train"]
    assert isinstance(train.checks[0], Check) and train.checks[0].program is not None  # compiled at load
    assert isinstance(train.evidence[0], EvidenceRule) and isinstance(train.evidence[0].identities[0], IdentityRule)
    assert train.evidence[0].predicate_type == "https://slsa.dev/provenance/v1"
    assert train.identities == ()  # names its checks, inherits the key signers only
    assert policy.stages["package"].signers == ()  # names identities: inherits no key from defaults
    assert all(isinstance(r, Revocation) for r in policy.revoked)
    assert policy.revoked[0].matches_identity("a@b.c", GHA) and not policy.revoked[0].matches_identity("a@b.c", "x")
    assert isinstance(policy.head, HeadRule) and policy.head.max_validity is not None


def test_defaults_identities_never_leak_into_stages_that_name_signers(project: Project) -> None:
    """A keyless identity in defaults must not be able to sign a stage that names its keys, nor the objectives."""
    project.write("trust.json", "{}")
    policy = load(project, f"""\
version: 1
keys: {{owner: ../keys/owner.pub, pipeline: ../keys/pipeline.pub}}
objectives: {{project: my-model}}
trust_config: ../trust.json
defaults: {{identities: [{{san: ci@example.com, issuer: {GHA}}}]}}
stages:
  objectives: {{signers: [owner]}}
  train: {{signers: [pipeline]}}
  evaluate: {{}}
""")
    assert policy.stages["objectives"].identities == ()
    assert policy.stages["train"].identities == ()
    assert policy.stages["evaluate"].identities[0].san == "ci@example.com"  # names nothing: inherits


def test_objectives_never_inherit_defaults(project: Project) -> None:
    message = refused(project, BASE.replace("  objectives: {signers: [owner]}\n", "  objectives: {}\n"))
    assert "stages.objectives: name the objectives' own signers" in message


def test_keyless_threshold_above_one_without_keys_is_refused(project: Project) -> None:
    project.write("trust.json", "{}")
    message = refused(project, BASE + f"  train: {{identities: [{{san: a@b.c, issuer: {GHA}}}], threshold: 2}}\n"
                      "trust_config: ../trust.json\n")
    assert "threshold 2 exceeds" in message


@pytest.mark.parametrize("pin,needle", [
    ("{}", "objectives.project: missing"),
    ("{project: my-model, min_revision: '2'}", "objectives.min_revision: expected an integer >= 1"),
    ("{project: my-model, min_revision: 0}", "objectives.min_revision: expected an integer >= 1"),
    ("{project: '1bad name'}", "must start with a letter"),
    ("{project: my-model, sha256: abc}", "objectives.sha256: expected a sha256 digest"),
    ("{project: my-model, separate_signer: 'false'}", "objectives.separate_signer: expected true or false"),
    ("{project: my-model, projet: x}", "unknown field(s) projet"),
])
def test_objectives_pin_is_validated(project: Project, pin: str, needle: str) -> None:
    assert needle in refused(project, BASE.replace("objectives: {project: my-model}", f"objectives: {pin}"))


def test_a_policy_with_an_objectives_stage_must_pin_them(project: Project) -> None:
    assert "objectives: missing; pin the objectives in force" in refused(
        project, BASE.replace("objectives: {project: my-model}\n", ""))


def test_top_level_fields_have_one_parse_place(project: Project) -> None:
    assert "unknown field(s) objective" in refused(project, BASE + "objective: {project: x}\n")
    assert "description: expected a non-empty string" in refused(project, BASE + "description: 3\n")


def test_policy_without_checks_does_not_import_cel(project: Project) -> None:
    """Lean start: CEL (celpy, lark) loads only for policies that have checks."""
    code = (f"import sys; from mlspec_attest.policy import Policy; Policy.from_file({str(project.policy())!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('celpy', 'lark', 'sigstore')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


# -- mlspec init and the demo pin the objectives they write -------------------------------------
def test_init_pins_the_project_in_policies_and_objectives(tmp_path: Path) -> None:
    from mlspec_attest.objectives.criteria import check_file
    from mlspec_attest.project import init_project

    init_project(tmp_path / "fraud_model v2", encrypt=False)
    root = tmp_path / "fraud_model v2"
    assert check_file(root / "objectives.yaml").project == "fraud_model-v2"
    for name in ("default.yaml", "minimal.yaml"):
        assert Policy.from_file(root / "policies" / name).objectives == ObjectivesPin(project="fraud_model-v2")
    init_project(tmp_path / "named", encrypt=False, project="credit")
    assert Policy.from_file(tmp_path / "named" / "policies" / "default.yaml").objectives.project == "credit"  # type: ignore[union-attr]


def test_init_refuses_a_bad_project_name_before_writing(tmp_path: Path) -> None:
    from mlspec_attest.project import init_project

    with pytest.raises(InputError, match="--project '9 lives'"):
        init_project(tmp_path / "p", encrypt=False, project="9 lives")
    assert not (tmp_path / "p").exists()


def test_demo_objectives_match_the_project_the_demo_pins() -> None:
    import yaml

    pytest.importorskip("sklearn", reason="the demo needs the [demo] extra")
    from mlspec_attest.demo.credit import OBJECTIVES_YAML
    from mlspec_attest.demo.runner import DEMO_PROJECT

    assert yaml.safe_load(OBJECTIVES_YAML)["project"] == DEMO_PROJECT


def test_cli_refuses_a_mistyped_policy_in_one_line(project: Project) -> None:
    project.write("policies/typo.yaml", BASE + "  train: {repeat: 'false'}\n")
    out = subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", "verify", str(project.root / "bundle"),
                          "--policy", str(project.policy("typo.yaml"))], capture_output=True, text=True,
                         cwd=project.root, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "typo.yaml: stages.train.repeat: expected true or false" in lines[0]


def test_cli_init_project_flag(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", "init", "p", "--no-passphrase",
                          "--project", "fraud"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and "objectives pinned to project fraud" in out.stdout
    assert "project: fraud" in (tmp_path / "p" / "objectives.yaml").read_text()
