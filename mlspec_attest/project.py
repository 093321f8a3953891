"""The project: ``mlspec.yaml`` (lets ``mlspec verify bundle/`` run with no flags) and ``mlspec init``."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

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
    head_key: Path | None = None  # re-signs head.dsse.json after every append (None: off)
    head_expires: timedelta = timedelta(hours=24)

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
                return cls.load(candidate)
        return None

    @classmethod
    def load(cls, path: Path) -> Project:
        data = load_mapping(path, "project file")
        allowed = {"policy", "bundle", "key", "objectives", "version", "head"}
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

        head_key, head_expires = _parse_head(data.get("head"), path)
        return cls(root=path.parent, policy=rel("policy"), bundle=rel("bundle"), key=rel("key"),
                   objectives=rel("objectives"), head_key=head_key, head_expires=head_expires)


def _parse_head(spec: Any, path: Path) -> tuple[Path | None, timedelta]:
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
    return path.parent / spec["key"], expires


PROJECT_TEMPLATE = """\
# mlspec project file: lets 'mlspec verify bundle' and 'mlspec attest stage' run without flags.
version: 1
policy: policies/default.yaml   # the trust policy the gate applies
bundle: bundle                  # where attestations are appended
key: keys/pipeline.key          # the pipeline's signing key (never commit *.key)
objectives: objectives.yaml     # codified success criteria: attest it first
head:                           # re-sign the chain head (bundle/head.dsse.json) after every append, so
  key: keys/pipeline.key        # deleting the newest attestations is refused; the policy's head.signers
  expires: 24h                  # must name this key. Quiet chains: run 'mlspec attest head' before expiry
"""


def packaged_policy(name: str) -> bytes:
    return resources.files("mlspec_attest").joinpath("data", "policies", name).read_bytes()


def init_project(directory: Path, encrypt: bool = True, passphrase: bytes | None = None) -> list[str]:
    """Create mlspec.yaml, policies/default.yaml, keys, objectives.yaml and bundle/; return what was done."""
    from mlspec_attest.objectives.criteria import OBJECTIVES_TEMPLATE

    directory.mkdir(parents=True, exist_ok=True)
    project_file = directory / PROJECT_FILE
    if project_file.exists():
        raise InputError(f"{project_file}: already exists; this directory is already an mlspec project")
    lines: list[str] = []
    if encrypt and passphrase is None:
        passphrase = passphrase_from_env_or_tty("Passphrase for the new keys", confirm=True)
        if passphrase is None:
            lines.append(f"warning: {PASSPHRASE_ENV} is not set and there is no terminal: keys are written "
                         "UNENCRYPTED (set the variable to encrypt them)")
    for name in ("owner", "pipeline"):
        priv, pub, key = generate(name, directory / "keys", "ed25519", passphrase if encrypt else None)
        lines.append(f"wrote {priv} and {pub} (keyid {key.keyid[:16]}…)")
    (directory / "policies").mkdir(exist_ok=True)
    for policy in ("default.yaml", "minimal.yaml"):
        (directory / "policies" / policy).write_bytes(packaged_policy(policy))
    lines.append(f"wrote {directory / 'policies'}/default.yaml and minimal.yaml")
    (directory / "objectives.yaml").write_text(OBJECTIVES_TEMPLATE, encoding="utf-8")
    lines.append(f"wrote {directory / 'objectives.yaml'} (edit the criteria, then 'mlspec objectives check')")
    (directory / "bundle" / "attestations").mkdir(parents=True, exist_ok=True)
    project_file.write_text(PROJECT_TEMPLATE, encoding="utf-8")
    gitignore = directory / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("# private keys never leave this machine\n*.key\n", encoding="utf-8")
    lines.append(f"wrote {project_file}")
    lines.append("next: mlspec attest stage objectives --key keys/owner.key --metadata objectives.yaml")
    return lines


def copy_policy(name: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("mlspec_attest").joinpath("data", "policies", name)) as src:
        shutil.copyfile(src, dest)
