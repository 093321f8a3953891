"""What ran: the ``run`` block every attestation carries (docs/format.md, "What ran").

in-toto links record the command and its environment (``in_toto/runlib.py``), witness
attestors the git commit, the environment and the CI job. We record the same things,
captured automatically and cheaply (no ``pip freeze``; ``importlib.metadata`` only):

* ``command``: the process's argv, passed through the secret redactor (attest/redaction.py)
  so ``--password=...`` or a token in a URL is never signed in clear;
* ``git``: ``{commit, dirty, untracked}`` of the project's work tree (absent without git);
* ``python`` and ``distributions``: the interpreter and the installed name==version list;
* ``lockfiles``: the digest of each lockfile at the project root;
* ``container``: an image digest the environment states (``MLSPEC_CONTAINER_IMAGE_DIGEST``)
  or podman's ``/run/.containerenv``;
* ``environment``: an allow-list of CI job identifiers, never the whole environment.

All of it is self-reported by whoever runs the stage: it records, it does not prove
(docs/security.md, "What ran").
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlspec_attest.errors import InputError

# CI job identifiers worth signing (GitHub Actions, GitLab CI, Buildkite, Jenkins, CircleCI, Azure,
# Tekton/Argo by our own names). Values are redacted like the command line; nothing else is read.
CI_ENVIRONMENT = (
    "CI",
    "GITHUB_ACTIONS", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_RUN_NUMBER", "GITHUB_JOB", "GITHUB_WORKFLOW",
    "GITHUB_WORKFLOW_REF", "GITHUB_WORKFLOW_SHA", "GITHUB_REPOSITORY", "GITHUB_REPOSITORY_ID", "GITHUB_SHA",
    "GITHUB_REF", "GITHUB_EVENT_NAME", "GITHUB_ACTOR", "GITHUB_SERVER_URL", "RUNNER_OS", "RUNNER_ENVIRONMENT",
    "GITLAB_CI", "CI_JOB_ID", "CI_JOB_NAME", "CI_JOB_URL", "CI_JOB_IMAGE", "CI_PIPELINE_ID", "CI_PIPELINE_URL",
    "CI_PROJECT_PATH", "CI_PROJECT_ID", "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME", "CI_SERVER_URL", "CI_RUNNER_ID",
    "BUILDKITE", "BUILDKITE_BUILD_ID", "BUILDKITE_BUILD_NUMBER", "BUILDKITE_BUILD_URL", "BUILDKITE_JOB_ID",
    "BUILDKITE_PIPELINE_SLUG", "BUILDKITE_COMMIT", "BUILDKITE_BRANCH",
    "JENKINS_URL", "BUILD_ID", "BUILD_NUMBER", "BUILD_URL", "JOB_NAME", "GIT_COMMIT",
    "CIRCLECI", "CIRCLE_BUILD_NUM", "CIRCLE_BUILD_URL", "CIRCLE_WORKFLOW_ID", "CIRCLE_JOB", "CIRCLE_SHA1",
    "CIRCLE_PROJECT_USERNAME", "CIRCLE_PROJECT_REPONAME",
    "TF_BUILD", "BUILD_BUILDID", "BUILD_SOURCEVERSION", "SYSTEM_TEAMPROJECT",
    "MLSPEC_CONTAINER_IMAGE",
)
CONTAINER_DIGEST_ENV = "MLSPEC_CONTAINER_IMAGE_DIGEST"
CONTAINER_IMAGE_ENVS = ("MLSPEC_CONTAINER_IMAGE", "CI_JOB_IMAGE")
PODMAN_CONTAINERENV = Path("/run/.containerenv")
# Lockfiles at the project root whose digest is recorded (the exact dependency set, when one is kept).
LOCKFILE_PATTERNS = ("requirements*.txt", "uv.lock", "poetry.lock", "Pipfile.lock", "pdm.lock")
MAX_ENV_VALUE = 2048  # a longer "job id" is not one: left out rather than signed
MAX_LOCKFILES = 32
MAX_LISTED_DISTRIBUTIONS = 1000  # above this only the count and the digest are recorded
GIT_TIMEOUT = 20.0
_GIT_REDIRECTS = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
                            "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES",
                            "GIT_DISCOVERY_ACROSS_FILESYSTEM"})
_IMAGE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_GIT_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Configuration keys through which a repository names a program git status could run.
_FILTER_KEYS = re.compile(r"filter\.(.+)\.(?:clean|smudge|process|required)")
# Neutralised for every run: hooks, an external diff, fsmonitor (status runs none of the first two
# today; they are switched off so a future git does not start to).
_GIT_NEUTRAL = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "diff.external=",
                "-c", "core.untrackedCache=false")
MAX_SUBMODULE_DEPTH = 8


def capture(base_dir: Path, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
            ) -> tuple[dict[str, Any], list[str]]:
    """The captured fields of ``run`` and the JSON pointers (into ``run``) that were redacted.

    ``argv``/``environ`` default to the process's; ``base_dir`` is the project root whose
    git work tree and lockfiles are described. Fields the environment lacks are absent.
    """
    from mlspec_attest.attest.redaction import redact_all

    argv = list(sys.argv if argv is None else argv)
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if argv and any(argv):
        raw["command"] = [str(a) for a in argv]
    environment = {name: env[name] for name in CI_ENVIRONMENT
                   if name in env and env[name] and len(env[name]) <= MAX_ENV_VALUE}
    if environment:
        raw["environment"] = environment
    redaction = redact_all(raw)
    fields: dict[str, Any] = dict(redaction.metadata)
    git = git_state(base_dir)
    if git is not None:
        fields["git"] = git
    fields["python"] = {"version": platform.python_version(), "implementation": platform.python_implementation()}
    fields["distributions"] = distributions()
    locks = lockfiles(base_dir)
    if locks:
        fields["lockfiles"] = locks
    container = container_image(env)
    if container:
        fields["container"] = container
    return fields, redaction.pointers


def _git_env() -> dict[str, str]:
    """The process environment minus variables that point git at another repository; no optional locks."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_REDIRECTS}
    env.update(GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    return env


def _run_git(git: str, base_dir: Path, options: Sequence[str], *args: str) -> str | None:
    """stdout of one git command (None when it fails); never reads stdin."""
    try:
        done = subprocess.run([git, *options, "-C", str(base_dir), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, check=False, env=_git_env(), stdin=subprocess.DEVNULL,
                              errors="surrogateescape")
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def configured_filters(git: str, base_dir: Path, depth: int = 0) -> set[str] | None:
    """Names of the filter drivers the configuration of ``base_dir`` (and its submodules') defines.

    ``git config --get-regexp`` only reads configuration (includes too); it executes nothing.
    Submodules are read because ``git status`` recurses into them with their own config.
    None when the configuration cannot be read: then nothing is described (fail closed).
    """
    listed = subprocess.run([git, *_GIT_NEUTRAL, "-C", str(base_dir), "config", "--null", "--get-regexp",
                             r"^filter\..*\.(clean|smudge|process|required)$"],
                            capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False, env=_git_env(),
                            stdin=subprocess.DEVNULL, errors="surrogateescape")
    if listed.returncode not in (0, 1):  # 1: no such key
        return None
    names: set[str] = set()
    for item in listed.stdout.split("\0"):
        key = item.split("\n", 1)[0]
        matched = _FILTER_KEYS.fullmatch(key)
        if matched:
            names.add(matched.group(1))
    if depth >= MAX_SUBMODULE_DEPTH:
        return names
    staged = _run_git(git, base_dir, _GIT_NEUTRAL, "ls-files", "--stage", "-z")
    if staged is None:
        return None
    for entry in staged.split("\0"):
        if entry.startswith("160000 "):  # a gitlink: "mode sha stage\tpath"
            sub = base_dir / entry.split("\t", 1)[1]
            if (sub / ".git").exists():
                inner = configured_filters(git, sub, depth + 1)
                if inner is None:
                    return None
                names |= inner
    return names


def git_state(base_dir: Path) -> dict[str, Any] | None:
    """``{commit, dirty, untracked, filters}`` of the work tree holding ``base_dir``; None without git or a work tree.

    ``dirty``: ``git status --porcelain`` lists anything - a tracked change (staged or not)
    or a file git neither tracks nor ignores (an untracked ``train2.py`` may be what ran);
    ``untracked``: the latter alone. Describing a repository runs no program its config names:
    ``core.fsmonitor``, hooks and an external diff are switched off, and every configured
    filter driver (``filter.NAME.clean/smudge/process``, e.g. git-lfs) is neutralised on the
    command line, so content is compared raw and cannot be made to look clean by a filter.
    ``filters`` lists the neutralised drivers' names (a tree using git-lfs then reads as dirty).
    """
    git = shutil.which("git")
    if git is None:
        return None
    try:
        filters = configured_filters(git, base_dir)
    except (OSError, subprocess.SubprocessError):
        return None
    if filters is None:
        return None
    options: list[str] = list(_GIT_NEUTRAL)
    for name in sorted(filters):
        options += ["-c", f"filter.{name}.clean=", "-c", f"filter.{name}.smudge=",
                    "-c", f"filter.{name}.process=", "-c", f"filter.{name}.required=false"]

    def run(*args: str) -> str | None:
        return _run_git(git, base_dir, options, *args)

    commit = run("rev-parse", "--verify", "--quiet", "HEAD")
    if commit is None or not _GIT_COMMIT.fullmatch(commit.strip()):
        return None  # not a work tree, or no commit yet
    status = run("status", "--porcelain=v1", "-z", "--untracked-files=normal", "--ignore-submodules=none")
    if status is None:
        return None
    dirty = untracked = False
    entries = iter(status.split("\0"))
    for entry in entries:  # "XY path"; a rename or copy is followed by its original path
        code = entry[:2]
        if len(entry) < 4:
            continue
        dirty = True  # git status --porcelain lists nothing ignored: any line is a difference from the commit
        if code == "??":
            untracked = True
        elif "R" in code or "C" in code:
            next(entries, None)
    if not dirty:
        # Files marked assume-unchanged or skip-worktree are hidden from status even when edited:
        # a tree holding any is not known to be the commit's.
        listed = run("ls-files", "-v", "-z")
        if listed is None:
            return None
        dirty = any(entry[:1].islower() or entry[:1] == "S" for entry in listed.split("\0") if entry)
    out: dict[str, Any] = {"commit": commit.strip(), "dirty": dirty, "untracked": untracked}
    if filters:
        out["filters"] = sorted(filters)
    return out


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[str, ...]:
    """Sorted, de-duplicated ``name==version`` of every installed distribution (the first one found wins)."""
    from importlib import metadata

    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata is not None else None
        if not name:
            continue
        canonical = re.sub(r"[-_.]+", "-", str(name)).lower()
        seen.setdefault(canonical, str(dist.version))
    return tuple(sorted(f"{name}=={version}" for name, version in seen.items()))


def distributions() -> dict[str, Any]:
    """``{count, sha256, list}``: the installed distributions (read once a process; ``list`` omitted when huge).

    ``sha256`` is over the sorted lines joined by newlines (with a final one), so
    ``sha256sum`` of the same list written one a line reproduces it.
    """
    lines = _installed()
    text = "".join(line + "\n" for line in lines)
    out: dict[str, Any] = {"count": len(lines), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    if len(lines) <= MAX_LISTED_DISTRIBUTIONS:
        out["list"] = list(lines)
    return out


def lockfiles(base_dir: Path) -> list[dict[str, Any]]:
    """Resource descriptors of the regular lockfiles at the project root (symlinks and special files skipped)."""
    import stat

    from mlspec_attest.digests import sha256_file

    found: set[Path] = set()
    for pattern in LOCKFILE_PATTERNS:
        try:
            found.update(base_dir.glob(pattern))
        except OSError:
            continue
    out: list[dict[str, Any]] = []
    for path in sorted(found)[:MAX_LOCKFILES]:
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                continue
            sha256, _ = sha256_file(path)
        except (OSError, InputError):
            continue
        out.append({"name": path.name, "digest": {"sha256": sha256}})
    return out


def container_image(environ: Mapping[str, str]) -> dict[str, Any]:
    """``{image, digest, imageId}`` as far as the environment states them (empty outside a known container).

    An image digest is only what the environment says: ``MLSPEC_CONTAINER_IMAGE_DIGEST``
    (set it from the digest you pulled, e.g. in the job spec), or podman's
    ``/run/.containerenv`` (``image=`` and ``imageid=``). /proc/self/cgroup names no image
    and is not used. A malformed digest is an input error, never signed.
    """
    out: dict[str, Any] = {}
    digest = environ.get(CONTAINER_DIGEST_ENV)
    if digest:
        if not _IMAGE_DIGEST.fullmatch(digest):
            raise InputError(f"{CONTAINER_DIGEST_ENV}: must be sha256:<64 lowercase hex digits> "
                             "(the image's repository digest); fix or unset it")
        out["digest"] = digest
    image = next((environ[n] for n in CONTAINER_IMAGE_ENVS if environ.get(n)), None)
    try:
        text = PODMAN_CONTAINERENV.read_text(encoding="utf-8", errors="replace")[:65536]
    except OSError:
        text = ""
    podman = dict(re.findall(r'(?m)^(image|imageid)="([^"\n]{1,512})"$', text))
    image = image or podman.get("image")
    if image and len(image) <= MAX_ENV_VALUE:
        from mlspec_attest.attest.redaction import secret_pattern

        if not secret_pattern(image):  # registry credentials in an image reference are not signed
            out["image"] = image
    if re.fullmatch(r"[0-9a-f]{64}", podman.get("imageid", "")):
        out["imageId"] = "sha256:" + podman["imageid"]
    return out
