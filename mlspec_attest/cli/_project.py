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


def resolve_log(log: str | None, bundle: str | None) -> str | None:
    """--log, else mlspec.yaml's ``log:`` (found like the policy), else None (the gate then decides)."""
    if log:
        return log
    from mlspec_attest.project import Project

    project = Project.find() or (Project.find(Path(bundle).resolve().parent) if bundle else None)
    return str(project.log) if project is not None and project.log is not None else None


def resolve_bundle(bundle: str | None) -> str | None:
    """--bundle, else mlspec.yaml's ``bundle:``, else None."""
    if bundle:
        return bundle
    from mlspec_attest.project import Project

    project = Project.find()
    return str(project.bundle) if project is not None and project.bundle is not None else None
