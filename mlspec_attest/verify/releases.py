"""The release line: the predecessor a package declares (``succeeds``), found and verified.

Which policy judges the predecessor: the *current* one, the policy this gate runs
with. Why that is the safe choice: trust decisions made since (a revoked key, a
rotated signer, a stricter rule) must apply to every release the gate relies on
(for rollback or as the champion), and a policy recorded by the old release would
be chosen by whoever wrote that release. The price: a release that no longer meets
today's policy is not a valid predecessor (PREDECESSOR_UNVERIFIED), fail closed.
Tolerated are only the findings a past release has by being past: its head is no
longer re-signed (HEAD_EXPIRED, HEAD_BEHIND when monitors appended after the pin),
its newest attestation is old (CHAIN_STALE) and its inference log is not at hand
(LOG_MISSING). The declared pin (genesis, sequence, payload digest), signed in the
successor's package statement, is what refuses an older or forked copy of it.

Who could walk around it, and the finding that refuses it:

* a forged or re-signed predecessor chain in the history: PREDECESSOR_UNVERIFIED;
* a bundle with the right package digest but another chain: PREDECESSOR_MISMATCH;
* a predecessor declared but absent (or no history given): PREDECESSOR_UNKNOWN;
* predecessors that lead back to a release already on the line (releases are named by their
  package attestation's payload digest; a re-run branched from a release shares its genesis): PREDECESSOR_CYCLE;
* a predecessor signed by a key revoked since: KEY_REVOKED there, PREDECESSOR_UNVERIFIED here;
* a challenger naming an older release than the champion that succeeds it, or a forked line:
  PREDECESSOR_SUPERSEDED (only verified successors count);
* a history stuffed with copies to make the gate verify n**depth chains: memoised per gate run,
  narrowed by the pin before verifying, capped (PREDECESSOR_CANDIDATES_EXCEEDED).

OBJECTIVES_OUTDATED is tolerated for a predecessor too: it was a release under the objectives
of its time; the successor's own objectives must meet today's pin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlspec_attest.bundle import Bundle
from mlspec_attest.errors import InputError
from mlspec_attest.model.report import ERROR
from mlspec_attest.model.stages import DEPLOY_PHASE
from mlspec_attest.releases import (
    MAX_CANDIDATES,
    MAX_LINE,
    SUCCEEDS,
    Predecessor,
    declared_of,
    package_subjects,
    packages_of,
    payload_digests,
    release_dirs,
)
from mlspec_attest.verify.context import Entry, VerifyContext, digest_of

# OBJECTIVES_OUTDATED: a past release was judged under the objectives of its time; the successor's own
# objectives must meet today's pin (project and digest mismatches still refuse it).
TOLERATED = frozenset({"HEAD_EXPIRED", "HEAD_BEHIND", "CHAIN_STALE", "LOG_MISSING", "OBJECTIVES_OUTDATED"})


@dataclass
class Release:
    """A verified earlier release: where it is, its chain, and the releases before it."""

    bundle: Path
    genesis: str
    package_sha256: str
    chain: list[Entry]
    predecessor: Release | None = None
    packages: set[str] = field(default_factory=set)  # every package digest its chain attested

    @property
    def line(self) -> list[Release]:
        """This release and its verified predecessors, nearest first."""
        out: list[Release] = []
        at: Release | None = self
        while at is not None:
            out.append(at)
            at = at.predecessor
        return out

    def metadata_by_stage(self) -> dict[str, dict[str, Any]]:
        """The latest authentic metadata of each stage: what ``previous.<stage>`` reads."""
        return {e.stage: e.statement.metadata for e in self.chain if e.authentic}


def latest_package(chain: list[Entry]) -> Entry | None:
    packages = [e for e in chain if e.stage == "package" and e.authentic]
    return packages[-1] if packages else None


def declared_predecessor(chain: list[Entry]) -> Any:
    """The latest authentic package's ``succeeds`` value (None when it declares none)."""
    package = latest_package(chain)
    return None if package is None else package.statement.metadata.get(SUCCEEDS)


def check_predecessor(ctx: VerifyContext) -> None:
    """Find the declared predecessor in the release history and verify it (see the module docstring)."""
    chain, report = ctx.chain, ctx.report
    raw = declared_predecessor(chain)
    if raw is None:
        return
    package = latest_package(chain)
    assert package is not None
    seq, where = package.sequence, f"sequence {package.sequence} (package)"
    ctx.predecessor_declared = True
    # A release is named by its package attestation's payload digest, not its genesis: a re-run
    # branched from a release (mlspec run branch) shares that release's genesis and may succeed it.
    own = package.payload_sha256
    try:
        declared = Predecessor.from_dict(raw, where=f"metadata.{SUCCEEDS}")
    except ValueError as exc:
        report.add("PREDECESSOR_INVALID", f"{where}: {exc}", sequence=seq, stage="package",
                   hint="write it with 'mlspec attest stage package --succeeds PREVIOUS_BUNDLE'")
        return
    pinned_here = any(e.sequence == declared.sequence and e.payload_sha256 == declared.payload_sha256 for e in chain)
    if own in ctx.release_line or pinned_here:
        # pinned_here: the pin (which covers the predecessor's package) lies in this very chain, so the
        # "predecessor" is this release itself, or a package stage of this same run.
        report.add("PREDECESSOR_CYCLE", f"{where}: the predecessor line leads back to a release already on it "
                   f"(attestation {declared.payload_sha256[:16]}… at sequence {declared.sequence})",
                   sequence=seq, stage="package")
        return
    if len(ctx.release_line) >= MAX_LINE:
        report.add("PREDECESSOR_UNVERIFIED", f"{where}: the predecessor line is longer than {MAX_LINE} releases; "
                   "not followed further", sequence=seq, stage="package")
        return
    name = f"{declared.package_name} (sha256 {declared.package_sha256[:12]}…)"
    if ctx.releases is None:
        report.add("PREDECESSOR_UNKNOWN", f"{where}: succeeds release {name}, but no release history was given "
                   "to find it in", sequence=seq, stage="package",
                   hint="pass --releases DIR (one bundle per release) to 'mlspec verify'")
        return
    history = release_dirs(ctx.releases)
    candidates = [d for d in history if declared.package_sha256 in packages_of(d)]
    if not candidates:
        report.add("PREDECESSOR_UNKNOWN", f"{where}: succeeds release {name}, which no bundle in the release "
                   f"history {ctx.releases} packaged", sequence=seq, stage="package",
                   hint="put the predecessor's bundle in the release history, or correct succeeds")
        return
    # Narrowed by the (unverified) pin before anything is verified: only a bundle that holds the
    # pinned genesis and attestation can be the predecessor, so copies of other chains cost nothing.
    pinned = [d for d in candidates if _genesis(d) == declared.genesis and declared.payload_sha256 in payload_digests(d)]
    if len(pinned) > MAX_CANDIDATES:
        report.add("PREDECESSOR_CANDIDATES_EXCEEDED", f"{where}: {len(pinned)} bundles in the release history "
                   f"claim to be the predecessor {name}; more than {MAX_CANDIDATES} are not verified",
                   sequence=seq, stage="package", hint="keep one bundle per release in the history directory")
        return
    problems: list[str] = []
    for bundle_dir in pinned:
        release, why = _verify_candidate(ctx, bundle_dir, declared, own)
        if release is not None:
            ctx.predecessor = release
            if not ctx.release_line:  # the gate's own question; a past release's was asked by its own gate
                _check_newest(ctx, release, own, where, seq, name)
            return
        problems.append(why)
    cycles = [p for p in problems if p.startswith("cycle:")]
    if cycles:
        report.add("PREDECESSOR_CYCLE", f"{where}: {cycles[0].removeprefix('cycle: ')}", sequence=seq,
                   stage="package")
        return
    failures = [p for p in problems if not p.startswith("mismatch:")]
    if failures:
        report.add("PREDECESSOR_UNVERIFIED", f"{where}: the predecessor {name} does not verify under this policy: "
                   + _bounded(failures), sequence=seq,
                   stage="package", hint="verify the predecessor's bundle on its own: mlspec verify BUNDLE")
        return
    detail = _bounded([p.removeprefix("mismatch: ") for p in problems]) or \
        (f"none holds chain {declared.genesis[:16]}… with attestation {declared.payload_sha256[:16]}… at "
         f"sequence {declared.sequence}")
    report.add("PREDECESSOR_MISMATCH", f"{where}: the release history holds package {name} "
               f"({_bounded([d.name for d in candidates])}) but not the chain the successor pinned: {detail}",
               sequence=seq, stage="package",
               hint="a release with the same package but another chain cannot stand in for the one declared")


def _bounded(items: list[str], shown: int = 3) -> str:
    """At most ``shown`` items of a list for a finding's message: a hostile history cannot inflate the report."""
    more = f" (and {len(items) - shown} more)" if len(items) > shown else ""
    return "; ".join(items[:shown]) + more


def _check_newest(ctx: VerifyContext, release: Release, own: str, where: str, seq: int, name: str) -> None:
    """The declared predecessor must be the newest release of its line: refuse when a verified release
    in the history already succeeds it (a challenger naming an older, weaker release than the champion).

    Only a successor that verifies counts (an unverified bundle claiming to succeed it cannot block
    the gate); one verified successor is enough, since a release further down the line verifies only
    together with the one between. Two or more are a fork: refused too, the gate picks no champion.
    """
    exclude = ctx.release_line | {own}
    claimed = []
    for d in release_dirs(ctx.releases) if ctx.releases is not None else []:
        if d == release.bundle or payload_digests(d) & exclude:
            continue  # the predecessor itself, or a copy/branch of the release being verified
        claim = declared_of(d)
        if claim is not None and claim.genesis == release.genesis and claim.package_sha256 in release.packages:
            claimed.append(d)
    if len(claimed) > MAX_CANDIDATES:
        ctx.report.add("PREDECESSOR_CANDIDATES_EXCEEDED", f"{where}: {len(claimed)} bundles in the release history "
                       f"claim to succeed {name}; more than {MAX_CANDIDATES} are not verified", sequence=seq,
                       stage="package", hint="keep one bundle per release in the history directory")
        return
    newer = [d for d in claimed if _is_verified_successor(ctx, d, release, exclude)]
    if newer:
        fork = " (a fork: more than one release succeeds it)" if len(newer) > 1 else ""
        ctx.report.add("PREDECESSOR_SUPERSEDED", f"{where}: succeeds {name} ({release.bundle.name}), but the "
                       f"release history holds a newer verified release on that line: "
                       f"{_bounded([d.name for d in newer])}{fork}", sequence=seq, stage="package",
                       hint=(f"the line has forked ({', '.join(d.name for d in newer[:3])}): keep the one release "
                             "that shipped in the history, then --succeeds it" if fork else
                             f"attest the package with --succeeds {newer[0].name} (the newest release of the line)"))


def _is_verified_successor(ctx: VerifyContext, bundle_dir: Path, release: Release, exclude: frozenset[str]) -> bool:
    """Does this history bundle verify, with ``release`` (the same chain and package) as its verified predecessor?"""
    if ctx.verify_other is None:
        return False
    sub = ctx.verify_other(bundle_dir, exclude)
    theirs = sub.predecessor
    if theirs is None or theirs.genesis != release.genesis or theirs.package_sha256 not in release.packages:
        return False
    return not _blocking(sub)


def _blocking(sub: VerifyContext) -> list[Any]:
    """The errors that keep a past release from counting: all but TOLERATED, and but a missing stage after
    package (a release is one once it passed the deploy gate; serve and monitor may not exist yet)."""
    return [f for f in sub.report.findings if f.severity == ERROR and f.code not in TOLERATED
            and not (f.code == "STAGE_MISSING" and not DEPLOY_PHASE.requires(f.stage or ""))]


def _genesis(bundle_dir: Path) -> str | None:
    """The (unverified) genesis of a bundle in the history, to pick which ones to verify."""
    try:
        head = Bundle(bundle_dir).head()
    except InputError:
        return None
    return head.genesis if head is not None else None


def _verify_candidate(ctx: VerifyContext, bundle_dir: Path, declared: Predecessor,
                      own: str) -> tuple[Release | None, str]:
    """Verify one bundle as the declared predecessor: (the release, '') or (None, why not)."""
    if ctx.verify_other is None:  # a context built outside the Verifier: cannot verify, so not verified
        return None, f"{bundle_dir.name}: no verifier to check it with"
    sub = ctx.verify_other(bundle_dir, ctx.release_line | {own})
    chain = sub.chain
    genesis = chain[0].payload_sha256 if chain and chain[0].sequence == 0 else None
    at = next((e for e in chain if e.sequence == declared.sequence), None)
    if genesis != declared.genesis or at is None or at.payload_sha256 != declared.payload_sha256:
        return None, (f"mismatch: {bundle_dir.name} has no attestation {declared.payload_sha256[:16]}… at sequence "
                      f"{declared.sequence} of chain {declared.genesis[:16]}…")
    theirs = latest_package(chain)
    if theirs is not None and theirs.payload_sha256 in ctx.release_line | {own}:
        return None, f"cycle: {bundle_dir.name} is a release already on the line (a successor of itself)"
    blocking = _blocking(sub)
    if blocking:
        shown = ", ".join(sorted({f.code for f in blocking})[:4])
        return None, f"{bundle_dir.name}: {len(blocking)} error(s) ({shown}; first: {blocking[0].message})"
    packaged = [e for e in chain if e.stage == "package" and e.authentic and e.sequence <= declared.sequence
                and declared.package_sha256 in {digest_of(s) for s in package_subjects(e.statement.subjects)}]
    if not packaged:
        return None, (f"mismatch: in {bundle_dir.name} no authentic package at or before sequence "
                      f"{declared.sequence} attests sha256 {declared.package_sha256[:12]}…")
    packages = {digest_of(s) for e in chain if e.stage == "package" and e.authentic
                for s in package_subjects(e.statement.subjects)}
    return Release(bundle=bundle_dir, genesis=genesis, package_sha256=declared.package_sha256, chain=chain,
                   predecessor=sub.predecessor, packages=packages), ""


def line_packages(ctx: VerifyContext) -> set[str]:
    """Package digests of every release on the verified predecessor line (empty without one)."""
    predecessor = ctx.predecessor
    return set() if predecessor is None else {d for r in predecessor.line for d in r.packages}
