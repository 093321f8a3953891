"""How commands find their defaults: the project file, found from the working directory only.

The trust root is whatever the operator's working directory says, never what lies
next to the bundle: whoever ships ``release/{bundle, mlspec.yaml, keys}`` must not
choose the rules the gate applies (docs/security.md, "trust root shipped with the
bundle"). Every command that resolves a policy goes through ``resolve_policy`` and
says on stderr which policy file and which keys it used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from mlspec_attest.errors import InputError

NO_POLICY = "no --policy given and no mlspec.yaml found from the working directory " \
            "(run the command inside your project, or pass --policy FILE)"


def project_from_cwd() -> Any:
    """The project of the working directory (or its parents), as git finds its repository."""
    from mlspec_attest.project import Project

    return Project.find()


_KEY_URI = re.compile(r"[a-z][a-z0-9+.-]+:")  # the test Project.load applies to key: values


def in_project(value: str | os.PathLike[str]) -> str:
    """A relative path given on the command line, resolved as docs/ci.md "Paths" says.

    Inside a project (an mlspec.yaml above the working directory) a relative path means:
    the working directory's file when it exists there; the project root's when it exists
    only there (so ``keys/pipeline.key`` means the same file from any subdirectory, as the
    paths in mlspec.yaml do); and when both exist and are different files, nothing: exit 2,
    naming both (an ancestor's mlspec.yaml must not silently swap the operator's bundle or
    policy for its own). ``./PATH`` and ``../PATH`` always mean the working directory. A path
    that exists nowhere yet (an output) goes where its directory exists, by the same rule.
    Outside a project, and for absolute paths and key URIs, the value is unchanged.
    """
    text = os.fspath(value)
    if not text or text == "-" or os.path.isabs(text) or _KEY_URI.match(text):
        return text  # stdin, an absolute path, or a key URI (pkcs11:..., awskms:...) as mlspec.yaml keeps them
    if text in (".", "..") or text.startswith(("./", "../", ".\\", "..\\")):
        return text  # explicitly the working directory's
    project = project_from_cwd()
    if project is None or project.root.resolve() == Path.cwd().resolve():
        return text  # at the root (or with no project) the working directory is the root
    root = project.root.resolve()
    chosen = _existing_side(text, root)
    if chosen is None:  # exists nowhere yet: follow its directory
        parent = os.path.dirname(text.rstrip("/"))
        chosen = _existing_side(parent, root) if parent else None
        if chosen != "root":
            return str(Path.cwd() / text)  # named in full, so an error says which directory was meant
    return str(root / text) if chosen == "root" else text


def _existing_side(text: str, root: Path) -> str | None:
    """"here", "root" or None: where relative ``text`` exists; both and different is an input error."""
    here, there = Path.cwd() / text, root / text
    at_here, at_root = os.path.lexists(here), os.path.lexists(there)
    if at_here and at_root:
        try:
            if os.path.samefile(here, there):
                return "here"
        except OSError:
            pass
        raise InputError(f"{text}: ambiguous: both {here.resolve()} (the working directory's) and {there} "
                         f"(the project root's, {root / 'mlspec.yaml'}) exist; give an absolute path, "
                         f"or ./{text} for the working directory's")
    if at_here:
        return "here"
    return "root" if at_root else None


def in_project_spec(spec: str) -> str:
    """``[ROLE=]PATH`` (``--material``, ``--product``, ``--fingerprints``) with PATH resolved as :func:`in_project`."""
    role, sep, rest = spec.partition("=")
    if sep and role and rest and all(c.isalnum() or c in "-_" for c in role):
        return f"{role}={in_project(rest)}"
    return in_project(spec)


class ProjectPath(click.Path):
    """``click.Path`` whose relative values resolve against the project root (see :func:`in_project`)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (str, os.PathLike)):
            value = in_project(value)
        return super().convert(value, param, ctx)


def resolve_policy(policy: str | None, bundle: str | None = None, *, required: bool = True) -> tuple[str, str] | None:
    """``(path, origin)``: ``--policy``, else the policy of the working directory's mlspec.yaml.

    ``bundle`` is deliberately never consulted: a bundle's location is not a place to
    look for trust. None when no policy is found and ``required`` is false.
    """
    if policy:
        return policy, "from --policy"
    project = project_from_cwd()
    if project is None or project.policy is None:
        if required:
            raise InputError(NO_POLICY)
        return None
    return str(project.policy), f"from {project.root / 'mlspec.yaml'}, found from the working directory"


def resolve_log(log: str | None, bundle: str | None = None) -> str | None:
    """--log, else the working directory's mlspec.yaml ``log:``, else None (the gate then decides).

    Found like the policy, from the working directory only: a log directory named by an
    mlspec.yaml shipped beside the bundle is the shipper's choice, not the operator's.
    ``bundle`` is deliberately never consulted.
    """
    if log:
        return log
    project = project_from_cwd()
    return str(project.log) if project is not None and project.log is not None else None


def resolve_releases(releases: str | None) -> str | None:
    """--releases, else the working directory's mlspec.yaml ``releases:``, else None (found like the log:
    the release history the gate trusts is the operator's choice, never one shipped beside the bundle)."""
    if releases:
        return releases
    project = project_from_cwd()
    return str(project.releases) if project is not None and project.releases is not None else None


def resolve_bundle(bundle: str | None) -> str | None:
    """--bundle, else the working directory's mlspec.yaml ``bundle:``, else None."""
    if bundle:
        return bundle
    project = project_from_cwd()
    return str(project.bundle) if project is not None and project.bundle is not None else None


def load_policy(policy: str | None, bundle: str | None = None, *, required: bool = True) -> tuple[Any, str]:
    """``(Policy, origin)`` resolved as ``resolve_policy`` says; ``(None, "")`` when optional and absent."""
    found = resolve_policy(policy, bundle, required=required)
    if found is None:
        return None, ""
    from mlspec_attest.policy import Policy

    return Policy.from_file(found[0]), found[1]


def announce_trust(policy: Any, origin: str) -> None:
    """Say on stderr which policy file and keys the command used (after it ran, so errors stay one line)."""
    from pathlib import Path

    if policy is None:
        click.echo("policy: none (signatures unchecked; pass --policy or run inside your project)", err=True)
        return
    click.echo(f"policy: {policy.source} ({origin}; sha256 {policy.digest[:16]}…)", err=True)
    for name, key in policy.keys.items():
        shown = Path(key.source).resolve() if key.source else "(inline)"
        click.echo(f"  key {name}: {shown} (keyid {key.keyid[:16]}…)", err=True)


def project_head_signing(project: Any, signers: dict[str, Any] | None = None, *, believe: Any = None) -> Any:
    """The project's ``head:`` as a HeadSigning (None when the project configures none).

    ``signers`` maps key paths already loaded for this command to their Signer, so a key
    used for the stage and the head is unlocked (and its passphrase asked) once. ``believe``:
    an AppendGate whose head signers' heads are believed too, and none by a key it revokes
    (attest/head.py), for writers not handed the gate itself (an Attestor given ``policy=``
    takes both from it).
    """
    if project is None or project.head_key is None:
        return None
    from mlspec_attest.attest.head import HeadSigning
    from mlspec_attest.keys import load_signer

    loaded = signers or {}
    key = str(project.head_key)
    signer = loaded.get(key) or load_signer(key)
    if believe is None:
        return HeadSigning((signer,), project.head_expires)
    return HeadSigning((signer,), project.head_expires, also_trust=believe.head_keys(),
                       distrust=believe.distrusted_keyids())


def project_append_gate(policy_path: str | None = None) -> Any:
    """The gate's rules for an append: --policy, else mlspec.yaml's policy: (a named file must load), else None."""
    found = resolve_policy(policy_path, required=False)
    if found is None:
        return None
    from mlspec_attest.verify.preflight import AppendGate

    return AppendGate.from_file(found[0])
