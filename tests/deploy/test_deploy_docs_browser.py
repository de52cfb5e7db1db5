"""/docs in a real headless Chromium (issue 13): hospital networks block CDNs, so Swagger UI's assets come from the
service itself. Every host but 127.0.0.1 is unresolvable for the browser, the network log shows no request to any
other host, the operations are listed, and a screenshot is saved under tests/artifacts/."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from service.settings import PROJECT_ROOT
from tests.support.servers import free_port, serve, wait_ready

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium; .ci/run does it as root)"
)


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--user-data-dir={profile}",
         "--virtual-time-budget=15000", "--window-size=1280,2400", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


async def test_docs_render_offline_in_chromium(db, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/docs"
    proc = serve(port, tmp_path, DATABASE_URL=db.app_url, MIGRATION_DATABASE_URL=db.owner_url)
    try:
        await wait_ready(proc, f"http://127.0.0.1:{port}", 90)
        netlog = tmp_path / "netlog.json"
        dom = chromium(tmp_path / "profile-dom", f"--log-net-log={netlog}", "--dump-dom", url)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "docs.png"
        shot.unlink(missing_ok=True)
        pic = chromium(tmp_path / "profile-shot", f"--screenshot={shot}", url)
    finally:
        proc.terminate()
        proc.wait(30)

    html = dom.stdout
    assert "swagger-ui" in html, dom.stderr[-2000:]
    assert html.count('class="opblock-summary-path"') + html.count("opblock-summary-path ") >= 20, html[:2000]
    for path in ("/v1/clients", "/v1/measurements/batch", "/oauth/token"):
        assert f">{path}<" in html or f'data-path="{path}"' in html, path
    assert "Strengths &amp; Goals API" in html or "Strengths & Goals API" in html

    page = _page_requests(netlog)  # what the page asked for (the browser's own update pings are not the page's)
    assert {urlsplit(u).path for u in page} >= {"/docs", "/static/docs/swagger-ui-bundle.js",
                                                 "/static/docs/swagger-ui.css", "/openapi.json"}, page
    hosts = {urlsplit(u).hostname for u in page}
    assert hosts == {"127.0.0.1"}, hosts  # no asset from a CDN or any other host

    assert pic.returncode == 0, pic.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def _page_requests(netlog: Path) -> set[str]:
    """URLs of the requests the page made, from Chromium's net log: requests keyed to the page's site.

    (Chromium's own background services also try to reach their hosts; the resolver rules leave them unresolvable,
    so they cannot leave the machine, and they are not the page's.)
    """
    text = netlog.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # the log may end without its closing brackets
        data = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls: set[str] = set()
    for event in data.get("events", []):
        params = event.get("params") or {}
        if event.get("type") == start_job and "127.0.0.1" in str(params.get("network_isolation_key", "")):
            urls.add(params["url"])
    return urls
