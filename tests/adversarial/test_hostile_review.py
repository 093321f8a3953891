"""The holes a hostile-files reviewer found after the hostile-files branch (H1-H12b, demo wipe).

Each test replays the reviewer's attack (/tmp/adv-files/repro/*.sh) or a variation of
it against the real console script in a subprocess with a hang guard, and shows the
refusal: exit status, one line, nothing touched outside the target.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Project
from hostile_harness import GIB, HANG_GUARD, REPO, Target, make_target, mlspec, pristine_demo, refused, snapshot, sparse

from mlspec_attest._internal import files as safe
from mlspec_attest._internal.loaders import parse_yaml
from mlspec_attest.errors import InputError
from mlspec_attest.model.report import Report
from mlspec_attest.render.terminal import terminal_safe
from mlspec_attest.render.text import render_text


@pytest.fixture
def target(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Target:
    return make_target(pristine_demo(tmp_path_factory), tmp_path)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("MLSPEC_KEY_PASSPHRASE", None)
    env.update(extra)
    return env


def _shell(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in bash with ``$MLSPEC`` the real console script (for redirections like ``>&-``)."""
    mlspec_cmd = f"{sys.executable} -m mlspec_attest.cli.main"
    try:
        return subprocess.run(["bash", "-c", script], cwd=cwd, env=_env(MLSPEC=mlspec_cmd, **env),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script!r} hung")


def _reader_gone(*args: str, cwd: Path) -> tuple[int, str]:
    """Run mlspec with its stdout a pipe whose reader closed before anything was written (``| true``)."""
    proc = subprocess.Popen([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, env=_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    try:
        _, err = proc.communicate(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"mlspec {' '.join(args)} hung")
    return proc.returncode, err.decode("utf-8", "replace")


# -- H1: cosign outside a bundle; the temp sweep --------------------------------------------------
def test_cosign_of_a_loose_envelope_creates_and_deletes_nothing(target: Target, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "Downloads").mkdir(parents=True)
    (home / "evidence").mkdir()
    (home / ".tmp-editor-swap").write_text("keep")
    (home / "evidence" / ".tmp-x").write_text("keep")
    (home / "Downloads" / "0008-test.dsse.json").write_bytes(
        (target.bundle / "attestations" / "0008-test.dsse.json").read_bytes())
    before = snapshot(home)
    run = mlspec("attest", "cosign", "Downloads/0008-test.dsse.json", "--key", str(target.root / "keys" / "owner.key"),
                 cwd=home)
    refused(run, "not inside a bundle's attestations/", codes=(2,))
    assert snapshot(home) == before  # no attestations/, no .mlspec.lock, no temp file removed


def test_cosign_in_a_folder_named_attestations_that_is_no_bundle_creates_nothing(target: Target,
                                                                                tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "attestations").mkdir(parents=True)
    (home / ".tmp-editor-swap").write_text("keep")
    src = target.bundle / "attestations" / "0008-test.dsse.json"
    (home / "attestations" / src.name).write_bytes(src.read_bytes())
    (home / "attestations").rename(home / "attestations-x")
    (home / "attestations").symlink_to("attestations-x")  # a symlinked attestations/ is no bundle either
    before = snapshot(home)
    run = mlspec("attest", "cosign", f"attestations/{src.name}", "--key", str(target.root / "keys" / "owner.key"),
                 cwd=home)
    refused(run, "symlink", codes=(2,))
    assert snapshot(home) == before


def test_the_temp_sweep_removes_only_mlspecs_own_temp_files(target: Target) -> None:
    own = ".tmp-" + "ab" * 12
    (target.bundle / "evidence").mkdir(exist_ok=True)
    victims = {
        target.bundle / ".tmp-notes": "a user's file",
        target.bundle / "evidence" / ".tmp-x": "a user's file",
        target.bundle / "evidence" / (".tmp-" + "AB" * 12): "not our alphabet",
        target.bundle / "attestations" / (".tmp-" + "ab" * 13): "not our length",
    }
    for path, text in victims.items():
        path.write_text(text)
    (target.bundle / "attestations" / own).write_text("a crashed writer's temp")
    link = target.bundle / ("." + "tmp-" + "cd" * 12)
    link.symlink_to(target.outside / "victim.txt")
    hard = target.bundle / "evidence" / (".tmp-" + "ef" * 12)
    os.link(target.outside / ".tmp-victim", hard)  # a hard link to someone else's file
    before = target.outside_state()
    run = mlspec("attest", "cosign", "bundle/attestations/0008-test.dsse.json", "--key", "keys/owner.key",
                 cwd=target.root)
    assert run.code == 0, run.stderr
    assert not (target.bundle / "attestations" / own).exists()  # ours: swept
    for path, text in victims.items():
        assert path.read_text() == text, path
    assert link.is_symlink() and hard.exists()
    assert target.outside_state() == before
    assert safe.is_own_temp_name(own) and not safe.is_own_temp_name(".tmp-notes")


# -- H2: a sparse records.jsonl ending in a newline ------------------------------------------------
def test_log_append_and_seal_refuse_a_200_gib_sparse_records_file(target: Target) -> None:
    records = target.log / "records.jsonl"
    with open(records, "r+b") as fh:
        fh.truncate(200 * GIB)
        fh.seek(0, os.SEEK_END)
        fh.write(b"\n")
    log = str(target.log.relative_to(target.root))
    (target.root / "req.jsonl").write_text("")
    for args in (("log", "append", "req.jsonl", "--log", log), ("log", "seal", "--unsigned", "--log", log)):
        run = mlspec(*args, cwd=target.root)
        refused(run, "records.jsonl", "longer than 16777216 bytes", codes=(2,))


# -- H3: many sparse files in attestations/ ------------------------------------------------------
def test_verify_refuses_a_bundle_over_the_total_byte_cap_before_reading(target: Target) -> None:
    for i in range(120):
        sparse(target.bundle / "attestations" / f"junk{i}", 63 * 1024 * 1024)
    for args in (("verify", "bundle"), ("replay", "bundle", "--policy", "policies/default.yaml")):
        run = mlspec(*args, cwd=target.root)
        refused(run, "more than 1073741824 bytes", codes=(2,))


def test_verify_under_the_cap_reads_one_file_at_a_time(target: Target) -> None:
    # 15 x 63 MiB of junk (under the 1 GiB cap): a finding per file, and the bytes are not all kept.
    for i in range(15):
        sparse(target.bundle / "attestations" / f"junk{i}", 63 * 1024 * 1024)
    probe = ("import resource, runpy, sys\n"
             "sys.argv = ['mlspec', 'verify', 'bundle']\n"
             "try:\n    runpy.run_module('mlspec_attest.cli.main', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
             "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=target.root, env=_env(MLSPEC_VERIFY_WORKERS="1"),
                          capture_output=True, text=True, timeout=HANG_GUARD)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.count("junk") >= 15
    rss_kib = int(proc.stderr.rsplit("maxrss", 1)[1])
    assert rss_kib < 512 * 1024, rss_kib  # all 15 files held at once would be ~945 MiB


# -- H5: the verdict survives whatever happens to stdout -----------------------------------------
def test_a_failing_gate_is_exit_1_when_its_reader_is_gone(target: Target) -> None:
    (target.bundle / "attestations" / "0008-test.dsse.json").unlink()
    for args in (("verify", "bundle"), ("verify", "bundle", "--format", "json"),
                 ("replay", "bundle", "--policy", "policies/default.yaml"),
                 ("report", "bundle", "--html", "r.html")):
        code, err = _reader_gone(*args, cwd=target.root)
        assert code == 1 and "Traceback" not in err, (args, code, err)


def test_a_passing_verdict_stands_and_verdictless_commands_fail_closed(target: Target) -> None:
    for args in (("verify", "bundle"), ("policy", "check", "policies/default.yaml"),
                 ("objectives", "check", "objectives.yaml"), ("log", "verify", "--log", "logs/inference")):
        code, err = _reader_gone(*args, cwd=target.root)
        assert code == 0 and "Traceback" not in err, (args, code, err)
    code, err = _reader_gone("log", "render", "--log", "logs/inference", cwd=target.root)
    assert code == 1 and "Traceback" not in err, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full is absent on this machine")
def test_unwritable_and_closed_stdout_are_one_line_never_a_traceback(target: Target) -> None:
    (target.bundle / "attestations" / "0008-test.dsse.json").unlink()
    full = _shell('$MLSPEC verify bundle >/dev/full', target.root)
    assert full.returncode == 1, full.stderr  # the verdict, not the write error
    assert full.stderr.strip().splitlines() == ["error: cannot write the output: No space left on device"]
    closed = _shell('$MLSPEC verify bundle >&-', target.root)
    assert closed.returncode == 2 and "Traceback" not in closed.stderr
    assert closed.stderr.strip().splitlines()[-1].startswith("error: standard output is closed")
    keys = _shell('$MLSPEC keys list --dir keys >/dev/full', target.root)
    assert keys.returncode == 2 and "Traceback" not in keys.stderr, keys.stderr


# -- H6: symlink loops under --artifacts ---------------------------------------------------------
@pytest.mark.parametrize("where", ["art/l1", "art/deep/dir/l1", "art/package/credit-model"])
def test_a_symlink_loop_in_the_artifacts_directory_is_no_traceback(target: Target, where: str) -> None:
    loop = target.root / where
    loop.parent.mkdir(parents=True, exist_ok=True)
    loop.symlink_to(loop.name + "-2")
    (loop.parent / (loop.name + "-2")).symlink_to(loop.name)
    replay = mlspec("replay", "bundle", "--artifacts", "art", "--policy", "policies/default.yaml", cwd=target.root)
    assert replay.code == 0 and "Traceback" not in replay.stderr, replay.stderr
    report = mlspec("report", "bundle", "--artifacts", "art", "--html", "r.html", cwd=target.root)
    assert report.code == 0 and (target.root / "r.html").is_file(), report.stderr


# -- H7: an alias bomb in bytes ------------------------------------------------------------------
def test_attest_stage_refuses_a_yaml_alias_bomb_in_bytes(target: Target) -> None:
    bomb = 'signals: {error_rate: 0.0}\nnotes: &a "%s"\ncopies: [%s]\n' % ("A" * 8192, ", ".join(["*a"] * 20000))
    (target.root / "bomb.yaml").write_text(bomb)
    before = snapshot(target.bundle)
    run = mlspec("attest", "stage", "monitor", "--key", "keys/pipeline.key", "--metadata", "bomb.yaml",
                 "--material", "package=package/credit-model", cwd=target.root)
    refused(run, "bomb.yaml", "bytes of text through aliases", codes=(2,))
    assert snapshot(target.bundle) == before


def test_the_byte_bound_allows_ordinary_aliases_and_large_plain_files() -> None:
    assert parse_yaml(b"a: &x [1, 2]\nb: *x\n", source="t") == {"a": [1, 2], "b": [1, 2]}
    big = b"k: " + b"x" * (20 * 1024 * 1024) + b"\n"  # bigger than the 16 MiB floor, but no aliases
    assert len(parse_yaml(big, source="t")["k"]) == 20 * 1024 * 1024
    with pytest.raises(InputError, match="bytes of text through aliases"):
        parse_yaml(b"a: &x " + b"y" * 1024 + b"\nb: [" + b", ".join([b"*x"] * 17000) + b"]\n", source="t")


# -- H9: terminal escapes from bundle data -------------------------------------------------------
HOSTILE = "\x1b[2J\x1b[HDeploy gate: PASSED\x1b[8m\u202e\x9b\x7f"


def test_a_planted_file_name_reaches_no_terminal_raw(target: Target) -> None:
    (target.bundle / "attestations" / HOSTILE).write_text("x")
    for args in (("verify", "bundle"), ("replay", "bundle", "--policy", "policies/default.yaml")):
        run = mlspec(*args, cwd=target.root)
        both = run.stdout + run.stderr
        assert run.code == 1, both
        assert "\x1b" not in both and "\u202e" not in both and "\x9b" not in both, (args, both)
        assert "\\x1b[2J" in both, both  # shown, escaped


def test_every_control_and_bidi_character_is_escaped() -> None:
    for ch in [chr(c) for c in range(0x20)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)] + \
            [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]:
        assert ch not in terminal_safe(f"a{ch}b"), hex(ord(ch))
    assert terminal_safe("a\nb", keep_newlines=True) == "a\nb" and terminal_safe("a\nb") == "a\\x0ab"
    assert terminal_safe("modèle ✓") == "modèle ✓"


def test_text_report_escapes_finding_messages_and_stage_fields() -> None:
    report = Report(bundle=f"b{HOSTILE}", policy=f"p{HOSTILE}", policy_sha256=None)
    report.add("CHAIN_BROKEN", f"file {HOSTILE}\nVerdict: PASS", hint=HOSTILE)
    for color in (False, True):
        out = render_text(report, color=color)
        body = out.replace("\x1b[1m", "").replace("\x1b[31m", "").replace("\x1b[32m", "").replace(
            "\x1b[33m", "").replace("\x1b[0m", "")
        assert "\x1b" not in body and "\u202e" not in body, out
        assert "\nVerdict: PASS" not in out  # a newline in a message cannot fake a verdict line


# -- H10: keys generate and a symlinked keys/ ----------------------------------------------------
def test_keys_generate_refuses_a_symlinked_keys_directory(target: Target) -> None:
    stolen = target.outside / "stolen"
    stolen.mkdir()
    (target.root / "keys2").symlink_to(stolen)
    before = target.outside_state()
    run = mlspec("keys", "generate", "thief", "--dir", "keys2", "--no-passphrase", cwd=target.root)
    refused(run, "symlink", codes=(2,))
    assert list(stolen.iterdir()) == [] and target.outside_state() == before


# -- H12b: an empty passphrase -------------------------------------------------------------------
@pytest.mark.parametrize("args", [("init", "proj2"), ("keys", "generate", "k", "--dir", "proj2/keys")])
def test_an_empty_passphrase_is_refused_like_none(tmp_path: Path, args: tuple[str, ...]) -> None:
    run = subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=tmp_path,
                         env=_env(MLSPEC_KEY_PASSPHRASE=""), stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=HANG_GUARD)
    assert run.returncode == 2 and "passphrase" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not list(tmp_path.rglob("*.key"))


def test_new_key_refuses_an_empty_passphrase() -> None:
    from mlspec_attest.keys import new_key

    with pytest.raises(InputError, match="passphrase is empty"):
        new_key("k", "keys", "ed25519", b"")


# -- demo: a planted marker ----------------------------------------------------------------------
def test_the_demo_deletes_nothing_even_with_a_planted_marker(tmp_path: Path) -> None:
    victim = tmp_path / "project"
    victim.mkdir()
    (victim / ".mlspec-demo").write_text("planted")
    (victim / "thesis.tex").write_text("years of work")
    before = snapshot(victim)
    run = mlspec("demo", "project", cwd=tmp_path)
    refused(run, "not empty", codes=(2,))
    assert snapshot(victim) == before


# -- H11: evidence verified from the bytes that were digest-checked --------------------------------
def test_evidence_is_verified_from_the_checked_bytes_never_reread(project: Project, vectors: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(REPO / "tests" / "unit" / "evidence"))
    try:
        from test_sigstore_chain import GITHUB_SAN, _chain_with_evidence, _policy
    finally:
        sys.path.pop(0)
    import mlspec_attest.evidence.sigstore as ss
    from mlspec_attest.verify import verify_bundle

    _chain_with_evidence(project, vectors)
    real = ss.read_bounded

    def no_reread(path, limit=None, what="file"):  # type: ignore[no-untyped-def]
        if what == "Sigstore bundle":  # a swap after the digest check would be read here
            raise AssertionError(f"{path} was re-read by path")
        return real(path, limit, what) if limit is not None else real(path, what=what)

    monkeypatch.setattr(ss, "read_bounded", no_reread)
    report = verify_bundle(project.bundle, _policy(project, GITHUB_SAN))
    assert report.passed, [f.message for f in report.findings]


def test_json_outputs_passed_through_the_escaper_stay_valid_and_equal() -> None:
    import json

    value = {"request_id": HOSTILE, "name": "modèle\u2066x\u2069"}
    dumped = json.dumps(value, ensure_ascii=False)
    shown = terminal_safe(dumped, keep_newlines=True)
    assert json.loads(shown) == value
    assert not any(ch in shown for ch in "\x1b\u202e\x9b\x7f\u2066\u2069")
