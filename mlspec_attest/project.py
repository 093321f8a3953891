"""The project file ``mlspec.yaml``: lets ``mlspec verify bundle/`` run with no flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .loaders import load_mapping

PROJECT_FILE = "mlspec.yaml"


@dataclass(frozen=True)
class Project:
    root: Path
    policy: Path | None
    bundle: Path | None
    key: Path | None
    objectives: Path | None

    @classmethod
    def find(cls, start: Path | None = None) -> "Project | None":
        here = (start or Path.cwd()).resolve()
        for directory in (here, *here.parents):
            candidate = directory / PROJECT_FILE
            if candidate.is_file():
                return cls.load(candidate)
        return None

    @classmethod
    def load(cls, path: Path) -> "Project":
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
