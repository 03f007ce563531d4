#!/usr/bin/env python3
"""Render a report's ``report.html`` in headless Chromium and check what a reader would see.

    python scripts/check_report_html.py runs/demo/report/report.html [--screenshot shot.png]

The page promises to work from disk with nothing but a browser, so this is checked in a real one,
not by reading the HTML. Checks, each printed as ``ok`` or ``FAIL``:

- the rendered DOM holds the results table (``#results-table``, at least one body row) and the
  accuracy plot (an ``<svg>`` with bars inside ``#accuracy-plot``);
- nothing reached the console: Chromium prints every console message of the page to stderr under
  ``--enable-logging=stderr`` (uncaught errors as ``"Uncaught ..."``); the page has no scripts,
  so any message at all is a failure;
- no resource failed to load and none was requested from outside the file system: a probe script
  is put at the top of a temporary copy of the page (with ``<base href>`` at the original folder,
  so relative paths resolve the same) that records load errors and ``performance`` resource
  entries on ``<html>``, where ``--dump-dom`` shows them. The original page is never changed;
- the screenshot (of the original page) is a PNG of the requested width.

Exit status: 0 when every check passes, 1 when one fails, 2 when no Chromium binary is found
(``--chromium``, ``$CHROMIUM``, or ``chromium`` / ``chromium-browser`` / ``google-chrome`` on
PATH; Debian: ``apt-get install chromium``). No DevTools protocol and no Python packages needed.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
PROBE_ID = "__report_check_probe"
# Records load errors, uncaught errors and every resource fetched, as attributes of <html>.
PROBE = f"""<script id="{PROBE_ID}">(function () {{
  var root = document.documentElement, errors = [];
  function keep() {{ root.setAttribute("data-check-errors", JSON.stringify(errors)); }}
  window.addEventListener("error", function (e) {{
    var t = e.target;
    errors.push(t && t !== window && (t.src || t.href) ? "failed to load " + (t.src || t.href)
                                                       : "uncaught: " + e.message);
    keep();
  }}, true);
  window.addEventListener("load", function () {{
    var names = performance.getEntriesByType("resource").map(function (r) {{ return r.name; }});
    root.setAttribute("data-check-resources", JSON.stringify(names));
    keep();
  }});
}})();</script>"""
PROBE = " ".join(line.strip() for line in PROBE.splitlines())  # one line: the page's line numbers stay right
CONSOLE = re.compile(r':CONSOLE[:(]?\d*\)?\] "(?P<message>.*)", source: (?P<source>.*)$')
REMOTE = re.compile(r"^\s*(?:(?:https?|ftp|wss?):)?//", re.IGNORECASE)  # http://, https://, //host
LOCAL_SCHEMES = ("file:", "data:", "about:")


def find_chromium(explicit: str | None = None) -> str | None:
    """The browser binary: ``explicit``, ``$CHROMIUM``, or the first of :data:`BINARIES` on PATH."""
    for candidate in (explicit, os.environ.get("CHROMIUM"), *BINARIES):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@dataclass
class Rendered:
    """What the rendered DOM shows; filled by :class:`DomReader`."""

    table_rows: int = 0
    has_table: bool = False
    plot_bars: int = 0
    has_plot_svg: bool = False
    scripts: int = 0  # other than the probe
    remote_refs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    resources: list[str] | None = None  # None: the probe never reported (the load event never came)


class DomReader(html.parser.HTMLParser):
    """Reads a ``--dump-dom`` serialisation into :class:`Rendered` (figures and tables don't nest here)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Rendered()
        self._in_table = self._in_body = self._in_plot = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.out.errors = json.loads(a.get("data-check-errors") or "[]")
            if "data-check-resources" in a:
                self.out.resources = json.loads(a["data-check-resources"])
        for key in ("src", "href"):
            if key in a and REMOTE.match(a[key]):
                self.out.remote_refs.append(f"<{tag} {key}={a[key]!r}>")
        if tag == "script" and a.get("id") != PROBE_ID:
            self.out.scripts += 1
        elif tag == "table" and a.get("id") == "results-table":
            self._in_table = self.out.has_table = True
        elif tag == "tbody" and self._in_table:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.out.table_rows += 1
        elif tag == "figure" and a.get("id") == "accuracy-plot":
            self._in_plot = True
        elif tag == "svg" and self._in_plot:
            self.out.has_plot_svg = True
        elif tag == "rect" and self._in_plot and "bar" in a.get("class", "").split():
            self.out.plot_bars += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = self._in_body = False
        elif tag == "tbody":
            self._in_body = False
        elif tag == "figure":
            self._in_plot = False


def instrumented_copy(page: Path, folder: Path) -> Path:
    """A copy of ``page`` in ``folder`` with ``<base>`` at the page's folder and the probe first
    in ``<head>`` (before anything can fail to load)."""
    text = page.read_text(encoding="utf-8")
    base = f'<base href="{page.parent.resolve().as_uri()}/">'
    head = re.search(r"<head\b[^>]*>", text, re.IGNORECASE)
    at = head.end() if head else 0
    copy = folder / "probe.html"
    copy.write_text(text[:at] + base + PROBE + text[at:], encoding="utf-8")
    return copy


def run_browser(binary: str, args: list[str], profile: Path, timeout: float) -> tuple[int, str, str]:
    """Run headless Chromium in its own process group (killed whole on timeout: it forks helpers)."""
    command = [binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return 124, out, err + f"\n(timed out after {timeout:g} s)"
    return proc.returncode, out, err


def console_messages(stderr: str, copy: Path | None = None, page: Path | None = None) -> list[str]:
    """``message (source)`` of every console line Chromium logged, the probe copy's address
    shown as the page's (the probe is one line inside ``<head>``, so line numbers agree)."""
    found = (CONSOLE.search(line) for line in stderr.splitlines())
    messages = [f"{m['message']} ({m['source']})" for m in found if m]
    if copy is not None and page is not None:
        messages = [m.replace(copy.as_uri(), page.resolve().as_uri()) for m in messages]
    return messages


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk; None when the file is not a PNG."""
    head = path.read_bytes()[:24] if path.is_file() else b""
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def check(page: Path, screenshot: Path, binary: str, width: int, height: int, timeout: float) -> list[tuple[bool, str]]:
    """Every check as (passed, line)."""
    results: list[tuple[bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="report-check-") as tmp:
        copy = instrumented_copy(page, Path(tmp))
        rc, dom, err = run_browser(binary, ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000",
                                            "--dump-dom", copy.as_uri()], Path(tmp) / "profile", timeout)
        if rc != 0 or not dom.strip():
            tail = "\n".join(err.strip().splitlines()[-5:])
            return [(False, f"chromium --dump-dom exited {rc} with {len(dom)} characters of DOM:\n{tail}")]
        reader = DomReader()
        reader.feed(dom)
        seen = reader.out
        results.append((seen.has_table and seen.table_rows > 0,
                        f"results table in the rendered DOM: {seen.table_rows} row(s)" if seen.has_table
                        else "results table (#results-table) missing from the rendered DOM"))
        results.append((seen.has_plot_svg and seen.plot_bars > 0,
                        f"accuracy plot in the rendered DOM: inline SVG with {seen.plot_bars} bar(s)"
                        if seen.has_plot_svg else "accuracy plot (an <svg> in #accuracy-plot) missing from the DOM"))
        console = console_messages(err, copy, page)
        results.append((not console, "console: no messages" if not console
                        else "console messages:\n    " + "\n    ".join(console)))
        results.append((not seen.errors, "no load or script errors" if not seen.errors
                        else "errors:\n    " + "\n    ".join(seen.errors)))
        remote = [r for r in seen.resources or [] if not r.startswith(LOCAL_SCHEMES)] + seen.remote_refs
        results.append((seen.resources is not None and not remote,
                        "the probe never reported (no load event)" if seen.resources is None
                        else "no external resources" if not remote
                        else "external resources:\n    " + "\n    ".join(remote)))
        results.append((seen.scripts == 0, f"{seen.scripts} script element(s) in the page"))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        rc, _, err = run_browser(binary, [f"--window-size={width},{height}", f"--screenshot={screenshot.resolve()}",
                                          page.resolve().as_uri()], Path(tmp) / "profile-shot", timeout)
        size = png_size(screenshot)
        results.append((size is not None and size[0] == width,
                        f"screenshot {screenshot} ({size[0]}x{size[1]} px)" if size
                        else f"no screenshot written (chromium exited {rc})"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the report.html to check")
    parser.add_argument("--screenshot", type=Path, help="PNG to write (default: report-screenshot.png beside "
                        "the page)")
    parser.add_argument("--chromium", help="browser binary (default: $CHROMIUM or chromium on PATH)")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per browser run")
    ns = parser.parse_args(argv)
    if not ns.page.is_file():
        print(f"check_report_html: no such file {ns.page}", file=sys.stderr)
        return 2
    binary = find_chromium(ns.chromium)
    if binary is None:
        print("check_report_html: no Chromium found (--chromium, $CHROMIUM, or chromium on PATH; Debian: "
              "apt-get install chromium)", file=sys.stderr)
        return 2
    screenshot = ns.screenshot or ns.page.with_name("report-screenshot.png")
    results = check(ns.page, screenshot, binary, ns.width, ns.height, ns.timeout)
    for passed, line in results:
        print(("ok    " if passed else "FAIL  ") + line)
    failed = sum(not passed for passed, _ in results)
    print(f"{ns.page}: {'all checks passed' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
