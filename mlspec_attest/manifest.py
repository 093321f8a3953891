"""A directory artifact's file manifest, kept in the bundle so the gate can see inside a package.

The manifest is the RFC 8785 document ``{"files": [{"path", "sha256"}...]}`` (plus
``"ignored"``: the files left out of the subject digest, e.g. top-level ``.git*``, when
there are any) whose sha256
the attestor already signs as the descriptor annotation ``mlspec.dev/manifest-sha256``
(digests.MANIFEST_ANNOTATION). The attestor stores the bytes as ``bundle/blobs/<sha256>``;
the verifier reads them back, checks the digest against the signed annotation, and can
then say which model file a package holds and which files of a shipped directory differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import canonicalize, parse_json, sha256_hex
from mlspec_attest.model.formats import HEX64

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_PATH_CHARS = 4096


class ManifestUnbound(ValueError):
    """A file manifest whose files do not recompute to the digest of the subject that names it."""


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a plain relative POSIX path inside a directory (None: it is).

    One rule for every reader of a manifest path (the disk gate, the OCI gate, push, pull):
    no absolute path, no ``..``/``.``/empty segment, no backslash, no NUL or control
    character, so a name can never point outside the directory it is read from or written to.
    """
    if not path or len(path) > MAX_PATH_CHARS:
        return "is empty or too long"
    if path.startswith("/"):
        return "is absolute"
    if "\\" in path:
        return "contains a backslash"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return "contains a control character"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "is not normalised (empty, '.' or '..' segment)"
    return None


def encode(files: Iterable[tuple[str, str]], ignored: Iterable[tuple[str, str]] = ()) -> bytes:
    """The canonical manifest bytes of (relative POSIX path, sha256 hex) pairs, in digest_path's order.

    Equal, byte for byte, to the manifest digests.digest_directory signs: ``ignored`` (the
    files left out of the subject digest, bound all the same) is absent when empty.
    """
    doc: dict[str, Any] = {"files": [{"path": p, "sha256": d} for p, d in files]}
    left_out = [{"path": p, "sha256": d} for p, d in ignored]
    if left_out:
        doc["ignored"] = left_out
    return canonicalize(doc)


@dataclass(frozen=True)
class FileDiff:
    """How a directory differs from a signed manifest, file by file."""

    differing: tuple[str, ...]
    missing: tuple[str, ...]
    extra: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.differing or self.missing or self.extra)

    def describe(self, limit: int = 5) -> str:
        parts = []
        for label, names in (("differ", self.differing), ("missing", self.missing), ("extra", self.extra)):
            if names:
                shown = ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
                parts.append(f"{label}: {shown}")
        return "; ".join(parts) or "no file differs (only the directory digest)"


def parse(data: bytes, where: str) -> dict[str, str]:
    """Path -> sha256 from manifest bytes; refuses a non-canonical, duplicated or malformed manifest."""
    try:
        doc = parse_json(data, source=where)
    except InputError as exc:
        raise ValueError(str(exc)) from None
    if canonicalize(doc) != data:
        raise ValueError(f"{where}: manifest is not RFC 8785 canonical")
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list) or set(doc) - {"ignored"} != {"files"}:
        raise ValueError(f"{where}: manifest must be {{\"files\": [...]}} (and optionally \"ignored\": [...])")
    ignored = doc.get("ignored", None)
    if "ignored" in doc and (not isinstance(ignored, list) or not ignored):
        raise ValueError(f"{where}: manifest \"ignored\" must be a non-empty list (omitted when nothing is ignored)")
    out: dict[str, str] = {}
    seen: set[str] = set()
    for key, items in (("files", files), ("ignored", ignored or [])):
        for i, item in enumerate(items):
            if (not isinstance(item, dict) or set(item) != {"path", "sha256"} or not isinstance(item["path"], str)
                    or not isinstance(item["sha256"], str) or not HEX64.fullmatch(item["sha256"])):
                raise ValueError(f"{where}: {key}[{i}] must be {{path, sha256 (64 hex)}}")
            problem = path_problem(item["path"])
            if problem:
                raise ValueError(f"{where}: {key}[{i}] path {item['path']!r} {problem}; refusing a manifest that "
                                 "names a file outside its directory")
            if item["path"] in seen:
                raise ValueError(f"{where}: file {item['path']!r} listed twice")
            seen.add(item["path"])
            if key == "files":  # only the files the subject digest covers make up the artifact
                out[item["path"]] = item["sha256"]
    return out


def load(blobs: Path | Callable[[str, int], bytes], manifest_sha256: str, where: str, *,
         subject_sha256: str | None = None) -> dict[str, str]:
    """Read ``blobs/<manifest_sha256>``, check it is those bytes, parse it (ValueError/OSError if not).

    ``blobs`` is the local folder, or a bounded reader (name, limit) for a bundle on object storage.
    With ``subject_sha256`` (the directory subject that names the manifest) the files must
    recompute to it (ManifestUnbound if not): the annotation alone is signed, but so is the
    digest, and a manifest of other files must not stand in for the subject's own.
    """
    from mlspec_attest._internal.loaders import read_bounded

    if not HEX64.fullmatch(manifest_sha256):
        raise ValueError(f"{where}: manifest digest {manifest_sha256!r} is not 64 hex digits")
    try:
        data = (blobs(manifest_sha256, MAX_MANIFEST_BYTES) if callable(blobs)
                else read_bounded(blobs / manifest_sha256, limit=MAX_MANIFEST_BYTES, what="file manifest"))
    except InputError as exc:
        raise OSError(str(exc)) from None
    if sha256_hex(data) != manifest_sha256:
        raise ValueError(f"{where}: stored manifest differs from the digest that was signed")
    files = parse(data, where)
    if subject_sha256 is not None:
        from mlspec_attest.digests import files_digest

        if files_digest(files.items()) != subject_sha256:
            raise ManifestUnbound(f"{where}: the files of its signed manifest do not recompute to the subject's own "
                                  f"digest (sha256 {subject_sha256[:12]}…); the manifest describes other files")
    return files


def diff(signed: dict[str, str], actual: Iterable[tuple[str, str]]) -> FileDiff:
    have = dict(actual)
    return FileDiff(
        differing=tuple(sorted(p for p in signed.keys() & have.keys() if signed[p] != have[p])),
        missing=tuple(sorted(signed.keys() - have.keys())),
        extra=tuple(sorted(have.keys() - signed.keys())),
    )
