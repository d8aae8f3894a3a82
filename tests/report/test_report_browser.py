"""A run's report.html in a real headless browser (Debian's chromium; skipped without it).

The page is the tiny run's (``tests/pipeline/tiny.toml`` through :mod:`lidplug.pipeline`, the
session fixture of ``conftest.py``), as ``lidplug evaluate`` writes it.

A probe script is injected at the top of a copy of the page: it records uncaught errors, failed
resource loads and ``console.error`` calls, and after the load event writes the number of images
and the broken ones into the DOM, which ``--dump-dom`` prints. Chromium's own console log
(``--enable-logging=stderr``) is checked too. A deliberately broken page proves both checks bite.
"""

import json
import re
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")

_PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) {
    window.__errors.push("failed to load " + String(t.src || t.href).slice(0, 60));
  } else {
    window.__errors.push("uncaught: " + e.message);
  }
}, true);
var __consoleError = console.error;
console.error = function () {
  window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var out = document.createElement("pre");
  out.id = "lidplug-probe";
  out.textContent = JSON.stringify({images: images.length, svgs: document.querySelectorAll("svg").length,
    broken: broken.map(function (i) { return i.alt; }), errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def _render(html: str, tmp_path) -> tuple[dict, list[str]]:
    """Open ``html`` (with the probe) in headless chromium: (probe result, console log lines)."""
    assert "<head>" in html
    page = tmp_path / "probed.html"
    page.write_text(html.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="lidplug-probe">(.*?)</pre>', run.stdout, re.S)
    assert found, f"no probe output (exit {run.returncode}): {run.stderr[-2000:]}"
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")), console


@pytest.fixture(scope="module")
def report_html(tiny_run):
    return tiny_run.html


def test_run_report_renders_cleanly(report_html, tmp_path):
    probe, console = _render(report_html, tmp_path)
    assert probe["images"] == report_html.count("<img ")
    assert probe["images"] > 0 and probe["svgs"] >= 3
    assert probe["broken"] == [] and probe["errors"] == [] and console == []


def test_a_broken_report_is_caught(report_html, tmp_path):
    broken = report_html.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1)
    broken = broken.replace("</body>", "<script>notDefinedAnywhere();</script></body>")
    probe, console = _render(broken, tmp_path)
    assert len(probe["broken"]) == 1
    assert any("notDefinedAnywhere" in e for e in probe["errors"])
    assert any("notDefinedAnywhere" in line for line in console)
