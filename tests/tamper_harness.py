"""A real signed bundle and every way of tampering with it, shared by tests/adversarial/test_tamper.py
and benchmarks/mutation_suite.py (the exhaustive run).

The bundle is a 4-stage chain (objectives by ``owner``; ingest, analyze, transform by
``pipeline``) with a signed chain head, verified in-process with one parsed policy so
thousands of verifications take seconds. A second chain with the same stages provides
attestations to splice in. Each mutation is applied to the files on disk, verified,
classified, and undone.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import Project, resign_head

from mlspec_attest.errors import InputError
from mlspec_attest.keys import generate, load_signer
from mlspec_attest.model.canonical import parse_json
from mlspec_attest.model.envelope import Envelope, pae
from mlspec_attest.model.head import HEAD_FILE
from mlspec_attest.policy import Policy
from mlspec_attest.verify import Verifier

STAGES = ("objectives", "ingest", "analyze", "transform")
# analyze and transform are optional, so dropping the newest attestations is caught only by the head.
POLICY = """\
version: 1
name: tamper
keys:
  owner: {path: ../keys/owner.pub}
  pipeline: ../keys/pipeline.pub
  auditor: ../keys/auditor.pub     # trusted (ECDSA P-256) but allowed to sign nothing here
objectives: {project: tamper}
metrics_binding: {required: false}  # the criterion reads inline analyze metadata; binding has its own tests
stages:
  objectives: {signers: [owner]}
  ingest: {signers: [pipeline]}
  analyze: {signers: [pipeline], required: false}
  transform: {signers: [pipeline], required: false}
head: {signers: [pipeline], required: true}
"""
LAX_POLICY = """\
version: 1
name: lax
keys: {intruder: intruder.pub, pipeline: pipeline.pub, owner: owner.pub}
defaults: {signers: [intruder, pipeline, owner]}
objectives: {project: tamper, separate_signer: false}
stages: {objectives: {required: false, signers: [intruder, pipeline, owner]}, ingest: {required: false}}
artifact_flow: false
"""
# Single-byte replacement values tried at every position in the exhaustive run: the eight
# bit flips plus JSON/base64 structure characters.
SPECIALS = b' \t\n"\\0A=/+{}[],:-_\x00\xff'
# "layout": accepted with only the ENVELOPE_NOT_CANONICAL warning, and every file still parses to
# exactly the original envelope (same payloadType, payload bytes and signatures): another
# serialisation of the same signed content, not a forgery. Anything else that passes is "accepted".
OUTCOMES = ("refused", "accepted", "layout", "input_error", "crash")


def byte_values(original: int) -> list[int]:
    values = [original ^ (1 << bit) for bit in range(8)] + list(SPECIALS)
    return list(dict.fromkeys(v for v in values if v != original))


@dataclass
class Tally:
    """Outcome counts per mutation class; the first few non-refusals kept as examples."""

    counts: dict[str, Counter] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def add(self, cls: str, outcome: str, label: str, detail: str = "") -> None:
        self.counts.setdefault(cls, Counter())[outcome] += 1
        if outcome not in ("refused", "layout") and len(self.examples) < 20:
            self.examples.append(f"{cls}: {label}: {outcome} {detail}".strip())

    def total(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.counts.values())

    def tried(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())


class Harness:
    """Builds the bundles once; ``check`` verifies the current on-disk state."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        (root / "policies").mkdir(exist_ok=True)
        for name, kind in (("owner", "ed25519"), ("pipeline", "ed25519"), ("intruder", "ecdsa-p256"),
                           ("auditor", "ecdsa-p256")):
            generate(name, root / "keys", kind, None)
        (root / "policies" / "tamper.yaml").write_text(POLICY)
        self.project = Project(root=root, bundle=root / "bundle")
        self.other = Project(root=root, bundle=root / "other")
        build_small(self.project)
        self.pipeline = load_signer(self.project.key("pipeline"))
        self.intruder = load_signer(self.project.key("intruder"))
        self.auditor = load_signer(self.project.key("auditor"))
        # Verification runs "2 hours later": the current head (valid 48 h) holds; the head an attacker
        # kept from the older, 3-attestation chain was valid 1 h and has expired (TUF timestamp role).
        resign_head(self.project.bundle, [self.pipeline], timedelta(hours=48))
        shutil.copytree(self.project.bundle, root / "older")
        (root / "older" / "attestations" / "0003-transform.dsse.json").unlink()
        resign_head(root / "older", [self.pipeline], timedelta(hours=1))
        build_small(self.other)
        self.policy = Policy.from_file(self.project.policy("tamper.yaml"))
        self.verifier = Verifier(self.policy, now=datetime.now(timezone.utc) + timedelta(hours=2))
        self.bundle = self.project.bundle
        self.att_dir = self.bundle / "attestations"
        self.original = self.snapshot()
        report = self.verifier.verify(self.bundle)
        assert report.passed, [f.message for f in report.findings]

    # -- state ---------------------------------------------------------------------
    def files(self) -> list[Path]:
        """Every file the mutation suite edits: the attestations and the signed head."""
        return sorted(self.att_dir.glob("*.dsse.json")) + [self.bundle / HEAD_FILE]

    def snapshot(self) -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in self.files()}

    def restore(self) -> None:
        current = set(self.att_dir.iterdir()) | {self.bundle / HEAD_FILE}
        for p in current - set(self.original):
            p.unlink() if p.is_file() else shutil.rmtree(p)
        for p, data in self.original.items():
            if not p.exists() or p.read_bytes() != data:
                p.write_bytes(data)

    def unchanged(self) -> bool:
        entries = set(self.att_dir.iterdir()) | ({self.bundle / HEAD_FILE} if (self.bundle / HEAD_FILE).exists() else set())
        return entries == set(self.original) and all(p.read_bytes() == d for p, d in self.original.items())

    def check(self, verifier: Verifier | None = None) -> tuple[str, str]:
        """(outcome, detail) for the bundle as it is on disk now."""
        try:
            report = (verifier or self.verifier).verify(self.bundle)
        except InputError as exc:
            return "input_error", str(exc)  # exit 2: a refusal, counted apart from findings
        except Exception:
            return "crash", traceback.format_exc(limit=-3)
        if report.passed:
            warned = {f.code for f in report.findings if f.severity != "error"}
            if "ENVELOPE_NOT_CANONICAL" in warned and self.same_signed_content():
                return "layout", ""
            return "accepted", ""
        return "refused", ",".join(sorted({f.code for f in report.findings if f.severity == "error"}))

    def same_signed_content(self) -> bool:
        """Every file is present and parses (strictly) to the original envelope, signatures included."""
        for p, data in self.original.items():
            if not p.is_file():
                return False
            try:
                now = Envelope.from_dict(parse_json(p.read_bytes()))
            except (ValueError, InputError):
                return False
            before = Envelope.from_dict(parse_json(data))
            if (now.payload_type, now.payload, now.signatures) != (before.payload_type, before.payload,
                                                                   before.signatures):
                return False
        return set(self.att_dir.iterdir()) | {self.bundle / HEAD_FILE} == set(self.original)

    def att(self, seq: int) -> Path:
        return next(self.att_dir.glob(f"{seq:04d}-*.dsse.json"))

    def envelope(self, path: Path) -> dict:
        return json.loads(self.original[path])

    def write_env(self, path: Path, env: dict) -> None:
        path.write_bytes(Envelope.from_dict(env).to_json() if _decodes(env) else
                         (json.dumps(env, indent=2) + "\n").encode())

    # -- mutations: each yields (class, label, apply) ----------------------------------
    def byte_mutations(self, positions: Callable[[Path, bytes], Iterator[tuple[int, int]]]
                       ) -> Iterator[tuple[str, str, Callable[[], None]]]:
        for path in self.files():
            data = self.original[path]
            for pos, value in positions(path, data):
                def apply(path: Path = path, data: bytes = data, pos: int = pos, value: int = value) -> None:
                    path.write_bytes(data[:pos] + bytes([value]) + data[pos + 1:])
                yield "single-byte", f"{path.name}[{pos}]={value:#04x}", apply

    def structural_mutations(self) -> Iterator[tuple[str, str, Callable[[], None]]]:
        atts = [self.att(i) for i in range(len(STAGES))]
        other_atts = sorted((self.other.bundle / "attestations").glob("*.dsse.json"))
        head = self.bundle / HEAD_FILE

        # base64 re-encodings: other alphabets/forms of the same bytes, and lenient forms of other bytes.
        for path in atts + [head]:
            env = self.envelope(path)
            raw = base64.b64decode(env["payload"])
            sig = base64.b64decode(env["signatures"][0]["sig"])
            variants = {
                "payload-urlsafe": lambda e: e.update(payload=base64.urlsafe_b64encode(raw).decode()),
                "payload-unpadded": lambda e: e.update(payload=base64.b64encode(raw).decode().rstrip("=")),
                "payload-wrapped-76": lambda e: e.update(payload="\n".join(
                    base64.b64encode(raw).decode()[i:i + 76] for i in range(0, len(env["payload"]), 76))),
                "payload-space": lambda e: e.update(payload=" " + e["payload"]),
                "payload-trailing-garbage": lambda e: e.update(payload=e["payload"] + "QQ=="),
                "payload-padding-bits": lambda e: e.update(payload=_flip_padding_bits(e["payload"])),
                "payload-other-bytes": lambda e: e.update(payload=base64.b64encode(raw + b" ").decode()),
                "sig-urlsafe": lambda e: e["signatures"][0].update(sig=base64.urlsafe_b64encode(sig).decode()),
                "sig-padding-bits": lambda e: e["signatures"][0].update(sig=_flip_padding_bits(
                    e["signatures"][0]["sig"])),
                "sig-other-bytes": lambda e: e["signatures"][0].update(sig=base64.b64encode(sig[:-1]).decode()),
            }
            for label, edit in variants.items():
                def apply(path: Path = path, edit: Callable = edit) -> None:
                    env = self.envelope(path)
                    edit(env)
                    path.write_bytes((json.dumps(env, indent=2) + "\n").encode())
                yield "base64-reencoding", f"{path.name}:{label}", apply

        # whole-file operations on the chain
        n = len(atts)
        for i in range(n):
            yield "remove", atts[i].name, lambda i=i: atts[i].unlink()
        for i in range(n):
            for j in range(n):
                if i != j:
                    def swap(i: int = i, j: int = j) -> None:
                        atts[i].write_bytes(self.original[atts[j]])
                        atts[j].write_bytes(self.original[atts[i]])
                    yield "reorder", f"swap {i}<->{j}", swap
                    yield "reorder", f"rename {i}->{j}", lambda i=i, j=j: (
                        atts[j].unlink(), atts[i].rename(atts[j]))
        for i in range(n):
            for target in (f"{n:04d}-{STAGES[i]}.dsse.json", f"{i:04d}-{STAGES[i]}-copy.dsse.json",
                           f"{n + 3:04d}-{STAGES[i]}.dsse.json"):
                yield "duplicate", f"{atts[i].name}->{target}", lambda i=i, t=target: (
                    self.att_dir / t).write_bytes(self.original[atts[i]])
        for i, src in enumerate(other_atts):
            yield "splice", f"other:{src.name}", lambda i=i, src=src: atts[i].write_bytes(src.read_bytes())
            for name in (f"{n:04d}-{STAGES[i]}.dsse.json", f"{i:04d}-{STAGES[i]}.dsse.json.bak"):
                yield "insert", f"other:{src.name}->{name}", lambda src=src, name=name: (
                    self.att_dir / name).write_bytes(src.read_bytes())
        yield "insert", "other chain whole", lambda: [a.write_bytes(b.read_bytes()) for a, b in zip(atts, other_atts)]
        yield "insert", "stray directory", lambda: (self.att_dir / f"{n:04d}-analyze.dsse.json").mkdir()

        # signature operations
        for i in range(n):
            for j in range(n):
                if i != j:
                    def move(i: int = i, j: int = j) -> None:
                        src, dst = self.envelope(atts[i]), self.envelope(atts[j])
                        dst["signatures"] = src["signatures"]
                        src["signatures"] = []
                        self.write_env(atts[i], src)
                        self.write_env(atts[j], dst)
                    yield "signature-moved", f"{i}->{j}", move

                    def copy(i: int = i, j: int = j) -> None:
                        src, dst = self.envelope(atts[i]), self.envelope(atts[j])
                        dst["signatures"] = dst["signatures"] + src["signatures"]
                        self.write_env(atts[j], dst)
                    yield "signature-copied", f"{i}->{j}", copy
            env = self.envelope(atts[i])
            payload = base64.b64decode(env["payload"])
            for label, edit in {
                "stripped": lambda e: e.update(signatures=[]),
                "empty-sig": lambda e: e["signatures"][0].update(sig=""),
                "sig-twice": lambda e: e.update(signatures=e["signatures"] * 2),
                "seventeen-sigs": lambda e: e.update(signatures=e["signatures"] * 17),
            }.items():
                yield "signature-stripped", f"{atts[i].name}:{label}", (
                    lambda edit=edit, i=i: self._edit(atts[i], edit, raw=True))
            for label, ptype in {"json": "application/json", "empty": "", "upper": "APPLICATION/VND.IN-TOTO+JSON",
                                 "non-ascii": "application/vnd.in-tötö+json", "dsse-v0": "application/vnd.in-toto"
                                 }.items():
                yield "payload-type", f"{atts[i].name}:{label}", lambda p=ptype, i=i: self._edit(
                    atts[i], lambda e: e.update(payloadType=p))

                def resign(p: str = ptype, i: int = i, payload: bytes = payload) -> None:
                    # Even a genuine signature over the other payloadType is refused.
                    if not p.isascii() or not p:
                        return self._edit(atts[i], lambda e: e.update(payloadType=p))
                    signer = load_signer(self.project.key("owner" if i == 0 else "pipeline"))
                    self._edit(atts[i], lambda e: e.update(payloadType=p, signatures=[{
                        "keyid": signer.keyid, "sig": base64.b64encode(signer.sign(pae(p, payload))).decode()}]))
                yield "payload-type", f"{atts[i].name}:{label}+resigned", resign
            trusted = [self.policy.keys[k].keyid for k in ("owner", "pipeline", "auditor")]
            for keyid in trusted + ["", "00" * 32]:
                if keyid != env["signatures"][0]["keyid"]:
                    yield "keyid-swapped", f"{atts[i].name}:{keyid[:8] or 'empty'}", (
                        lambda k=keyid, i=i: self._edit(atts[i], lambda e: e["signatures"][0].update(keyid=k)))
            for label, signer in {"intruder-ecdsa": self.intruder, "auditor-ecdsa": self.auditor}.items():
                for hint in (signer.keyid, env["signatures"][0]["keyid"]):
                    def foreign(signer=signer, hint=hint, i=i, payload=payload) -> None:  # type: ignore[no-untyped-def]
                        sig = signer.sign(pae("application/vnd.in-toto+json", payload))
                        self._edit(atts[i], lambda e: e.update(signatures=[{
                            "keyid": hint, "sig": base64.b64encode(sig).decode()}]))
                    yield "ecdsa-for-ed25519", f"{atts[i].name}:{label}:hint={hint[:8]}", foreign

        # the head: removed, older, from another chain, forged
        yield "head", "removed", lambda: head.unlink()
        yield "head", "older head (sequence 2)", lambda: head.write_bytes(
            (self.project.root / "older" / HEAD_FILE).read_bytes())
        yield "head", "truncate newest (head kept)", lambda: atts[-1].unlink()
        yield "head", "truncate two newest (head kept)", lambda: (atts[-1].unlink(), atts[-2].unlink())
        yield "head", "rollback to older chain + its head", self._rollback
        yield "head", "intruder-signed head", lambda: self._resign_head(self.intruder)
        yield "head", "auditor-signed head", lambda: self._resign_head(self.auditor)

    def _edit(self, path: Path, edit: Callable[[dict], None], raw: bool = False) -> None:
        """Apply ``edit``; written as mlspec would write it unless ``raw`` (keep duplicates as they are)."""
        env = self.envelope(path)
        edit(env)
        if raw:
            path.write_bytes((json.dumps(env, indent=2) + "\n").encode())
        else:
            self.write_env(path, env)

    def _rollback(self) -> None:
        older = self.project.root / "older"
        for p in self.att_dir.iterdir():
            p.unlink()
        for p in (older / "attestations").iterdir():
            shutil.copyfile(p, self.att_dir / p.name)
        shutil.copyfile(older / HEAD_FILE, self.bundle / HEAD_FILE)

    def _resign_head(self, signer) -> None:  # type: ignore[no-untyped-def]
        env = self.envelope(self.bundle / HEAD_FILE)
        payload = base64.b64decode(env["payload"])
        sig = signer.sign(pae(env["payloadType"], payload))
        env["signatures"] = [{"keyid": signer.keyid, "sig": base64.b64encode(sig).decode()}]
        self.write_env(self.bundle / HEAD_FILE, env)

    # -- running -----------------------------------------------------------------------
    def run(self, mutations: Iterator[tuple[str, str, Callable[[], None]]], tally: Tally) -> Tally:
        for cls, label, apply in mutations:
            start = time.perf_counter()
            try:
                apply()
                if self.unchanged():
                    continue  # e.g. a URL-safe re-encoding of base64 that has no '+' or '/'
                outcome, detail = self.check()
            finally:
                self.restore()
            tally.add(cls, outcome, label, detail)
            tally.seconds[cls] = tally.seconds.get(cls, 0.0) + time.perf_counter() - start
        return tally

    def policy_swaps(self, tally: Tally) -> Tally:
        """A laxer policy the user did not name: planted in the bundle, it is refused or never read."""
        lax_dir = self.bundle / "lax"
        lax_dir.mkdir(exist_ok=True)
        try:
            for k in ("intruder", "pipeline", "owner"):
                shutil.copyfile(self.project.root / "keys" / f"{k}.pub", lax_dir / f"{k}.pub")
            (lax_dir / "policy.yaml").write_text(LAX_POLICY)
            lax_policy = Policy.from_file(lax_dir / "policy.yaml")
            intruder = self.intruder
            self._edit(self.att(1), lambda e: e.update(signatures=[{"keyid": intruder.keyid, "sig": base64.b64encode(
                intruder.sign(pae(e["payloadType"], base64.b64decode(e["payload"])))).decode()}]))
            outcome, detail = self.check(Verifier(lax_policy))
            tally.add("policy-swap", outcome, "lax policy inside the bundle, named", detail)
            outcome, detail = self.check()
            tally.add("policy-swap", outcome, "lax policy planted, user's policy used", detail)
        finally:
            shutil.rmtree(lax_dir, ignore_errors=True)
            self.restore()
        return tally


OBJECTIVES = """\
project: tamper
revision: 1
outputs: {task: binary-classification, labels: [0, 1]}
criteria:
  - {name: rows, stage: analyze, expression: metadata.statistics.rows >= 1, severity: block, description: rows seen}
"""


def build_small(project: Project) -> None:
    """The 4-stage chain with small metadata (each file is about 1.4 kB)."""
    project.write("objectives.yaml", OBJECTIVES)
    project.write("raw/data.csv", "x,y\n1,0\n")
    project.write("work/clean.csv", "x,y\n1,0\n")
    project.attestor("owner").attest("objectives", metadata_files=[project.root / "objectives.yaml"])
    pipe = project.attestor("pipeline")
    pipe.attest("ingest", materials=["external=raw/data.csv"], products=["raw/data.csv"],
                metadata={"sources": [{"name": "raw", "connector": "csv"}]})
    pipe.attest("analyze", materials=["raw/data.csv"], metadata={"statistics": {"rows": 1}})
    pipe.attest("transform", materials=["raw/data.csv"], products=["work/clean.csv"],
                metadata={"transformations": [{"name": "dropna"}]})


def _decodes(env: dict) -> bool:
    try:
        Envelope.from_dict(env)
        return True
    except (ValueError, InputError):
        return False


def _flip_padding_bits(text: str) -> str:
    """Same bytes for a lenient decoder, different text: set the unused low bits of the last symbol."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stripped = text.rstrip("=")
    pad = len(text) - len(stripped)
    if pad == 0:
        # No unused bits to set (the payload's length is a multiple of 3, which depends on what the
        # run block recorded): a stray padding character is the same bytes for a lenient decoder too.
        return text + "="
    last = alphabet.index(stripped[-1]) | (1 if pad == 1 else 3)
    return stripped[:-1] + alphabet[last] + "=" * pad


def sample_positions(rng: random.Random, fraction: float) -> Callable[[Path, bytes], Iterator[tuple[int, int]]]:
    def positions(path: Path, data: bytes) -> Iterator[tuple[int, int]]:
        for pos in range(len(data)):
            for value in byte_values(data[pos]):
                if rng.random() < fraction:
                    yield pos, value
    return positions


def every_byte(path: Path, data: bytes) -> Iterator[tuple[int, int]]:
    for pos in range(len(data)):
        yield from ((pos, v) for v in byte_values(data[pos]))


def format_tally(tally: Tally) -> str:
    lines = [f"{'class':<22}{'tried':>8}{'refused':>9}{'accepted':>10}{'layout':>8}{'input_err':>11}{'crashes':>9}"
             f"{'seconds':>9}"]
    for cls, c in tally.counts.items():
        lines.append(f"{cls:<22}{sum(c.values()):>8}{c['refused']:>9}{c['accepted']:>10}{c['layout']:>8}"
                     f"{c['input_error']:>11}{c['crash']:>9}{tally.seconds.get(cls, 0.0):>9.1f}")
    lines.append(f"{'TOTAL':<22}{tally.tried():>8}{tally.total('refused'):>9}{tally.total('accepted'):>10}"
                 f"{tally.total('layout'):>8}{tally.total('input_error'):>11}{tally.total('crash'):>9}"
                 f"{sum(tally.seconds.values()):>9.1f}")
    return "\n".join(lines + [f"  non-refusal: {e}" for e in tally.examples])


__all__ = ["Harness", "Tally", "byte_values", "every_byte", "format_tally", "sample_positions"]
