"""A Python client generated from the committed OpenAPI document by openapi-python-client (no warnings), used
unmodified against the live service on a loopback port: a token, a create, a list and a 422."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from service.settings import PROJECT_ROOT
from tests.support.harness import Api
from tests.support.oauth import live_server

DOCUMENT = PROJECT_ROOT / "openapi" / "openapi.json"
CONFIG = PROJECT_ROOT / "tools" / "openapi-python-client.yaml"
PACKAGE = "strengths_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    bin_dir = Path(sys.executable).parent  # openapi-python-client and ruff (its post hooks) of this environment
    run = subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(DOCUMENT), "--meta", "none",
         "--output-path", str(out / PACKAGE), "--config", str(CONFIG)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "warning" not in report.lower(), report
    assert "skipping" not in report.lower(), report
    return out


def _module(generated: Path, name: str):  # noqa: ANN202 - a generated module
    if str(generated) not in sys.path:
        sys.path.insert(0, str(generated))
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_every_operation_is_generated(generated):
    api_dir = generated / PACKAGE / "api"
    modules = {p.stem for p in api_dir.rglob("*.py") if p.stem != "__init__"}
    assert {"token", "introspect", "create_strength", "list_strengths", "fhir_create_observation",
            "fhir_search_observation", "bulk_import", "read_client_progress_chart",
            "rotate_webhook_secret", "ping_webhook_subscription", "redeliver_webhook_delivery"} <= modules


async def test_the_generated_client_gets_a_token_creates_lists_and_reads_a_422(generated, db):
    client_mod = _module(generated, "client")
    models = _module(generated, "models")
    token_api = _module(generated, "api.o_auth.token")
    create_client = _module(generated, "api.clients.create_client")
    create_strength = _module(generated, "api.strengths.create_strength")
    list_strengths = _module(generated, "api.strengths.list_strengths")

    helper = Api(app=None, http=None, db=db)  # type: ignore[arg-type] - org and app registration only
    org = await helper.org()
    app = await helper.register_app(org, "system/*.cruds")
    with live_server(db) as base:
        anonymous = client_mod.Client(base_url=base)
        got = await token_api.asyncio_detailed(client=anonymous, body=models.TokenBody(
            grant_type=models.TokenBodyGrantType.CLIENT_CREDENTIALS, client_id=app["client_id"],
            client_secret=app["client_secret"], scope="system/*.cruds"))
        assert got.status_code == 200, got.content
        assert isinstance(got.parsed, models.TokenResponse)
        assert got.parsed.token_type == "Bearer"

        authed = client_mod.AuthenticatedClient(base_url=base, token=got.parsed.access_token)
        person = await create_client.asyncio_detailed(client=authed, body=models.ClientIn(display_name="Sam"))
        assert person.status_code == 201, person.content
        made = await create_strength.asyncio_detailed(client=authed, body=models.StrengthIn(
            client_id=person.parsed.id, domain=models.StrengthDomain.RELATIONAL, kind=models.StrengthKind.SKILL,
            label="asks for help"))
        assert made.status_code == 201, made.content
        assert isinstance(made.parsed, models.Strength)
        assert made.parsed.label == "asks for help"

        page = await list_strengths.asyncio_detailed(client=authed, client_id=person.parsed.id)
        assert page.status_code == 200, page.content
        assert isinstance(page.parsed, models.StrengthPage)
        assert [s.id for s in page.parsed.data] == [made.parsed.id]

        refused = await create_strength.asyncio_detailed(client=authed, body=models.StrengthIn(
            client_id=uuid.uuid4(), domain=models.StrengthDomain.RELATIONAL, kind=models.StrengthKind.SKILL,
            label="asks for help"))
        assert refused.status_code == 422, refused.content
        assert isinstance(refused.parsed, models.Problem)
        assert refused.parsed.status == 422
        assert refused.parsed.errors[0].field == "client_id"
