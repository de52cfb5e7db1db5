"""The committed OpenAPI document passes the linters integrators run: Redocly's recommended ruleset and Spectral's
spectral:oas, pinned in tools/openapi-lint (installed with `npm ci`, as `make lint` does), with no error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from service.settings import PROJECT_ROOT

TOOLS = PROJECT_ROOT / "tools" / "openapi-lint"
DOCUMENT = PROJECT_ROOT / "openapi" / "openapi.json"
ENV = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "NO_COLOR": "1"}

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="node and npm are not installed: the OpenAPI linters are Node programs")


@pytest.fixture(scope="module")
def linters() -> None:
    if not (TOOLS / "node_modules" / ".package-lock.json").exists():
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=TOOLS, env=ENV, check=True, timeout=600)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["npx", "--no-install", *args], cwd=TOOLS, env=ENV, capture_output=True, text=True,
                          timeout=300)


def test_redocly_recommended_reports_no_error(linters):
    out = _run("redocly", "lint", "--extends=recommended", "--format=json", str(DOCUMENT))
    report = json.loads(out.stdout)
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    assert errors == [], [(p["ruleId"], p["message"]) for p in errors[:20]]
    assert out.returncode == 0, out.stderr[-2000:]


def test_spectral_oas_reports_no_error(linters):
    out = _run("spectral", "lint", "--ruleset", ".spectral.yaml", "--format=json", "--fail-severity=error",
               str(DOCUMENT))
    report, _ = json.JSONDecoder().raw_decode(out.stdout)  # followed by a sentence when there is no error
    errors = [p for p in report if p["severity"] == 0]
    assert errors == [], [(p["code"], p["message"], p["path"]) for p in errors[:20]]
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_document_declares_what_the_linters_cannot_see():
    doc = json.loads(DOCUMENT.read_text())
    assert doc["servers"] == [{"url": "/", "description": doc["servers"][0]["description"]}]
    declared = {t["name"] for t in doc["tags"]}
    assert all(t["description"] for t in doc["tags"])
    for item in [*doc["paths"].values(), *doc["webhooks"].values()]:
        for op in item.values():
            assert set(op["tags"]) <= declared
            assert op["description"], op["operationId"]
            assert "security" in op, op["operationId"]
            medias = [m for r in op["responses"].values() for m in r.get("content", {}).values()]
            medias += list(op.get("requestBody", {}).get("content", {}).values())
            assert any("example" in m or "examples" in m for m in medias), op["operationId"]
    text = json.dumps(doc)
    assert '"ge":' not in text
    assert '"le":' not in text
    rating = doc["components"]["schemas"]["StrengthUseIn"]["properties"]["rating"]["anyOf"][0]
    assert (rating["minimum"], rating["maximum"]) == (0, 10)
    public = {"token", "introspect", "revoke", "oauth_metadata", "smart_configuration", "jwks", "fhir_capabilities"}
    ops = {op["operationId"]: op for item in doc["paths"].values() for op in item.values()}
    for name in public:
        assert ops[name]["security"] == [], name
    assert ops["token"]["responses"]["200"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/TokenResponse"}
    outcome = doc["components"]["schemas"]["OperationOutcome"]["properties"]["issue"]
    assert outcome["items"]["required"] == ["severity", "code"]
