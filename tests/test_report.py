"""sprkd report: one self-contained HTML page, checked as text and in a real headless browser (Debian's
chromium: .ci/run installs it; without it here the browser test is skipped, unless SPRKD_REQUIRE_BROWSER)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess

import pytest

from sprkd_cli.services.report import SECTIONS

from conftest import DATA, STUDENT_MODEL, STUDY_ARMS, assert_user_error, sprkd, sprkd_json

pytestmark = pytest.mark.slow  # the study fixture trains 15 small runs once per session


@pytest.fixture(scope="module")
def page(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = sprkd(study, "report", "--dataset", DATA, "--student", STUDENT_MODEL, "--output", str(out))
    assert result.exit_code == 0, (result.output, result.exception)
    assert str(out) in result.stdout.replace("\n", "")
    return out


def test_the_page_holds_every_section_and_needs_no_network(page):
    text = page.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text) and "<script" not in text  # nothing fetched
    comparison = text.split('<table class="comparison">')[1].split("</table>")[0]
    assert [a for a in STUDY_ARMS if f"<td>{a}</td>" in comparison] == list(STUDY_ARMS)
    assert "Welch&#x27;s t-test" in text or "Welch's t-test" in text  # the tests are named
    assert '<table class="stats-pairs">' in text and '<table class="tuning">' in text
    assert '<table class="hessian">' in text and '<table class="provenance">' in text
    assert "saddle_check" in text  # sprkd's teacher checks are not among the students' events; its NHE/PGD are
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) >= 2  # learning curves, events
    from PIL import Image

    for data in images:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.size[0] > 300 and len(image.convert("L").getcolors(1 << 16)) > 10  # a drawing, not a blank


def test_a_report_of_runs_by_id(study, tmp_path):
    runs = sprkd_json(study, "runs", "list", "--arm", "kd")
    out = tmp_path / "two.html"
    result = sprkd_json(study, "report", "--runs", ",".join(r["id"] for r in runs), "--output", str(out))
    assert result["arms"] == ["kd"] and result["runs"] == 2 and out.exists()
    assert_user_error(sprkd(study, "report", "--dataset", "synthetic:n=99,classes=2"), "no finished runs")


def test_the_page_in_headless_chromium(page, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("SPRKD_REQUIRE_BROWSER"):
            pytest.fail("SPRKD_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("no chromium here (apt-get install chromium; .ci/run installs it)")
    shot = tmp_path / "report.png"
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom.stdout
    assert dom.stdout.count("<table") >= 6
    done = subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    from PIL import Image

    image = Image.open(shot).convert("L")
    dark = sum(count for count, value in image.getcolors(1 << 16) if value < 200)
    assert dark > 0.01 * image.size[0] * image.size[1]  # text, tables and plots drawn, not a blank page
    keep = os.environ.get("SPRKD_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
