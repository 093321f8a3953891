"""The project: ``mlspec.yaml`` (lets ``mlspec verify bundle/`` run with no flags) and ``mlspec init``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from mlspec_attest._internal.loaders import load_mapping
from mlspec_attest.errors import InputError
from mlspec_attest.keys import PASSPHRASE_ENV, generate, passphrase_from_env_or_tty

PROJECT_FILE = "mlspec.yaml"
_PROJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")


def _refuse_foreign_ancestor(candidate: Path) -> None:
    """An mlspec.yaml above the working directory owned by another (non-root) user is not ours.

    As git's safe.directory: a shared /tmp or a parent directory someone else controls must
    not choose the policy, keys and bundle of every command run below it. One in the working
    directory itself is the operator's choice and is not checked.
    """
    try:
        owner = candidate.stat().st_uid
    except OSError:
        return
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None and owner not in (0, geteuid()):
        raise InputError(f"{candidate}: owned by uid {owner}, not by you; refusing a project file another user "
                         "controls above the working directory (run in your own project, or chown it)")


@dataclass(frozen=True)
class Project:
    root: Path
    policy: Path | None
    bundle: Path | str | None  # a directory, or s3://BUCKET/PREFIX (docs/storage.md)
    key: Path | str | None  # a path, or a key URI (pkcs11:..., awskms:...) kept as written
    objectives: Path | None
    log: Path | None = None  # the inference log the gate checks the signed log attestations against
    head_key: Path | str | None = None  # re-signs head.dsse.json after every append (None: off); a URI for tokens
    head_expires: timedelta = timedelta(hours=24)
    releases: Path | None = None  # the release history (one bundle per release) verify checks predecessors in
    # key file -> the file holding its passphrase (mlspec.yaml ``passphrase_files:``; --passphrase-file wins)
    passphrase_files: tuple[tuple[Path, Path], ...] = ()

    @classmethod
    def find(cls, start: Path | None = None) -> Project | None:
        """The nearest mlspec.yaml at or above ``start`` (the working directory), as git finds a repository.

        Never pass a bundle's location: the project, and so the policy, must be what
        the operator chose, not what was shipped beside the bundle (docs/security.md).
        """
        here = (start or Path.cwd()).resolve()
        for directory in (here, *here.parents):
            candidate = directory / PROJECT_FILE
            if candidate.is_file():
                if directory != here:
                    _refuse_foreign_ancestor(candidate)
                return cls.load(candidate)
        return None

    @classmethod
    def load(cls, path: Path) -> Project:
        data = load_mapping(path, "project file")
        allowed = {"policy", "bundle", "key", "objectives", "version", "log", "head", "releases", "passphrase_files"}
        unknown = set(data) - allowed
        if unknown:
            raise InputError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")

        def rel(name: str) -> Path | None:
            value = data.get(name)
            if value is None:
                return None
            if not isinstance(value, str):
                raise InputError(f"{path}: {name} must be a path")
            return path.parent / value

        bundle_value = data.get("bundle")
        from mlspec_attest.store.base import is_remote

        key = data.get("key")
        uri = isinstance(key, str) and re.match(r"[a-z][a-z0-9+.-]+:", key) is not None
        head_key, head_expires = _parse_head(data.get("head"), path)
        return cls(root=path.parent, policy=rel("policy"),
                   bundle=bundle_value if is_remote(bundle_value) else rel("bundle"),  # s3://... stays a URL
                   key=key if uri else rel("key"), objectives=rel("objectives"), log=rel("log"),
                   head_key=head_key, head_expires=head_expires, releases=rel("releases"),
                   passphrase_files=_parse_passphrase_files(data.get("passphrase_files"), path))


def _parse_passphrase_files(spec: Any, path: Path) -> tuple[tuple[Path, Path], ...]:
    """``passphrase_files: {keys/a.key: ~/.config/mlspec/a.pass}``: one passphrase per key, not one for all."""
    if spec is None:
        return ()
    if not isinstance(spec, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and v
                                             for k, v in spec.items()):
        raise InputError(f"{path}: passphrase_files must map key files to passphrase files, like "
                         "{keys/pipeline.key: ~/.config/mlspec/pipeline.pass}")
    return tuple((path.parent / k, path.parent / Path(v).expanduser()) for k, v in spec.items())


def _parse_head(spec: Any, path: Path) -> tuple[Path | str | None, timedelta]:
    """``head: {key: keys/pipeline.key, expires: 24h}``: who re-signs the chain head on every append."""
    from mlspec_attest.policy import parse_duration

    default = timedelta(hours=24)
    if spec is None:
        return None, default
    if not isinstance(spec, dict) or not isinstance(spec.get("key"), str) or set(spec) - {"key", "expires"}:
        raise InputError(f"{path}: head must be a mapping like {{key: keys/pipeline.key, expires: 24h}}")
    expires = parse_duration(spec["expires"], f"{path}: head.expires") if "expires" in spec else default
    if expires <= timedelta(0):
        raise InputError(f"{path}: head.expires must be a positive duration, e.g. 24h")
    key = spec["key"]
    if re.match(r"[a-z][a-z0-9+.-]+:", key):  # a key on a token (pkcs11:..., securesystemslib URIs)
        return key, expires
    return path.parent / key, expires


PROJECT_TEMPLATE = """\
# mlspec project file: lets 'mlspec verify bundle' and 'mlspec attest stage' run without flags.
version: 1
policy: policies/default.yaml   # the trust policy the gate applies
bundle: bundle                  # where attestations are appended
key: keys/pipeline.key          # the pipeline's signing key (never commit *.key)
objectives: objectives.yaml     # codified success criteria: attest it first
log: logs/inference             # the inference log: verify, replay and report check its signed seals
head:                           # re-sign the chain head (bundle/head.dsse.json) after every append, so
  key: keys/pipeline.key        # deleting the newest attestations is refused; the policy's head.signers
  expires: 24h                  # must name this key. Quiet chains: run 'mlspec attest head' before expiry
"""


def packaged_policy(name: str) -> bytes:
    from importlib import resources  # lazy, like git below: `mlspec verify` reads mlspec.yaml, not these

    return (resources.files("mlspec_attest") / "data" / "policies" / name).read_bytes()


KEY_IGNORE_PATTERN = "*.key"
_GITIGNORE_BLOCK = "# mlspec: private keys never leave this machine\n*.key\n"
_PROBE_NAMES = ("mlspec-probe.key",)


def _git_ignores(directory: Path, names: Iterable[str]) -> bool | None:
    """Whether git ignores every ``directory/name``; None when git or a work tree is not there to ask.

    ``git check-ignore`` is the authority: it applies negations (``!ci.key``), every
    .gitignore up the tree, .git/info/exclude and core.excludesFile exactly as
    ``git add`` will. ``--no-index`` so a tracked file does not hide the rule.
    """
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None:
        return None
    base = directory.resolve()
    paths = [str(base / name) for name in names]
    try:
        done = subprocess.run([git, "-C", str(base), "check-ignore", "--no-index", "--stdin", "-z"],
                              input="\0".join(paths) + "\0", capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode not in (0, 1):  # 128: not a work tree (yet)
        return None
    ignored = {path for path in done.stdout.split("\0") if path}
    return all(path in ignored for path in paths)


def _ends_with_key_rule(text: str) -> bool:
    """Whether the last pattern of a .gitignore is exactly ``*.key`` (nothing after it can negate it)."""
    patterns = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return bool(patterns) and patterns[-1] == KEY_IGNORE_PATTERN


def ensure_keys_ignored(gitignore: Path, names: Iterable[str] = (), *, root: Path | None = None,
                        own_rule: bool = False, verify: bool = True) -> str | None:
    """Make git ignore the private keys ``names`` (``*.key``) next to ``gitignore``; idempotent.

    A ``*.key`` line already in the file proves nothing: a later ``!ci.key``, an
    indented ``  *.key`` or ``*.key<TAB>`` (other patterns for git) let ``git add -A``
    stage the key. So: ask git (``check-ignore``) when it can answer, else look at the
    file's *last* pattern; when in doubt append the block (the last match wins), then
    ask git again. ``own_rule``: the file itself must end with the rule (keys/.gitignore
    travels with the keys). ``verify``: refuse when git still would not ignore them
    afterwards (off for a parent file a deeper one overrides). Every read and write goes
    through _internal/files.py below ``root`` (default: the file's directory): a planted
    symlink, FIFO or hard link is refused, never followed. Returns what was done, or None.
    """
    from mlspec_attest._internal import files as safe

    names = tuple(names) or _PROBE_NAMES
    base = gitignore.parent if root is None else root
    rel = gitignore.relative_to(base)
    directory = gitignore.parent
    safe.make_dirs(base, rel.parent if len(rel.parts) > 1 else "")
    if os.path.lexists(gitignore) and not (gitignore.is_file() and not gitignore.is_symlink()):
        raise InputError(f"{gitignore}: is not a regular file; mlspec must write '{KEY_IGNORE_PATTERN}' there so git "
                         "never stages a private key: move it away and retry; nothing was written")
    text = safe.read_file(rel, root=base, what=".gitignore").decode("utf-8", errors="replace") \
        if safe.exists(rel, root=base) else None
    verdict = _git_ignores(directory, names)
    file_rule = text is not None and _ends_with_key_rule(text)
    if (verdict and (file_rule or not own_rule)) or (verdict is None and file_rule):
        return None
    if file_rule and not verify:
        return None  # already the last rule here: a deeper .gitignore decides, and is fixed next
    if text is None:
        safe.write_file(base, rel, _GITIGNORE_BLOCK.encode("utf-8"), replace=False, what=".gitignore")
        done = f"wrote {gitignore} (ignores {KEY_IGNORE_PATTERN})"
    else:
        separator = "" if text == "" or text.endswith("\n") else "\n"
        with safe.open_append(base, rel, what=".gitignore") as handle:
            handle.write((separator + _GITIGNORE_BLOCK).encode("utf-8"))
        done = f"appended {KEY_IGNORE_PATTERN} to {gitignore}"
    if verify and _git_ignores(directory, names) is False:
        raise InputError(f"{gitignore}: git still would not ignore {', '.join(names)} after appending "
                         f"'{KEY_IGNORE_PATTERN}' (see 'git check-ignore -v --no-index'); nothing else was written")
    return done


def ignore_keys(directory: Path, names: Iterable[str] = ()) -> list[str]:
    """Make git ignore the private keys ``names`` in ``directory/keys``; idempotent.

    Why two files: the project's ``.gitignore`` may already exist (a user's own,
    possibly with ``!`` negations); ``keys/.gitignore`` is deeper, so it wins over
    any pattern above it and ``git add -A`` never stages a private key.
    """
    names = tuple(names)
    top = directory / ".gitignore"
    if os.path.islink(top):  # planted or the user's own: never written through; keys/.gitignore still covers
        first: str | None = f"left {top} alone: it is a symlink ({directory / 'keys' / '.gitignore'} ignores the keys)"
    else:
        first = ensure_keys_ignored(top, [f"keys/{n}" for n in names], root=directory, verify=False)
    done = (first, ensure_keys_ignored(directory / "keys" / ".gitignore", names, root=directory, own_rule=True))
    return [line for line in done if line]


TEMPLATE_PROJECT = "my-model"  # the project name the shipped policies and objectives template carry


def project_name(directory: Path, given: str | None) -> str:
    """The project name the policies pin and objectives.yaml declares: given, or the directory's name."""
    name = given if given is not None else re.sub(r"[^A-Za-z0-9_.-]+", "-", directory.resolve().name).strip("-.")
    if not _PROJECT_NAME.fullmatch(name or ""):
        if given is not None:
            raise InputError(f"--project {given!r}: start with a letter and use only letters, digits, '_', '.', '-'")
        name = TEMPLATE_PROJECT
    return name


def _with_project(text: str, name: str) -> str:
    return text.replace(f"project: {TEMPLATE_PROJECT}", f"project: {name}")


def init_project(directory: Path, encrypt: bool = True, passphrase: bytes | None = None,
                 project: str | None = None) -> list[str]:
    """Create mlspec.yaml, policies/default.yaml, keys, objectives.yaml and bundle/; return what was done.

    Keys are encrypted unless ``encrypt`` is False (``--no-passphrase``): with no
    passphrase given, none in the environment and no terminal, nothing is written
    and an InputError says how to proceed (``mlspec keys generate`` does the same).
    """
    from mlspec_attest._internal import files as safe
    from mlspec_attest.objectives.criteria import OBJECTIVES_TEMPLATE

    pinned = project_name(directory, project)

    project_file = directory / PROJECT_FILE
    if os.path.lexists(project_file):
        raise InputError(f"{project_file}: already exists; this directory is already an mlspec project")
    if encrypt and passphrase is None:
        passphrase = passphrase_from_env_or_tty("Passphrase for the new keys", confirm=True)
    if encrypt and not passphrase:
        raise InputError(f"{directory}: no passphrase for the new keys: set {PASSPHRASE_ENV}, run on a "
                         "terminal, or pass --no-passphrase (throwaway projects only); nothing was written")
    # Ignore the keys before they exist: a crash in between must not leave them stageable. First, so an
    # unusable .gitignore is refused before anything else is created.
    lines = ignore_keys(directory, ("owner.key", "pipeline.key"))
    for folder in ("keys", "policies", "bundle/attestations"):
        safe.make_dirs(directory, folder)  # a planted symlink at any of them is refused, never followed
    if not encrypt:
        lines.append("warning: --no-passphrase: the private keys are written UNENCRYPTED")
    for name in ("owner", "pipeline"):
        priv, pub, key = generate(name, directory / "keys", "ed25519", passphrase if encrypt else None)
        lines.append(f"wrote {priv} and {pub} (keyid {key.keyid[:16]}…)")
    for policy in ("default.yaml", "minimal.yaml"):
        safe.write_file(directory, f"policies/{policy}",
                        _with_project(packaged_policy(policy).decode("utf-8"), pinned).encode("utf-8"), what="policy")
    lines.append(f"wrote {directory / 'policies'}/default.yaml and minimal.yaml (objectives pinned to project {pinned})")
    safe.write_file(directory, "objectives.yaml", _with_project(OBJECTIVES_TEMPLATE, pinned).encode("utf-8"),
                    what="objectives")
    lines.append(f"wrote {directory / 'objectives.yaml'} (edit the criteria, then 'mlspec objectives check')")
    safe.write_file(directory, PROJECT_FILE, PROJECT_TEMPLATE.encode("utf-8"), replace=False, what="project file")
    lines.append(f"wrote {project_file}")
    lines.append("next: mlspec attest stage objectives --key keys/owner.key --metadata objectives.yaml")
    return lines


def copy_policy(name: str, dest: Path) -> None:
    from mlspec_attest._internal.files import make_dirs, write_file

    make_dirs(dest.parent, "")
    write_file(dest.parent, dest.name, packaged_policy(name), what="policy")
