"""The project: ``mlspec.yaml`` (lets ``mlspec verify bundle/`` run with no flags) and ``mlspec init``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mlspec_attest._internal.loaders import load_mapping
from mlspec_attest.errors import InputError
from mlspec_attest.keys import PASSPHRASE_ENV, generate, passphrase_from_env_or_tty

PROJECT_FILE = "mlspec.yaml"


@dataclass(frozen=True)
class Project:
    root: Path
    policy: Path | None
    bundle: Path | None
    key: Path | None
    objectives: Path | None

    @classmethod
    def find(cls, start: Path | None = None) -> Project | None:
        here = (start or Path.cwd()).resolve()
        for directory in (here, *here.parents):
            candidate = directory / PROJECT_FILE
            if candidate.is_file():
                return cls.load(candidate)
        return None

    @classmethod
    def load(cls, path: Path) -> Project:
        data = load_mapping(path, "project file")
        allowed = {"policy", "bundle", "key", "objectives", "version"}
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

        return cls(root=path.parent, policy=rel("policy"), bundle=rel("bundle"), key=rel("key"),
                   objectives=rel("objectives"))


PROJECT_TEMPLATE = """\
# mlspec project file: lets 'mlspec verify bundle' and 'mlspec attest stage' run without flags.
version: 1
policy: policies/default.yaml   # the trust policy the gate applies
bundle: bundle                  # where attestations are appended
key: keys/pipeline.key          # the pipeline's signing key (never commit *.key)
objectives: objectives.yaml     # codified success criteria: attest it first
"""


def packaged_policy(name: str) -> bytes:
    return resources.files("mlspec_attest").joinpath("data", "policies", name).read_bytes()


def init_project(directory: Path, encrypt: bool = True, passphrase: bytes | None = None) -> list[str]:
    """Create mlspec.yaml, policies/default.yaml, keys, objectives.yaml and bundle/; return what was done."""
    from mlspec_attest._internal import files as safe
    from mlspec_attest.objectives.criteria import OBJECTIVES_TEMPLATE

    project_file = directory / PROJECT_FILE
    if os.path.lexists(project_file):
        raise InputError(f"{project_file}: already exists; this directory is already an mlspec project")
    for folder in ("keys", "policies", "bundle/attestations"):
        safe.make_dirs(directory, folder)  # a planted symlink at any of them is refused, never followed
    lines: list[str] = []
    if encrypt and passphrase is None:
        passphrase = passphrase_from_env_or_tty("Passphrase for the new keys", confirm=True)
        if passphrase is None:
            lines.append(f"warning: {PASSPHRASE_ENV} is not set and there is no terminal: keys are written "
                         "UNENCRYPTED (set the variable to encrypt them)")
    for name in ("owner", "pipeline"):
        priv, pub, key = generate(name, directory / "keys", "ed25519", passphrase if encrypt else None)
        lines.append(f"wrote {priv} and {pub} (keyid {key.keyid[:16]}…)")
    for policy in ("default.yaml", "minimal.yaml"):
        safe.write_file(directory, f"policies/{policy}", packaged_policy(policy), what="policy")
    lines.append(f"wrote {directory / 'policies'}/default.yaml and minimal.yaml")
    safe.write_file(directory, "objectives.yaml", OBJECTIVES_TEMPLATE.encode("utf-8"), what="objectives")
    lines.append(f"wrote {directory / 'objectives.yaml'} (edit the criteria, then 'mlspec objectives check')")
    safe.write_file(directory, PROJECT_FILE, PROJECT_TEMPLATE.encode("utf-8"), replace=False, what="project file")
    if not safe.exists(".gitignore", root=directory):
        safe.write_file(directory, ".gitignore", b"# private keys never leave this machine\n*.key\n",
                        replace=False, what=".gitignore")
    lines.append(f"wrote {project_file}")
    lines.append("next: mlspec attest stage objectives --key keys/owner.key --metadata objectives.yaml")
    return lines


def copy_policy(name: str, dest: Path) -> None:
    from mlspec_attest._internal.files import write_file

    write_file(dest.parent, dest.name, packaged_policy(name), what="policy")
