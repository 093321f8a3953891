"""One self-contained HTML audit report: archivable, attachable, printable.

No network, no scripts, no external fonts: inline CSS and an inline SVG graph,
so the file renders the same in ten years from an archive. Every value that
comes from an attestation is hostile until escaped: all of it goes through
``html.escape`` (text and attributes alike), and nothing from a bundle is ever
placed in a tag name, an attribute name, a URL or a style.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from typing import Any

from mlspec_attest._version import __version__
from mlspec_attest.model.report import ERROR, Report

ROW_H = 34  # one artifact line in the graph
BOX_H = 26
STAGE_X, STAGE_W = 12, 190
ART_X, ART_W = 360, 330
SVG_W = ART_X + ART_W + 12
NAME_CHARS = 40

STATUS_LABEL = {"match": "present, matches", "differs": "present, DIFFERS", "absent": "absent",
                "not-checked": "not checked"}

CSS = """
:root { --ok:#1a7f37; --bad:#cf222e; --warn:#9a6700; --muted:#57606a; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:#1f2328; margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px;
     border-bottom: 1px solid var(--line); padding-bottom: 4px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
              font-size: 12px; word-break: break-all; }
.meta { color: var(--muted); margin: 2px 0; }
.verdict { display: flex; align-items: center; gap: 16px; padding: 14px 18px; border-radius: 8px;
           border: 2px solid; margin: 16px 0; }
.verdict .word { font-size: 28px; font-weight: 700; letter-spacing: .04em; }
.verdict.pass { border-color: var(--ok); background: #dafbe1; color: #0a3a18; }
.verdict.fail { border-color: var(--bad); background: #ffebe9; color: #5c0a10; }
.verdict.incomplete { border-color: var(--warn); background: #fff8c5; color: #4d3800; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--line); }
th { background: #f6f8fa; font-weight: 600; }
tr { break-inside: avoid; page-break-inside: avoid; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); font-weight: 600; } .muted { color: var(--muted); } .nowrap { white-space: nowrap; }
.graph { border: 1px solid var(--line); border-radius: 6px; padding: 8px; overflow-x: auto; }
.graph svg { max-width: 100%; height: auto; display: block; }
.legend span { display: inline-block; margin-right: 14px; }
.sw { display:inline-block; width: 12px; height: 12px; border: 1px solid #888; vertical-align: -1px; margin-right: 4px; }
pre { background: #f6f8fa; padding: 10px 12px; border-radius: 6px; overflow-x: auto; white-space: pre-wrap; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
@page { margin: 14mm; }
@media print {
  body { padding: 0; max-width: none; font-size: 11px; }
  .verdict, th, .sw, svg * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .graph { border: none; padding: 0; overflow: visible; }
  section { break-inside: auto; }
  pre { white-space: pre-wrap; }
}
"""

FILL = {"match": "#dafbe1", "differs": "#ffebe9", "absent": "#eaeef2", "not-checked": "#ffffff"}
STROKE = {"match": "#1a7f37", "differs": "#cf222e", "absent": "#8c959f", "not-checked": "#57606a"}


def e(value: Any) -> str:
    """Escape for text and quoted attributes alike; a non-UTF-8 byte of a file name is shown as ``\\udcff``."""
    return html.escape(_utf8_safe("" if value is None else str(value)), quote=True)


def _utf8_safe(text: str) -> str:
    """``text`` with surrogates (undecodable bytes of a planted file name) in escaped form, so it encodes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _short(text: str, n: int = NAME_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _mark(ok: bool | None, warn: bool = False) -> str:
    if ok is None:
        return '<span class="muted">–</span>'
    if ok:
        return '<span class="ok">✓</span>'
    return '<span class="warn">!</span>' if warn else '<span class="bad">✗</span>'


# -- the graph -----------------------------------------------------------------------------------
def render_lineage_svg(lineage: dict[str, Any]) -> str:
    """Deterministic layered drawing: stages top to bottom in chain order on the left, each
    artifact on its own line on the right, at the row of the stage that first produced it
    (external inputs at their first consumer). Solid arrows: stage produced artifact;
    dashed arrows: artifact consumed by a later stage. Full digests are in <title> tooltips."""
    nodes = {n["id"]: n for n in lineage.get("nodes", [])}
    stages = sorted((n for n in nodes.values() if n["kind"] == "stage"), key=lambda n: n["sequence"])
    edges = lineage.get("edges", [])
    first_row: dict[str, str] = {}
    for st in stages:  # produced (or externally consumed) artifacts take the row of their first stage
        for edge in edges:
            if edge["as"] == "subject" and edge["from"] == st["id"]:
                first_row.setdefault(edge["to"], st["id"])
            elif edge["as"] == "material" and edge["to"] == st["id"] and nodes[edge["from"]].get("external"):
                first_row.setdefault(edge["from"], st["id"])
    for edge in edges:  # anything left (e.g. a material of an unreadable producer)
        if edge["as"] == "material":
            first_row.setdefault(edge["from"], edge["to"])
    pos: dict[str, tuple[float, float]] = {}  # node id -> (x of left edge, y of top)
    y = 12.0
    for st in stages:
        arts = sorted((a for a, s in first_row.items() if s == st["id"]),
                      key=lambda a: (nodes[a]["name"], nodes[a]["sha256"]))
        pos[st["id"]] = (STAGE_X, y + (max(1, len(arts)) * ROW_H - ROW_H) / 2)
        for k, a in enumerate(arts):
            pos[a] = (ART_X, y + k * ROW_H)
        y += max(1, len(arts)) * ROW_H + 10
    height = int(y + 4)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="lineage" role="img" viewBox="0 0 {SVG_W} {height}" '
           f'width="{SVG_W}" height="{height}" font-family="system-ui, sans-serif" font-size="12">',
           "<title>Lineage: stages and the artifacts they consumed and produced</title>",
           '<defs><marker id="arrow-p" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1a7f37"/></marker>'
           '<marker id="arrow-c" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#0969da"/></marker></defs>',
           '<g class="edges" fill="none">']
    for i, edge in enumerate(edges):
        if edge["from"] not in pos or edge["to"] not in pos:
            continue
        if edge["as"] == "subject":
            (sx, sy), (ax, ay) = pos[edge["from"]], pos[edge["to"]]
            x1, y1, x2, y2 = sx + STAGE_W, sy + BOX_H / 2, ax, ay + BOX_H / 2
            path = f"M{x1:.0f},{y1:.0f} C{x1 + 70:.0f},{y1:.0f} {x2 - 70:.0f},{y2:.0f} {x2 - 1:.0f},{y2:.0f}"
            out.append(f'<path class="edge produced" d="{path}" stroke="#1a7f37" stroke-width="1.4" '
                       'marker-end="url(#arrow-p)"/>')
        else:
            (ax, ay), (sx, sy) = pos[edge["from"]], pos[edge["to"]]
            x1, y1, x2, y2 = ax, ay + BOX_H / 2, sx + STAGE_W, sy + BOX_H / 2
            bend = 40 + (i % 5) * 14  # fan the curves out a little so parallel edges stay distinct
            path = f"M{x1:.0f},{y1:.0f} C{x1 - bend:.0f},{y1:.0f} {x2 + bend:.0f},{y2:.0f} {x2 + 1:.0f},{y2:.0f}"
            out.append(f'<path class="edge consumed" d="{path}" stroke="#0969da" stroke-width="1.2" '
                       'stroke-dasharray="5 3" marker-end="url(#arrow-c)"/>')
    out.append("</g>")
    for st in stages:
        x, y0 = pos[st["id"]]
        signers = ", ".join(st.get("signers") or []) or "unverified"
        tip = (f"sequence {st['sequence']}: {st['stage']}\nsigned by {signers}\n"
               f"time {st.get('time') or '-'}")
        out.append(f'<g class="node stage"><title>{e(tip)}</title>'
                   f'<rect x="{x}" y="{y0:.0f}" width="{STAGE_W}" height="{BOX_H}" rx="5" fill="#ddf4ff" '
                   'stroke="#0969da"/>'
                   f'<text x="{x + 8}" y="{y0 + 17:.0f}" font-weight="600">{e(st["sequence"])} · '
                   f'{e(_short(str(st["stage"]), 14))}</text>'
                   f'<text x="{x + STAGE_W - 8}" y="{y0 + 17:.0f}" text-anchor="end" fill="#57606a">'
                   f'{e(_short(signers, 12))}</text></g>')
    for aid, (x, y0) in sorted(pos.items(), key=lambda kv: kv[1][1]):
        node = nodes[aid]
        if node["kind"] != "artifact":
            continue
        status = node.get("status", "not-checked")
        roles = ", ".join(node.get("roles") or [])
        tip = (f"{', '.join(node.get('names') or [node['name']])}\nsha256 {node['sha256']}\n"
               f"{'roles ' + roles + chr(10) if roles else ''}{STATUS_LABEL.get(status, status)}"
               f"{chr(10) + 'external input' if node.get('external') else ''}")
        label = _short(str(node["name"]), 30)
        dash = ' stroke-dasharray="3 2"' if node.get("external") else ""
        out.append(f'<g class="node artifact {e(status)}"><title>{e(tip)}</title>'
                   f'<rect x="{x}" y="{y0:.0f}" width="{ART_W}" height="{BOX_H}" rx="3" '
                   f'fill="{FILL.get(status, "#fff")}" stroke="{STROKE.get(status, "#57606a")}"'
                   f'{dash}/>'
                   f'<text x="{x + 8}" y="{y0 + 17:.0f}">{e(label)}</text>'
                   f'<text x="{x + ART_W - 8}" y="{y0 + 17:.0f}" text-anchor="end" fill="#57606a" '
                   f'font-family="ui-monospace, monospace" font-size="11">{e(node["sha256"][:12])}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


# -- the page -------------------------------------------------------------------------------------
def _table(head: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """Cells are pre-escaped HTML fragments; headers are plain text."""
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{e(cls)}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _values(values: dict[str, Any]) -> str:
    if not values:
        return '<span class="muted">no values read</span>'
    return "<br>".join(f"<code>{e(k)}</code> = <code>{e(v)}</code>" for k, v in values.items())


def render_html(report: Report, replay: Any = None, *, title: str = "mlspec audit report") -> str:
    """The whole report as one HTML string; ``replay`` (a ReplayResult) adds artifacts and re-derivation."""
    from mlspec_attest.audit.replay import build_lineage

    verdict = replay.verdict if replay is not None else report.verdict
    errors = [f for f in report.findings if f.severity == ERROR]
    warnings = [f for f in report.findings if f.severity != ERROR]
    lineage = replay.lineage if replay is not None else build_lineage(report.stages, [])  # type: ignore[arg-type]
    by_seq = {en.sequence: en for en in (replay.timeline() if replay is not None else [])}

    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network at all: forbid every fetch, including images and fonts.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        f"<title>{e(title)}: {e(verdict.upper())}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{e(title)}</h1>",
        f'<p class="meta">bundle <code>{e(report.bundle)}</code></p>',
        f'<p class="meta">policy <code>{e(report.policy)}</code> sha256 <code>{e(report.policy_sha256)}</code></p>',
        f'<p class="meta">verified at {e(report.verified_at)} by mlspec-attest {e(__version__)}</p></header>',
        f'<section id="verdict" class="verdict {e(verdict)}" data-verdict="{e(verdict)}">'
        f'<span class="word">{e(verdict.upper())}</span><span>',
        f"{len(report.stages)} attestations · {len(errors)} errors · {len(warnings)} warnings",
    ]
    if replay is not None:
        c = replay.counts()
        parts.append(f"<br>policy verifier: {e(report.verdict.upper())} · independent replay of chain and "
                     f"signatures: {'sound' if replay.chain_ok else 'BROKEN'} · artifacts: {c['match']} match, "
                     f"{c['differs']} differ, {c['absent']} absent, {c['not-checked']} not checked")
    parts.append("</span></section>")
    branch = getattr(replay, "branch", None) if replay is not None else None
    if branch is not None:  # mlspec run branch: where this run came from (unsigned provenance)
        text = branch.get("error") or (
            f"branched at sequence {branch['fromSequence']} from {branch['source']} (which then ended at sequence "
            f"{branch['sourceSequence']}) on {branch['branchedAt']}"
            + ("" if branch["matches"] else "; the note does not match this chain's genesis and branch point"))
        parts.append(f'<p class="meta" id="branch">{_mark(bool(branch.get("matches")))} {e(text)} '
                     '<span class="muted">(branch.json: unsigned provenance; the gate judges the signed chain)'
                     '</span></p>')

    # Objectives.
    parts.append('<section id="objectives"><h2>Objectives (codified before training)</h2>')
    if report.objectives:
        rows = [[_mark(o.passed, warn=o.severity != "block"), f"<b>{e(o.name)}</b><br>"
                 f'<span class="muted">{e(o.description)}</span>', e(o.stage), f"<code>{e(o.expression)}</code>",
                 e(o.severity), _values(o.values), e(o.message)] for o in report.objectives]
        parts.append(_table(["", "criterion", "stage", "expression", "severity", "values seen", "result"], rows))
    else:
        parts.append('<p class="muted">No objectives were evaluated (no authentic objectives attestation).</p>')
    parts.append("</section>")

    # Stage checklist.
    parts.append('<section id="stages"><h2>Stages</h2>')
    rows = []
    for s in report.stages:
        found = [f for f in report.findings if f.sequence == s.sequence]
        rep = by_seq.get(s.sequence)
        replay_cell = '<span class="muted">–</span>'
        if rep is not None:
            replay_cell = (f"canonical {_mark(rep.canonical)} · signature {e(rep.signature_status)}"
                           + "".join(f'<br><span class="bad">{e(p)}</span>' for p in rep.problems))
        rows.append([_mark(s.ok), e(s.sequence), f"<b>{e(s.stage)}</b>", e(", ".join(s.signers) or "unverified"),
                     f'<span class="nowrap">{e(s.time or "")}</span>', f"<code>{e(s.file)}</code><br><code>{e(s.payload_sha256)}</code>",
                     replay_cell, "<br>".join(f"<code>{e(f.code)}</code>" for f in found) or "—"])
    parts.append(_table(["", "seq", "stage", "signed by", "time", "file · payload sha256", "replay", "findings"],
                        rows) if rows else '<p class="muted">No readable attestations.</p>')
    parts.append("</section>")

    # Lineage graph and artifact table.
    parts.append('<section id="lineage-section"><h2>Lineage</h2>'
                 '<p class="legend"><span><span class="sw" style="background:#ddf4ff"></span>stage</span>'
                 '<span><span class="sw" style="background:#dafbe1"></span>artifact present, matches</span>'
                 '<span><span class="sw" style="background:#ffebe9"></span>present, differs</span>'
                 '<span><span class="sw" style="background:#eaeef2"></span>absent</span>'
                 '<span><span class="sw" style="background:#fff"></span>not checked</span>'
                 '<span>solid arrow: produced · dashed: consumed · hover for digests</span></p>'
                 f'<div class="graph">{render_lineage_svg(lineage)}</div>')
    art_rows = []
    for n in (n for n in lineage.get("nodes", []) if n["kind"] == "artifact"):
        art_rows.append([e(", ".join(n.get("names") or [n["name"]])), f"<code>{e(n['sha256'])}</code>",
                         e(", ".join(n.get("roles") or [])) + (" (external)" if n.get("external") else ""),
                         e(STATUS_LABEL.get(n.get("status", ""), n.get("status")))])
    if art_rows:
        parts.append(_table(["artifact", "sha256", "roles", "status"], art_rows, "digests"))
    if replay is not None:
        notes = [a for a in replay.artifacts if a.note or a.status == "differs"]
        for a in notes:
            parts.append(f'<p class="{"bad" if a.status == "differs" else "muted"}">{e(a.name)}: '
                         f"{e(STATUS_LABEL.get(a.status, a.status))}"
                         f"{' (found sha256 ' + e(a.found_sha256) + ')' if a.found_sha256 and a.status == 'differs' else ''}"
                         f"{' — ' + e(a.note) if a.note else ''}</p>")
    parts.append("</section>")

    # Findings.
    parts.append('<section id="findings"><h2>Findings</h2>')
    # Replay and gate share one vocabulary: list only what the replay found that the gate did not.
    seen = {(f.code, f.sequence) for f in report.findings}
    replay_only = [f for f in (replay.findings if replay is not None else []) if (f.code, f.sequence) not in seen]
    if report.findings or replay_only:
        rows = [[_mark(False, warn=f.severity != ERROR), f"<code>{e(f.code)}</code>", e(f.severity),
                 e(f.stage or ""), e("" if f.sequence is None else f.sequence), e(f.message),
                 e(f.hint or "")] for f in report.findings]
        rows += [[_mark(False, warn=f.severity != ERROR), f"<code>{e(f.code)}</code>", f"{e(f.severity)} (replay)",
                  e(f.stage or ""), e("" if f.sequence is None else f.sequence), e(f.message), e(f.hint or "")]
                 for f in replay_only]
        parts.append(_table(["", "code", "severity", "stage", "seq", "message", "what to do"], rows))
    else:
        parts.append('<p class="ok">No findings.</p>')
    parts.append("</section>")

    # Reproduce.
    bundle, policy = report.bundle, report.policy or "POLICY.yaml"
    arts = replay.artifacts_dir if replay is not None and replay.artifacts_dir else "ARTIFACTS_DIR"
    parts.append('<section id="reproduce"><h2>Reproduce this check</h2>'
                 "<p>With mlspec-attest installed:</p><pre>"
                 f"mlspec verify {e(_q(bundle))} --policy {e(_q(policy))}\n"
                 f"mlspec replay {e(_q(bundle))} --policy {e(_q(policy))} --artifacts {e(_q(arts))}\n"
                 f"mlspec report {e(_q(bundle))} --policy {e(_q(policy))} --html report.html</pre>"
                 "<p>Without it (only the Python packages <code>cryptography</code> and <code>rfc8785</code>; "
                 "see docs/audit.md for the exact bytes hashed and signed). The script ships in the "
                 "mlspec-attest wheel and source (<code>docs/verify_standalone.py</code>); get a copy with "
                 "<code>mlspec standalone-script --out verify_standalone.py</code>, read it, then:</p><pre>"
                 f"python verify_standalone.py {e(_q(bundle))} {e(standalone_key_args(report.policy))}"
                 "</pre><p>The policy file must hash to the sha256 shown at the top of this report:</p>"
                 f"<pre>sha256sum {e(_q(policy))}</pre></section>")
    parts.append(f"<footer>Generated by mlspec-attest {e(__version__)} · schema "
                 "https://mlspec.dev/verify-output/v1 · this file loads nothing from the network.</footer>")
    parts.append("</body></html>")
    return _utf8_safe("\n".join(parts))  # the page is written as UTF-8: nothing in it may fail to encode


def standalone_key_args(policy_path: str | None) -> str:
    """--key/--stage-key flags for docs/verify_standalone.py that mirror the policy's signers.

    The most common signer set becomes --key; every stage that differs gets
    --stage-key STAGE=PEM, so the standalone check is as strict about who signed
    what as the policy (thresholds and the rest stay with ``mlspec verify``).
    """
    fallback = "--key PUBLIC_KEY.pub [--stage-key STAGE=PUBLIC_KEY.pub]"
    if not policy_path or not os.path.isfile(policy_path):
        return fallback
    try:
        from mlspec_attest.policy import Policy

        policy = Policy.from_file(policy_path)
    except Exception:  # a report must still render when the policy cannot be re-read
        return fallback
    paths = {name: os.path.normpath(key.source) for name, key in policy.keys.items()}
    sets = [tuple(sorted(rule.signers)) for rule in policy.stages.values() if rule.signers]
    if not sets:
        return fallback
    common = max(sorted(set(sets)), key=sets.count)
    args = [f"--key {_q(paths[n])}" for n in common]
    for name, rule in policy.stages.items():
        if rule.signers and tuple(sorted(rule.signers)) != common:
            args += [f"--stage-key {_q(name + '=' + paths[n])}" for n in rule.signers]
    return " ".join(args)


def _q(text: str) -> str:
    """Shell-quote a path for the copy-paste commands (escaped for HTML separately)."""
    import shlex

    return shlex.quote(os.fspath(text))
