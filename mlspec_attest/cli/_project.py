"""How commands find their defaults: the project file, found from the working directory."""

from __future__ import annotations

from pathlib import Path

from mlspec_attest.errors import InputError


def resolve_policy(policy: str | None, bundle: str) -> str:
    if policy:
        return policy
    from mlspec_attest.project import Project

    project = Project.find() or Project.find(Path(bundle).resolve().parent)
    if project is None or project.policy is None:
        raise InputError("no --policy given and no mlspec.yaml found (run 'mlspec init' or pass --policy FILE)")
    return str(project.policy)
