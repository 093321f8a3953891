"""render/terminal.terminal_safe: attacker-chosen text cannot drive the terminal (display spoofing)."""

from __future__ import annotations

from mlspec_attest.model.report import Finding, Report
from mlspec_attest.render.terminal import terminal_safe as printable
from mlspec_attest.render.text import render_text


def test_controls_separators_and_bidi_overrides_are_escaped() -> None:
    hostile = "a\rb\nc\x1b[31md\x00e\x7ff\x9bg\u2028h\u202ei\u2066j"
    shown = printable(hostile)
    assert shown == "a\\x0db\\x0ac\\x1b[31md\\x00e\\u007ff\\u009bg\\u2028h\\u202ei\\u2066j"
    assert all(c.isprintable() for c in shown)


def test_ordinary_text_is_unchanged() -> None:
    text = "seal 3: record 'req-0007' (é, 日本, emoji 😀) -> ok"
    assert printable(text) == text


def test_gate_text_escapes_finding_messages_and_hints() -> None:
    report = Report(bundle="b", policy="p", policy_sha256=None)
    report.findings.append(Finding(code="LOG_RECORD_MODIFIED", severity="error", message="x\r\x1b[2KVerdict: PASS",
                                   hint="y\nz"))
    out = render_text(report)
    assert "\x1b" not in out and "\r" not in out and "x\\x0d\\x1b[2KVerdict: PASS" in out and "y\\x0az" in out
