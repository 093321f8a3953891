"""Human text for a verification report: a checklist a release engineer can act on."""

from __future__ import annotations

from mlspec_attest.model.report import ERROR, INFO, Report
from mlspec_attest.render.terminal import terminal_safe as _t


def _paint(text: str, color: str, enabled: bool) -> str:
    if not enabled:
        return text
    codes = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}
    return f"\033[{codes[color]}m{text}\033[0m"


def _number(value: object) -> str:
    """Short numbers for people; the JSON output keeps exact values."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _names(rds: list[dict]) -> str:
    if not rds:
        return "-"
    shown = [f"{_t(rd.get('name'))} ({_t(rd['digest']['sha256'][:12])})" for rd in rds[:3]]
    more = f" +{len(rds) - 3} more" if len(rds) > 3 else ""
    return ", ".join(shown) + more


def render_text(report: Report, color: bool = False) -> str:
    lines = [_paint(f"mlspec verify {_t(report.bundle)}", "bold", color),
             f"policy {_t(report.policy)} (sha256 {_t((report.policy_sha256 or '')[:16])})", "", "Stages"]
    if report.phase != "full":  # the default phase says nothing, as before phases existed
        lines[2:2] = [f"phase {_t(report.phase)}: stages after package need not exist yet; present ones are "
                      "judged in full"]
    for s in report.stages:
        mark = _paint("✓", "green", color) if s.ok else _paint("✗", "red", color)
        signer = _t(", ".join(s.signers) or "unverified")
        lines.append(f"  {mark} {s.sequence:>4} {_t(s.stage):<10} signed by {signer:<14} {_t(s.time or ''):<20} "
                     f"-> {_names(s.subjects)}")
    if not report.stages:
        lines.append("  (no readable attestations)")
    if report.objectives:
        lines += ["", "Objectives"]
        for o in report.objectives:
            mark = _paint("✓", "green", color) if o.passed else (
                _paint("✗", "red", color) if o.severity == "block" else _paint("!", "yellow", color))
            seen = _t(", ".join(f"{k}={_number(v)}" for k, v in o.values.items()) or "no values read")
            lines.append(f"  {mark} {_t(o.name):<24} {_t(o.stage)}: {_t(o.expression)}   [{seen}]")
    if report.artifacts:
        lines += ["", "Artifacts"]
        for a in report.artifacts:
            mark = _paint("✓", "green", color) if a.get("matched") else _paint("✗", "red", color)
            where = f"package sequence {a['matched']['sequence']}" if a.get("matched") else "not packaged"
            lines.append(f"  {mark} {_t(a['path'])} sha256 {_t(a['sha256'][:16])} ({_t(where)})")
    if report.findings:
        lines += ["", "Findings"]
        for f in report.findings:
            mark = _paint("✗", "red", color) if f.severity == ERROR else (
                _paint("i", "dim", color) if f.severity == INFO else _paint("!", "yellow", color))
            lines.append(f"  {mark} [{_t(f.code)}] {_t(f.message)}")
            if f.hint:
                lines.append(f"      -> {_t(f.hint)}")
    errors = sum(1 for f in report.findings if f.severity == ERROR)
    infos = sum(1 for f in report.findings if f.severity == INFO)
    warnings = len(report.findings) - errors - infos
    verdict = _paint("PASS", "green", color) if report.passed else _paint("FAIL", "red", color)
    scope = f"phase {_t(report.phase)}, " if report.phase != "full" else ""
    notes = f", {infos} notes" if infos else ""
    lines += ["", f"Verdict: {verdict} ({scope}{len(report.stages)} attestations, {errors} errors, "
                  f"{warnings} warnings{notes})"]
    return "\n".join(lines)
