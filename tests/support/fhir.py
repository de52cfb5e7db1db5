"""Shared helpers of the FHIR tests: the demo caseload, tokens, R4B validation and paging."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from service.db import make_engine
from service.demo import load_demo
from tests.support.harness import Api, AuthedClient, Org

FHIR = "/fhir/R4"
FHIR_JSON = "application/fhir+json"


async def demo_org(api: Api) -> Org:
    engine = make_engine(api.db.owner_url, api.db.settings(), pool=False)
    async with engine.begin() as conn:
        out = await load_demo(conn)
    await engine.dispose()
    return Org(id=out["organization"]["id"], name=out["organization"]["name"])


def validate(resource: dict[str, Any]) -> Any:
    """Parse with the fhir.resources R4B model of the resource's type (raises when it is not valid)."""
    return get_fhir_model_class(resource["resourceType"]).model_validate(resource)


async def all_pages(c: AuthedClient, url: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """Every resource of a search, following Bundle.link next; each page validates as an R4B Bundle."""
    out: list[dict[str, Any]] = []
    for _ in range(limit):
        r = await c.get(url)
        assert r.status_code == 200, (url, r.status_code, r.text)
        assert r.headers["content-type"].startswith(FHIR_JSON)
        bundle = r.json()
        validate(bundle)
        assert bundle["type"] == "searchset"
        out.extend(e["resource"] for e in bundle.get("entry", []))
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            return out
        url = nxt[0].removeprefix("http://testserver")
    raise AssertionError("paging did not end")
