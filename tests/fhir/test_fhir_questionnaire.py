"""PHQ-9 and GAD-7 as QuestionnaireResponse (SDC, the LOINC questionnaires): create through the one measurement
service (scoring, validation, safety rules in the same transaction), read, search, and the Questionnaires."""

from __future__ import annotations

from typing import Any

from service.fhir import codes
from tests.support.factories import create
from tests.support.fhir import FHIR, all_pages, validate
from tests.support.questionnaires import ANSWERS, GAD7, GAD7_ITEMS, PHQ9, PHQ9_ITEMS
from tests.support.questionnaires import post_questionnaire_response as post
from tests.support.questionnaires import questionnaire_response as response

ALL = "system/*.cruds"


async def setup(api: Any, scopes: str = ALL) -> tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any]]:
    org = await api.org()
    c = api.client(await api.token(org, scopes))
    client = await create(c, "clients")
    phq = await create(c, "outcome-markers", client_id=client["id"], kind="instrument", instrument="phq9",
                       name="PHQ-9")
    gad = await create(c, "outcome-markers", client_id=client["id"], kind="instrument", instrument="gad7",
                       name="GAD-7")
    return c, client, phq, gad


async def test_phq9_with_item_9_endorsed_creates_measurement_total_and_alert_in_one_transaction(api):
    c, client, phq, _ = await setup(api)
    r = await post(c, response(client["id"], [1, 1, 1, 1, 1, 1, 1, 1, 1], total=9))
    assert r.status_code == 201, r.text
    qr = r.json()
    validate(qr)
    assert r.headers["location"].startswith(f"http://testserver{FHIR}/QuestionnaireResponse/{qr['id']}/_history/1")
    assert r.headers["etag"] == 'W/"1"'
    # The measurement, scored by the service, and the alert it opened.
    m = (await c.get(f"/v1/measurements/{qr['id']}")).json()
    assert (m["marker_id"], m["items"], m["value"]) == (phq["id"], [1] * 9, 9)
    alerts = (await c.get(f"/v1/safety-alerts?client_id={client['id']}")).json()["data"]
    assert [a["measurement_id"] for a in alerts] == [qr["id"]]
    # The response names the alert: a reference to its Flag.
    opened = [e["valueReference"]["reference"] for e in qr["extension"] if e["url"] == codes.SD_SAFETY_ALERT]
    assert opened == [f"Flag/{alerts[0]['id']}"]
    flag = await c.get(f"{FHIR}/{opened[0]}")
    assert flag.status_code == 200
    # One transaction: the measurement's and the alert's change-feed rows carry the same transaction id.
    txids = await api.db.fetch("SELECT collection, txid FROM changes WHERE record_id = ANY($1::uuid[])",
                               [qr["id"], alerts[0]["id"]])
    assert {r["collection"] for r in txids} == {"measurements", "safety-alerts"}
    assert len({r["txid"] for r in txids}) == 1
    # The total as the LOINC total item, the items as LOINC answers.
    assert qr["item"][-1] == {"linkId": "/44261-6", "text": "Patient health questionnaire 9 item total score",
                              "answer": [{"valueInteger": 9}]}
    assert qr["item"][8]["answer"][0]["valueCoding"]["code"] == "LA6569-3"
    assert qr["questionnaire"] == PHQ9


async def test_alert_thresholds_at_the_boundaries_and_the_outcome_outcome_preference(api):
    c, client, _, _ = await setup(api)
    below = await post(c, response(client["id"], [3, 3, 3, 3, 3, 2, 1, 1, 0]))  # total 19, item 9 = 0
    assert below.status_code == 201, below.text
    assert not [e for e in below.json().get("extension", []) if e["url"] == codes.SD_SAFETY_ALERT]
    at = await post(c, response(client["id"], [3, 3, 3, 3, 3, 2, 2, 1, 0]), Prefer="return=OperationOutcome")
    assert at.status_code == 201, at.text  # total 20: the severe band
    body = at.json()
    validate(body)
    assert body["resourceType"] == "OperationOutcome"
    warnings = [i for i in body["issue"] if i["severity"] == "warning"]
    assert len(warnings) == 1
    assert "Flag/" in warnings[0]["diagnostics"]
    gad = await post(c, response(client["id"], [3, 3, 3, 2, 2, 1, 1], questionnaire=GAD7))  # GAD-7 total 15
    assert gad.status_code == 201, gad.text
    assert [e for e in gad.json()["extension"] if e["url"] == codes.SD_SAFETY_ALERT]
    gad14 = await post(c, response(client["id"], [3, 3, 3, 2, 1, 1, 1], questionnaire=GAD7))
    assert not [e for e in gad14.json()["extension"] if e["url"] == codes.SD_SAFETY_ALERT]
    alerts = (await c.get(f"/v1/safety-alerts?client_id={client['id']}")).json()["data"]
    assert len(alerts) == 2


async def test_an_invalid_response_creates_nothing(api):
    c, client, _, _ = await setup(api)
    pid = client["id"]
    out_of_range = response(pid, [1] * 9)
    out_of_range["item"][8]["answer"] = [{"valueInteger": 4}]
    cases = [
        (out_of_range, "QuestionnaireResponse.item.where(linkId='/44260-8')"),
        (response(pid, [1] * 8), "QuestionnaireResponse.item"),  # item 9 missing: incomplete
        (response(pid, [1] * 9, total=10), "QuestionnaireResponse.item.where(linkId='/44261-6')"),
        ({**response(pid, [1] * 9), "status": "in-progress"}, "QuestionnaireResponse.status"),
        ({**response(pid, [1] * 9), "questionnaire": "http://example.org/Questionnaire/phq"},
         "QuestionnaireResponse.questionnaire"),
        ({**response(pid, [1] * 9), "authored": "2026-11-20T09:30:00"}, "QuestionnaireResponse.authored"),
        ({**response(pid, [1] * 9), "item": [*response(pid, [1] * 9)["item"], {"linkId": "/69722-7", "answer": [
            {"valueCoding": {"code": "LA6572-7"}}]}]}, "QuestionnaireResponse.item[9]"),
        ({**response(pid, [1] * 9), "subject": {"reference": "Patient/5b1f0a57-0000-4000-8000-000000000000"}},
         "QuestionnaireResponse.subject"),
    ]
    for body, where in cases:
        r = await post(c, body)
        assert r.status_code == 422, (where, r.status_code, r.text)
        oo = r.json()
        validate(oo)
        assert where in [e for i in oo["issue"] for e in i.get("expression", [])], (where, oo)
    assert (await post(c, {"resourceType": "Observation"})).status_code == 400
    assert (await c.post(f"{FHIR}/QuestionnaireResponse", content=b"x", headers={"Content-Type": "text/plain"})
            ).status_code == 415
    assert await api.db.fetchval("SELECT count(*) FROM measurements") == 0
    assert await api.db.fetchval("SELECT count(*) FROM safety_alerts") == 0
    assert await api.db.fetchval("SELECT count(*) FROM changes WHERE collection = 'measurements'") == 0


async def test_read_search_and_round_trip(api):
    c, client, phq, gad = await setup(api)
    other = await create(c, "clients")
    await create(c, "outcome-markers", client_id=other["id"], kind="instrument", instrument="phq9", name="PHQ-9")
    mood = await create(c, "outcome-markers", client_id=client["id"], kind="mood", name="Mood", min=0, max=10)
    plain = await create(c, "measurements", client_id=client["id"], marker_id=mood["id"], value=4)
    made = []
    for day in range(1, 6):
        body = response(client["id"], [day % 4] * 9, authored=f"2026-10-0{day}T08:00:00Z",
                        identifier={"system": "urn:app:mood", "value": f"qr-{day}"})
        r = await post(c, body)
        assert r.status_code == 201, r.text
        made.append(r.json())
    g = await post(c, response(client["id"], [0] * 7, questionnaire=GAD7))
    assert (await post(c, response(other["id"], [0] * 9))).status_code == 201
    # Read: equal to what create answered; a measurement of a marker that is no instrument is no response.
    one = await c.get(f"{FHIR}/QuestionnaireResponse/{made[0]['id']}")
    assert one.status_code == 200
    assert one.json() == made[0]
    assert one.json()["identifier"] == {"system": "urn:app:mood", "value": "qr-1"}
    assert (await c.get(f"{FHIR}/QuestionnaireResponse/{plain['id']}")).status_code == 404
    assert (await c.get(f"{FHIR}/QuestionnaireResponse/{plain['id']}/_history")).status_code == 404
    assert (await c.get(f"{FHIR}/QuestionnaireResponse/{made[0]['id']}/_history/1")).json() == made[0]
    # Search by patient and questionnaire, paged; authored; every page an R4 Bundle.
    url = f"{FHIR}/QuestionnaireResponse?patient=Patient/{client['id']}&questionnaire={PHQ9}&_count=2"
    found = await all_pages(c, url)
    assert [r["id"] for r in found] == [r["id"] for r in made]
    assert {r["id"] for r in await all_pages(c, f"{FHIR}/QuestionnaireResponse?patient={client['id']}")} == \
        {r["id"] for r in made} | {g.json()["id"]}
    assert [r["id"] for r in await all_pages(c, f"{FHIR}/QuestionnaireResponse?questionnaire={GAD7}")] == \
        [g.json()["id"]]
    dated = await all_pages(c, f"{FHIR}/QuestionnaireResponse?patient={client['id']}&authored=ge2026-10-02"
                               f"&authored=lt2026-10-04")
    assert [r["id"] for r in dated] == [made[1]["id"], made[2]["id"]]
    for r in found:
        validate(r)
    # The Observation of the same measurement derives from the response (US Core's pattern).
    obs = (await c.get(f"{FHIR}/Observation/{made[0]['id']}")).json()
    assert obs["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{made[0]['id']}"}]
    # What we emit, we take: a read response posted back (without its id and identifier) is stored again.
    again = {k: v for k, v in made[1].items() if k not in ("id", "meta", "identifier")}
    r = await post(c, again)
    assert r.status_code == 201, r.text
    assert r.json()["item"] == made[1]["item"]
    # The marker extension names one marker when a patient has several of an instrument.
    await create(c, "outcome-markers", client_id=client["id"], kind="instrument", instrument="phq9", name="PHQ-9 b")
    assert (await post(c, response(client["id"], [0] * 9))).status_code == 422
    named = response(client["id"], [0] * 9, extension=[{"url": codes.SD_OUTCOME_MARKER, "valueCoding": {
        "system": codes.system("outcome-marker"), "code": phq["id"]}}])
    assert (await post(c, named)).status_code == 201
    _ = gad


async def test_questionnaires_are_published_and_listed_in_the_capability_statement(api):
    for panel, items in (("44249-1", PHQ9_ITEMS), ("69737-5", GAD7_ITEMS)):
        r = await api.http.get(f"{FHIR}/Questionnaire/{panel}")
        assert r.status_code == 200
        q = r.json()
        validate(q)
        assert q["url"] == f"http://loinc.org/q/{panel}"
        assert [i["linkId"] for i in q["item"]][:-1] == [f"/{code}" for code in items]
        assert [o["valueCoding"]["code"] for o in q["item"][0]["answerOption"]] == ANSWERS
    assert (await api.http.get(f"{FHIR}/Questionnaire/nope")).status_code == 404
    cap = (await api.http.get(f"{FHIR}/metadata")).json()
    validate(cap)
    resources = {r["type"]: r for r in cap["rest"][0]["resource"]}
    assert {"create", "read", "search-type"} <= {i["code"] for i in resources["QuestionnaireResponse"]["interaction"]}
    assert {p["name"] for p in resources["QuestionnaireResponse"]["searchParam"]} >= {"patient", "questionnaire",
                                                                                      "authored"}
    assert resources["Group"]["operation"][0]["definition"].endswith("/group-export")
    assert resources["Patient"]["operation"][0]["definition"].endswith("/patient-export")
    assert cap["rest"][0]["operation"][0]["name"] == "export"
    smart = (await api.http.get(f"{FHIR}/.well-known/smart-configuration")).json()
    assert {"system/QuestionnaireResponse.rs", "system/Group.rs", "system/*.rs"} <= set(smart["scopes_supported"])
