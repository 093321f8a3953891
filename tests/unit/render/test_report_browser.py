"""The HTML audit report in a real browser: headless Chromium loads it, the verdict
and the lineage graph render, nothing is logged to the console, and it prints to PDF.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (.ci/run installs
them). Only where Chromium cannot be installed are these tests skipped, and they
say so. Set MLSPEC_UPDATE_SCREENSHOT=1 to refresh docs/report.png from this run.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, Project, build_lifecycle

from mlspec_attest.cli.main import main
from mlspec_attest.render.html import render_html

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed here (Debian: apt-get install chromium chromium-driver, as .ci/run does); "
           "the HTML report's browser test cannot run")


def chromium(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Headless, offline-ish, isolated profile; console messages go to stderr as ':CONSOLE' lines."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={tmp / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
            "--hide-scrollbars", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit non-interlaced RGB/RGBA PNG (what Chromium writes) with the stdlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line) if bpp == 3 else bytes(v for j in range(0, stride, 4) for v in line[j:j + 3]))
        prev = line
    return width, height, rows


def count_color(rows: list[bytes], rgb: tuple[int, int, int]) -> int:
    needle = bytes(rgb)
    return sum(sum(1 for i in range(0, len(r), 3) if r[i:i + 3] == needle) for r in rows)


def test_console_error_detection_works(tmp_path: Path) -> None:
    """Control: a page that does log errors is caught, so the real check below cannot pass vacuously."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><p>x</p><script>console.error('boom'); missingFn();</script>")
    result = chromium(bad.as_uri(), tmp_path, "--dump-dom")
    assert len(console_errors(result.stderr)) >= 2, result.stderr[-2000:]


def test_report_renders_in_chromium(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_lifecycle(project)
    monkeypatch.chdir(project.root)  # relative paths in the report, as a user would type them
    out = CliRunner().invoke(main, ["report", "bundle", "--html", "report.html", "--policy",
                                    "policies/default.yaml", "--artifacts", "."], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    page = project.root / "report.html"

    dom = chromium(page.as_uri(), tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == []
    assert re.search(r'id="verdict"[^>]*data-verdict="pass"', dom.stdout)
    assert re.search(r'<span class="word">PASS</span>', dom.stdout)
    assert dom.stdout.count('class="node stage"') == 13
    assert dom.stdout.count('class="node artifact match"') == 9  # evaluation.json and test.json: same bytes, one node

    shot = tmp_path / "report.png"  # half scale keeps the stdlib PNG decode fast
    shown = chromium(page.as_uri(), tmp_path, "--window-size=1100,3300", "--force-device-scale-factor=0.5",
                     f"--screenshot={shot}")
    assert shot.is_file(), shown.stderr[-2000:]
    assert console_errors(shown.stderr) == []
    width, height, rows = png_pixels(shot)
    assert (width, height) == (550, 1650)
    # The graph drew: stage boxes (#ddf4ff) and matching-artifact boxes (#dafbe1) cover real area,
    # far more than the legend swatches could; rows as wide as the PASS banner are not counted.
    assert count_color(rows, (0xdd, 0xf4, 0xff)) > 13 * 500
    assert count_color([r for r in rows if count_color([r], (0xda, 0xfb, 0xe1)) < 300],
                       (0xda, 0xfb, 0xe1)) > 8 * 500

    pdf = tmp_path / "report.pdf"
    printed = chromium(page.as_uri(), tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-", printed.stderr[-2000:]
    assert pdf.stat().st_size > 20_000

    if os.environ.get("MLSPEC_UPDATE_SCREENSHOT") == "1":
        full = REPO / "docs" / "report.png"
        chromium(page.as_uri(), tmp_path, "--window-size=1100,3300", f"--screenshot={full}")
        assert full.is_file()


def test_hostile_report_executes_nothing_in_chromium(tmp_path: Path) -> None:
    from conftest import hostile_report

    page = tmp_path / "hostile.html"
    page.write_text(render_html(hostile_report()), encoding="utf-8")
    dom = chromium(page.as_uri(), tmp_path, "--dump-dom")
    assert console_errors(dom.stderr) == []
    lowered = dom.stdout.lower()
    assert "<script" not in lowered and "<img" not in lowered
    assert 'data-verdict="fail"' in dom.stdout
