"""Key rotation as a reviewed policy change: the new key is trusted, the old one revoked from now.

``plan_rotation`` computes the change without touching anything; the CLI shows
it as a unified diff and only then writes the new key and the policy (atomically).

What the change says, for a key named NAME:

* ``keys.NAME`` becomes the new key (keyid pinned), so every stage and head rule
  that names NAME trusts it without hand edits;
* the old key stays under ``keys.NAME-retired-STAMP`` (keyid pinned) and is added
  beside NAME only where one signature is enough (threshold 1), so attestations it
  signed before the rotation still verify; where a threshold is above 1 it is not
  added: one holder's old and new keys must never count as two signers;
* ``revoked`` gains ``{keyid: OLD, after: NOW}``: anything the old key signs
  claiming a time from now on is refused (``KEY_REVOKED``).
"""

from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from mlspec_attest._internal.loaders import load_mapping, read_bounded
from mlspec_attest.errors import InputError
from mlspec_attest.keys import PublicKey
from mlspec_attest.policy import Policy


class _PolicyDumper(yaml.SafeDumper):
    """Safe YAML out; multi-line strings (inline PEM keys) as literal blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_PolicyDumper.add_representer(str, _str_representer)


def dump_policy(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_PolicyDumper, sort_keys=False, default_flow_style=None, allow_unicode=True,
                     width=100)


@dataclass(frozen=True)
class RotationPlan:
    """The policy before and after; nothing is written until :meth:`write_policy`."""

    policy_path: Path
    name: str
    old: PublicKey
    new: PublicKey
    retired_name: str
    before: str
    after: str
    not_added: tuple[str, ...]  # rules with threshold > 1 where the old key was not kept

    def diff(self) -> str:
        return "".join(difflib.unified_diff(self.before.splitlines(keepends=True), self.after.splitlines(keepends=True),
                                            fromfile=f"{self.policy_path} (now)",
                                            tofile=f"{self.policy_path} (after rotation)"))

    def write_policy(self) -> None:
        from mlspec_attest.bundle import write_atomically

        write_atomically(self.policy_path, self.after.encode("utf-8"), replace=True)


def _effective_threshold(rule: dict[str, Any], defaults: dict[str, Any]) -> int:
    value = rule.get("threshold", defaults.get("threshold", 1))
    return value if isinstance(value, int) else 1


def plan_rotation(policy_path: str | os.PathLike[str], name: str, new: PublicKey, new_entry: Any,
                  now: datetime | None = None) -> RotationPlan:
    """The policy change for rotating key NAME to ``new`` (``new_entry`` is its ``keys:`` value)."""
    path = Path(policy_path)
    policy = Policy.from_file(path)  # the current policy must be valid before we change it
    if name not in policy.keys:
        raise InputError(f"{path}: no key named {name!r} under keys (have: {', '.join(sorted(policy.keys)) or 'none'})")
    old = policy.keys[name]
    if old.keyid == new.keyid:
        raise InputError(f"{path}: the new key is the key already trusted as {name!r}; nothing to rotate")
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    before = read_bounded(path, what="policy").decode("utf-8")
    data = copy.deepcopy(dict(load_mapping(path, "policy")))
    keys = dict(data.get("keys") or {})
    retired = next(n for n in (f"{name}-retired-{stamp}", *(f"{name}-retired-{stamp}-{i}" for i in range(2, 100)))
                   if n not in keys)
    old_entry = keys[name]
    if isinstance(old_entry, str):
        old_entry = {"pem": old_entry} if old_entry.lstrip().startswith("-----BEGIN") else {"path": old_entry}
    old_entry = {**dict(old_entry), "keyid": old.keyid}
    new_keys: dict[str, Any] = {}
    for key_name, entry in keys.items():
        new_keys[key_name] = new_entry if key_name == name else entry
        if key_name == name:
            new_keys[retired] = old_entry
    data["keys"] = new_keys

    not_added: list[str] = []
    defaults = dict(data.get("defaults") or {})

    def keep_old(rule: dict[str, Any], where: str, threshold: int) -> None:
        signers = rule.get("signers")
        if not isinstance(signers, list) or name not in signers:
            return
        if threshold > 1:
            not_added.append(where)
            return
        rule["signers"] = [*signers[: signers.index(name) + 1], retired, *signers[signers.index(name) + 1:]]

    stages = data.get("stages") or {}
    default_threshold = _effective_threshold({}, defaults)
    for stage_name, rule in stages.items():
        if isinstance(rule, dict) and "signers" in rule:
            keep_old(rule, f"stages.{stage_name}", _effective_threshold(rule, defaults))
        elif (isinstance(rule, dict) and name in (defaults.get("signers") or [])
              and _effective_threshold(rule, defaults) > 1):
            # It inherits defaults.signers, which may gain the old key: pin its list as it is now.
            rule["signers"] = list(defaults["signers"])
            not_added.append(f"stages.{stage_name}")
    if "signers" in defaults:
        keep_old(defaults, "defaults", default_threshold)
        data["defaults"] = defaults
    # Never head.signers: a head is re-signed after every append, there is no old head to keep
    # valid, and a retired key left there could roll the chain back or re-sign a backdated append.

    revoked = list(data.get("revoked") or [])
    revoked.append({"keyid": old.keyid, "after": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "reason": f"rotated: {name} is now {new.keyid[:16]}"})
    data["revoked"] = revoked
    after = dump_policy(data)
    # The result must itself be a valid policy that trusts the new key under NAME.
    # (The new .pub is not written yet: check with the key inline in its place.)
    check = yaml.safe_load(after)
    check["keys"][name] = {"pem": new.to_pem().decode("ascii"), "keyid": new.keyid}
    checked = Policy.from_dict(check, source=path)
    if checked.keys[name].keyid != new.keyid:  # pragma: no cover - defensive
        raise InputError(f"{path}: rotation did not install the new key")
    return RotationPlan(policy_path=path, name=name, old=old, new=new, retired_name=retired, before=before,
                        after=after, not_added=tuple(not_added))


def key_entry(public: PublicKey, policy_path: Path, pub_path: Path | None, inline: bool) -> dict[str, Any]:
    """The ``keys:`` value for a new key: inline PEM, or a path relative to the policy, keyid pinned."""
    if inline or pub_path is None:
        return {"pem": public.to_pem().decode("ascii"), "keyid": public.keyid}
    rel = os.path.relpath(pub_path.absolute(), policy_path.absolute().parent)
    return {"path": rel, "keyid": public.keyid}
