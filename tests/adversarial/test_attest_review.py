"""Findings of the adversarial review of attest / run capture / CLI paths (/tmp/adv-attest/repro).

Each test is the reviewer's attack; each fails on the code before its fix.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlspec_attest.attest.runinfo import git_state

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "-C", str(root), *args],
                   check=True, capture_output=True)


def _repo(root: Path, text: str = 'print("honest")\n') -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", ".")
    (root / "train.py").write_text(text)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    return root


# H1 ------------------------------------------------------------------------------------------------

@needs_git
@pytest.mark.parametrize("kind", ["clean", "process", "smudge"])
def test_h1_a_filter_driver_in_the_repository_config_is_not_run(tmp_path: Path, kind: str) -> None:
    """A hostile .git/config names a filter program; describing the tree runs none of it (clean or process)."""
    root = _repo(tmp_path / "repo")
    marker = tmp_path / "PWNED"
    _git(root, "config", f"filter.evil.{kind}", f"sh -c 'touch {marker}; cat'")
    _git(root, "config", "filter.evil.required", "true")
    (root / ".git" / "info" / "attributes").write_text("* filter=evil\n")
    (root / "train.py").write_text('print("honest")\n')  # rewritten: stale stat, status re-hashes it
    state = git_state(root)
    assert not marker.exists(), "a filter named by the repository's config ran"
    assert state is not None and state["filters"] == ["evil"]


@needs_git
def test_h1_a_filter_in_a_submodule_config_is_not_run(tmp_path: Path) -> None:
    """git status recurses into submodules with their own config: those filters are neutralised too."""
    inner = _repo(tmp_path / "inner")
    root = _repo(tmp_path / "repo")
    subprocess.run(["git", "-c", "protocol.file.allow=always", "-c", "user.email=a@b", "-c", "user.name=a",
                    "-C", str(root), "submodule", "add", "-q", str(inner), "sub"], check=True, capture_output=True)
    _git(root, "commit", "-qm", "sub")
    marker = tmp_path / "PWNED"
    _git(root / "sub", "config", "filter.evil.clean", f"sh -c 'touch {marker}; cat'")
    gitdir = Path(subprocess.run(["git", "-C", str(root / "sub"), "rev-parse", "--absolute-git-dir"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    (gitdir / "info").mkdir(exist_ok=True)
    (gitdir / "info" / "attributes").write_text("* filter=evil\n")
    (root / "sub" / "train.py").write_text('print("honest")\n')
    state = git_state(root)
    assert not marker.exists(), "a submodule's filter ran"
    assert state is not None and "evil" in state["filters"]


@needs_git
def test_h1_a_lying_clean_filter_cannot_make_an_edited_tree_look_clean(tmp_path: Path) -> None:
    """The clean filter returns the committed blob: with filters neutralised the edit is seen raw."""
    root = _repo(tmp_path / "repo")
    _git(root, "config", "filter.lie.clean", "sh -c 'cat >/dev/null; git show HEAD:\"$1\"' _ %f")
    (root / ".git" / "info" / "attributes").write_text("*.py filter=lie\n")
    (root / "train.py").write_text('print("EVIL!!")\n')  # same size as the committed file
    state = git_state(root)
    assert state is not None and state["dirty"] is True and state["filters"] == ["lie"]


@needs_git
def test_h1_a_repository_without_filters_records_none(tmp_path: Path) -> None:
    state = git_state(_repo(tmp_path / "repo"))
    assert state is not None and state["dirty"] is False and "filters" not in state


# H2 ------------------------------------------------------------------------------------------------

_HEX40 = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("assignment", [f"wandb.key={_HEX40}", f"x.license={_HEX40}", f"x.appid={_HEX40}",
                                        f"x.keys={_HEX40}", f"x.key={_HEX40[:32]}", f"a.b.apikey={_HEX40}"])
@pytest.mark.parametrize("spelling", ["separate", "joined"])
def test_h2_a_set_value_redacted_in_metadata_is_not_signed_in_clear_in_the_command(
        tmp_path: Path, assignment: str, spelling: str) -> None:
    """``--set wandb.key=<hex>``: metadata redacts it, so run.command must too (one credential rule)."""
    from mlspec_attest.attest import runinfo
    from mlspec_attest.attest.redaction import redact_all

    argv = (["mlspec", "attest", "stage", "monitor", "--set", assignment] if spelling == "separate"
            else ["mlspec", "attest", "stage", "monitor", f"--set={assignment}"])
    name, value = assignment.split("=", 1)
    metadata: dict[str, object] = {}
    for part in reversed(name.split(".")):
        metadata = {part: metadata or value}
    assert redact_all(metadata).pointers, "the metadata path redacts this value"
    fields, pointers = runinfo.capture(tmp_path, argv=argv, environ={})
    assert value not in str(fields["command"]) and pointers


def test_h2_a_path_under_a_dotted_key_name_is_kept(tmp_path: Path) -> None:
    """Fail closed must not eat the evidence: a file path or a short word in ``x.key`` stays readable."""
    from mlspec_attest.attest import runinfo

    fields, pointers = runinfo.capture(tmp_path, argv=["mlspec", "--set", "x.key=models/a.bin",
                                                       "--set", f"x.monkey={_HEX40[:20]}"], environ={})
    assert fields["command"][2] == "x.key=models/a.bin" and not pointers


# CLI findings (H4, H6, H8): run against a fresh copy of the demo project ------------------------------

@pytest.fixture
def demo(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(demo_copy)
    return demo_copy


def _mlspec(*args: str) -> Any:
    from click.testing import CliRunner

    from mlspec_attest.cli.main import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


_MONITOR = ("attest", "stage", "monitor", "--material", "package=package/credit-model",
            "--metadata", "reports/monitor.json")


@pytest.mark.parametrize("assignment", ["note=\udcff", "no\udcfete=1", "a.b=x\udc80y"])
def test_h4_a_non_utf8_byte_in_a_set_value_is_an_input_error_not_a_traceback(demo: Path, assignment: str) -> None:
    """A non-UTF-8 byte on the command line arrives as a surrogate: exit 2, one JSON error, nothing written."""
    before = sorted(p.name for p in (demo / "bundle" / "attestations").iterdir())
    result = _mlspec(*_MONITOR, "--format", "json", "--set", assignment)
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "error" and "not UTF-8" in data["error"]["message"]
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (demo / "bundle" / "attestations").iterdir()) == before


def test_h4_a_unicode_error_escaping_a_parser_is_still_one_line_exit_2() -> None:
    """The one error handler turns a UnicodeError from user input into one line, exit 2 (not a traceback)."""
    import click
    from click.testing import CliRunner

    from mlspec_attest.cli._errors import ErrorHandlingGroup, json_format_option

    @click.group(cls=ErrorHandlingGroup)
    def group() -> None:
        pass

    @group.command()
    @json_format_option
    @click.argument("name")
    def use(name: str, fmt: str) -> None:
        name.encode("utf-8")

    result = CliRunner().invoke(group, ["use", "--format", "json", "x\udcff"], catch_exceptions=False)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert json.loads(result.stdout)["verdict"] == "error"
    assert result.stderr.startswith("error: input is not valid UTF-8") and "\\udcff" in result.stderr


_CREDENTIALS = {"hashivault://deploy:s3cr3tPassw0rd@vault.example/key": "s3cr3tPassw0rd",
                "awskms://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY@host/key": "wJalrXUtnFEMI",
                "gcpkms://user:hunter2hunter2@x/key": "hunter2hunter2"}


@pytest.mark.parametrize("uri", sorted(_CREDENTIALS))
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_h6_credentials_in_a_key_uri_never_appear_in_an_error(demo: Path, uri: str, fmt: str) -> None:
    """--key with user:password@ fails; neither stderr nor the JSON file/message/hint shows the password."""
    result = _mlspec(*_MONITOR, "--key", uri, "--format", fmt)
    assert result.exit_code == 2
    secret = _CREDENTIALS[uri]
    assert secret not in result.stdout and secret not in result.stderr
    assert "[REDACTED]@" in result.stderr


def test_h6_userinfo_is_redacted_in_any_uri_of_a_message() -> None:
    from mlspec_attest.cli._errors import public_message

    text = "s3://AKIA:sk@b/x and https://u:p@h/ and hashivault:/a:b@h and plain user@example.org"
    shown = public_message(text)
    assert ":sk@" not in shown and "u:p@" not in shown and "a:b@" not in shown
    assert "user@example.org" in shown  # an e-mail address is not a URI's userinfo


def test_h8_a_non_utf8_file_name_in_the_bundle_is_reported_not_a_crash(demo: Path, tmp_path: Path) -> None:
    """A bundle holder plants ``\\xff.dsse.json``: report writes the page (name escaped) and exits 1 (fork)."""
    import os

    attestations = demo / "bundle" / "attestations"
    planted = os.path.join(os.fsencode(attestations), b"\xff.dsse.json")
    with open(planted, "wb") as out:
        out.write((attestations / "0005-split.dsse.json").read_bytes())
    page = tmp_path / "r.html"
    result = _mlspec("report", "bundle", "--html", str(page))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr
    text = page.read_bytes().decode("utf-8")  # strictly UTF-8: nothing undecodable was written
    assert "\\udcff.dsse.json" in text


# H3: an ancestor's mlspec.yaml must not re-root the operator's explicit relative paths ------------------

@pytest.fixture
def nested(demo_built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Someone else's project (``shared``) and, below it, the operator's own bundle, policy and keys."""
    shared = tmp_path / "shared"
    shutil.copytree(demo_built, shared, symlinks=True)
    mine = shared / "alice"
    mine.mkdir()
    for name in ("bundle", "policies", "keys", "package"):
        shutil.copytree(demo_built / name, mine / name, symlinks=True)
    with (mine / "package" / "credit-model" / "requirements.txt").open("a") as out:
        out.write("tampered\n")  # the operator's artifact is NOT the attested one
    monkeypatch.chdir(mine)
    return shared, mine


@pytest.mark.parametrize("args", [
    ("verify", "bundle", "--policy", "policies/default.yaml", "--artifact", "package/credit-model"),
    ("verify", "bundle", "--artifact", "package/credit-model", "--policy", "policies/default.yaml"),
    ("hash", "package/credit-model"),
    ("inspect", "bundle/attestations/0000-objectives.dsse.json", "--key", "keys/owner.pub"),
])
def test_h3_a_path_that_exists_here_and_at_an_ancestor_root_is_refused(nested: tuple[Path, Path],
                                                                        args: tuple[str, ...]) -> None:
    """Both the working directory's and the ancestor root's file exist: exit 2 naming both, never the root's."""
    shared, mine = nested
    result = _mlspec(*args, "--format", "json") if args[0] != "hash" else _mlspec(*args)
    assert result.exit_code == 2, result.output
    assert "ambiguous" in result.stderr and str(shared) in result.stderr and str(mine) in result.stderr


def test_h3_dot_slash_means_the_working_directory_and_the_gate_sees_the_tamper(nested: tuple[Path, Path]) -> None:
    """``./PATH`` is the working directory's: the operator's tampered artifact fails the gate (exit 1)."""
    _, mine = nested
    rel = _mlspec("verify", "./bundle", "--policy", "./policies/default.yaml", "--artifact", "./package/credit-model")
    absolute = _mlspec("verify", str(mine / "bundle"), "--policy", str(mine / "policies" / "default.yaml"),
                       "--artifact", str(mine / "package" / "credit-model"))
    assert rel.exit_code == absolute.exit_code == 1, (rel.output, absolute.output)


def test_h3_a_path_only_at_the_root_still_means_the_roots(nested: tuple[Path, Path]) -> None:
    from mlspec_attest.cli._project import in_project

    shared, mine = nested
    assert in_project("objectives.yaml") == str(shared.resolve() / "objectives.yaml")
    with pytest.raises(Exception, match="ambiguous"):
        in_project("policies/default.yaml")
    assert in_project("new-output.html") == str(mine / "new-output.html")  # exists nowhere: here
    assert in_project("reports/x.html") == str(shared.resolve() / "reports" / "x.html")  # its dir is the root's


def test_h3_an_ancestor_project_file_owned_by_another_user_is_refused(nested: tuple[Path, Path]) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    shared, _ = nested
    os.chown(shared / "mlspec.yaml", 4242, 4242)
    result = _mlspec("hash", "objectives.yaml")
    assert result.exit_code == 2 and "owned by uid 4242" in result.stderr


# H7: the same path rule for --passphrase-file KEY, attest merge and run branch ---------------------------

@pytest.fixture
def deeper(demo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (demo / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(demo / "sub" / "deeper")
    return demo


def test_h7_passphrase_file_key_means_the_key_the_key_option_loads(deeper: Path) -> None:
    """From a subdirectory ``--passphrase-file keys/pipeline.key=F`` must unlock <root>/keys/pipeline.key."""
    import click
    from click.testing import CliRunner

    from mlspec_attest import keys
    from mlspec_attest.cli._passphrase import passphrase_file_option

    @click.command()
    @passphrase_file_option
    def probe() -> None:
        pass

    assert CliRunner().invoke(probe, ["--passphrase-file", "keys/pipeline.key=pass.txt"]).exit_code == 0
    registered = dict(keys._passphrase_files)
    assert (deeper / "keys" / "pipeline.key").resolve() in registered
    assert registered[(deeper / "keys" / "pipeline.key").resolve()][0] == deeper.resolve() / "sub" / "deeper" / "pass.txt"


def test_h7_attest_merge_reads_the_roots_bundles_from_a_subdirectory(deeper: Path) -> None:
    shutil.copytree(deeper / "bundle", deeper / "other", symlinks=True)
    result = _mlspec("attest", "merge", "bundle", "other", "--policy", "policies/default.yaml")
    assert result.exit_code == 0, result.output
    assert "merged 0 signature(s)" in result.stdout


def test_h7_run_branch_reads_the_roots_bundle_from_a_subdirectory(deeper: Path) -> None:
    result = _mlspec("run", "branch", "bundle", "--from", "3", "rerun", "--policy", "policies/default.yaml")
    assert result.exit_code == 0, result.output
    assert (Path.cwd() / "rerun" / "attestations").is_dir()  # a new output: the working directory's
    assert not (deeper / "rerun").exists()


def test_h6_a_usage_error_quoting_a_uri_does_not_show_its_password() -> None:
    """click's own "Path ... does not exist" quotes the value: the handler redacts it before click prints."""
    import click
    from click.testing import CliRunner

    from mlspec_attest.cli._errors import ErrorHandlingGroup, json_format_option

    @click.group(cls=ErrorHandlingGroup)
    def group() -> None:
        pass

    @group.command()
    @json_format_option
    @click.option("--key", type=click.Path(exists=True))
    def use(key: str, fmt: str) -> None:
        pass

    for fmt in ("text", "json"):
        result = CliRunner().invoke(group, ["use", "--format", fmt, "--key", "vault://me:hunter2secret@h/k"])
        assert result.exit_code == 2 and "hunter2secret" not in result.output + result.stderr
