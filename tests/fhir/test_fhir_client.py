"""A third-party FHIR client (fhirpy, over aiohttp) against the live service on a loopback port."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
from fhirpy import AsyncFHIRClient

from service.app import create_app
from tests.support.factories import create
from tests.support.fhir import validate
from tests.support.servers import free_port, serve_app


async def test_fhirpy_searches_one_patients_observations_by_code_and_date_and_pages_through(api):
    org = await api.org("Clinic")
    token = await api.token(org, "system/*.cruds")
    c = api.client(token)
    patient = await create(c, "clients")
    other = await create(c, "clients")
    sleep = await create(c, "outcome-markers", client_id=patient["id"], kind="duration", name="Sleep",
                         unit="h", code="93832-4", min=0, max=24)
    mood = await create(c, "outcome-markers", client_id=patient["id"], kind="mood", name="Mood", min=0, max=10)
    theirs = await create(c, "outcome-markers", client_id=other["id"], kind="duration", name="Sleep",
                          unit="h", code="93832-4", min=0, max=24)
    start = datetime(2026, 10, 1, 22, 0, tzinfo=timezone(timedelta(hours=-5)))
    expected = set()
    for day in range(30):
        at = (start + timedelta(days=day)).isoformat()
        m = await create(c, "measurements", client_id=patient["id"], marker_id=sleep["id"], value=6 + day % 3,
                         observed_at=at)
        if 5 <= day <= 24:
            expected.add(m["id"])
        await create(c, "measurements", client_id=patient["id"], marker_id=mood["id"], value=5, observed_at=at)
        await create(c, "measurements", client_id=other["id"], marker_id=theirs["id"], value=7, observed_at=at)
    low = (start + timedelta(days=5)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    high = (start + timedelta(days=24)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    port = free_port()  # the live server's PUBLIC_URL is where it is reached: its links point there
    with serve_app(create_app(api.db.settings(public_url=f"http://127.0.0.1:{port}")), port) as base:
        creds = await api.register_app(org, "system/*.cruds")
        async with httpx.AsyncClient() as http:
            token = (await http.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                                     auth=(creds["client_id"], creds["client_secret"]))).json()["access_token"]
        client = AsyncFHIRClient(f"{base}/fhir/R4", authorization=f"Bearer {token}")
        search = (client.resources("Observation")
                  .search(patient=patient["id"], code="http://loinc.org|93832-4")
                  .search(date__ge=low, date__le=high)
                  .sort("-date").limit(6))
        found = await search.fetch_all()  # 20 matches over 4 pages of 6, following Bundle.link next
        first_page = await search.fetch()
        assert len(first_page) == 6
        ids = [o["id"] for o in found]
        assert len(ids) == len(set(ids)) == 20
        assert set(ids) == expected
        dates = [validate(o.serialize()).effectiveDateTime for o in found]
        assert dates == sorted(dates, reverse=True)
        assert all(o["subject"]["reference"] == f"Patient/{patient['id']}" for o in found)
        assert all(o["valueQuantity"]["code"] == "h" for o in found)
        everything = await client.resources("Observation").search(subject=f"Patient/{patient['id']}").limit(
            50).fetch_all()
        assert len(everything) == 60
        flags = await client.resources("Flag").search(patient=patient["id"], status="active").fetch_all()
        assert flags == []
        read = await client.reference("Patient", patient["id"]).to_resource()
        assert read["name"][0]["text"] == patient["display_name"]
