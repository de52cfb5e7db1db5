"""A token from an app link is a patient-context app token on every path: REST, GraphQL and FHIR answer it
exactly as they answer the token of an app registered for that one client (`apps create --patient`) with the
same scopes; revoking the link (or the family) refuses it at once on every path, and on every instance."""

from __future__ import annotations

import uuid

from tests.support.factories import create
from tests.support.gqlkit import gql
from tests.support.harness import Api
from tests.support.oauth import register
from tests.support.patient_apps import linked

SCOPES = "patient/Client.rs patient/Measurement.crs patient/OutcomeMarker.rs patient/Strength.rs"
GRAPHQL = """query($me: UUID!, $other: UUID!) {
  me: client(id: $me) { id displayName strengths { edges { node { id label } } } }
  other: client(id: $other) { id }
  clients { edges { node { id } } }
  measurements { edges { node { id clientId value } } }
}"""


async def requests_of(api: Api, token: str, me: str, other: str, other_strength: str) -> list[tuple[int, object]]:
    c = api.client(token)
    out: list[tuple[int, object]] = []
    for path in (f"/v1/clients/{me}", f"/v1/clients/{other}", "/v1/measurements", "/v1/strengths",
                 f"/v1/strengths/{other_strength}", f"/fhir/R4/Patient/{me}", f"/fhir/R4/Patient/{other}",
                 f"/fhir/R4/Observation?patient={other}", "/fhir/R4/Observation", f"/v1/clients/{me}/app-links"):
        resp = await c.get(path)
        body = resp.json()
        if isinstance(body, dict):  # what differs between two requests by design
            body = {k: v for k, v in body.items() if k not in ("meta", "link", "id", "instance")} \
                if body.get("resourceType") == "Bundle" else body
        out.append((resp.status_code, body))
    body = await gql(c, GRAPHQL, {"me": me, "other": other})
    out.append((200, body))
    return out


async def test_graphql_fhir_and_rest_answer_a_link_token_as_a_patient_app_token(api):
    setup = await linked(api, scopes=SCOPES)
    me = setup.client["id"]
    marker = await create(setup.staff, "outcome-markers", client_id=me)
    await create(setup.staff, "measurements", client_id=me, marker_id=marker["id"])
    await create(setup.staff, "strengths", client_id=me)
    other = await create(setup.staff, "clients")
    other_strength = await create(setup.staff, "strengths", client_id=other["id"])
    await create(setup.staff, "measurements", client_id=other["id"])

    creds = await register(api, setup.org, SCOPES, patient=uuid.UUID(me))
    bound = (await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                 auth=(creds["client_id"], creds["client_secret"]))).json()
    link_token = setup.tokens["access_token"]
    assert setup.tokens["scope"] == bound["scope"] == SCOPES
    assert setup.tokens["patient"] == bound["patient"] == me

    via_link = await requests_of(api, link_token, me, other["id"], other_strength["id"])
    via_app = await requests_of(api, bound["access_token"], me, other["id"], other_strength["id"])
    assert via_link == via_app
    statuses = [s for s, _ in via_link]
    assert statuses == [200, 404, 200, 200, 404, 200, 404, 200, 200, 403, 200]
    graph = via_link[-1][1]["data"]
    assert graph["me"]["id"] == me
    assert graph["other"] is None
    assert [e["node"]["id"] for e in graph["clients"]["edges"]] == [me]
    assert {e["node"]["clientId"] for e in graph["measurements"]["edges"]} == {me}

    # Revoking the link refuses its token on every path at once; the bound app's token is untouched.
    assert (await setup.staff.delete(f"/v1/clients/{me}/app-links/{setup.link['id']}")).status_code == 204
    c = api.client(link_token)
    for resp in (await c.get(f"/v1/clients/{me}"), await c.get(f"/fhir/R4/Patient/{me}"),
                 await c.post("/graphql", json={"query": "{ clients { edges { node { id } } } }"})):
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"].startswith("Bearer")
    assert (await api.client(bound["access_token"]).get(f"/v1/clients/{me}")).status_code == 200
    introspected = await api.http.post("/oauth/introspect", data={"token": link_token},
                                       auth=(creds["client_id"], creds["client_secret"]))
    assert introspected.json() == {"active": False}


async def test_revocation_reaches_another_instance_at_once(api):
    """Two app instances on one database (two workers behind a balancer): a family revoked through one is refused
    by the other on its very next request, its verified-token cache notwithstanding."""
    setup = await linked(api)
    me, token = setup.client["id"], setup.tokens["access_token"]
    async with Api.start(api.db) as other:
        assert (await other.client(token).get(f"/v1/clients/{me}")).status_code == 200  # now in its cache
        assert (await other.client(token).get(f"/fhir/R4/Patient/{me}")).status_code == 200
        revoked = await api.http.post("/oauth/revoke", data={"token": setup.tokens["refresh_token"],
                                                             "client_id": setup.app["client_id"]})
        assert revoked.status_code == 200
        assert (await other.client(token).get(f"/v1/clients/{me}")).status_code == 401
        assert (await other.client(token).get(f"/fhir/R4/Patient/{me}")).status_code == 401
        gone = await other.client(token).post("/graphql", json={"query": "{ clients { edges { node { id } } } }"})
        assert gone.status_code == 401
