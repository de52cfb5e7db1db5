"""The FHIR R4 facade over the demo caseload: every resource validates (R4B models), reads, vreads,
history, searches with paging, CodeSystems and the CapabilityStatement."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.fhir import FHIR, FHIR_JSON, all_pages, demo_org, validate


async def test_every_resource_the_facade_returns_validates_as_r4(api):
    org = await demo_org(api)
    c = api.client(await api.token(org, "system/*.cruds"))
    meta = await api.http.get(f"{FHIR}/metadata")  # no token: discovery is public
    assert meta.status_code == 200
    assert meta.headers["content-type"].startswith(FHIR_JSON)
    cap = validate(meta.json())
    assert cap.fhirVersion == "4.0.1"
    assert {r.type for r in cap.rest[0].resource} == {"Patient", "Goal", "Observation", "Flag", "CodeSystem",
                                                      "QuestionnaireResponse", "Group", "Questionnaire"}
    seen: dict[str, int] = {}
    for fhir_type in ("Patient", "Goal", "Observation", "Flag"):
        resources = await all_pages(c, f"{FHIR}/{fhir_type}?_count=7")
        assert resources, fhir_type
        assert len({r["id"] for r in resources}) == len(resources), "paging repeated a resource"
        seen[fhir_type] = len(resources)
        for res in resources:
            validate(res)
            one = await c.get(f"{FHIR}/{fhir_type}/{res['id']}")
            assert one.status_code == 200, one.text
            assert one.json() == res
            assert one.headers["etag"] == f'W/"{res["meta"]["versionId"]}"'
            v1 = await c.get(f"{FHIR}/{fhir_type}/{res['id']}/_history/1")
            assert v1.status_code == 200
            validate(v1.json())
            hist = await c.get(f"{FHIR}/{fhir_type}/{res['id']}/_history")
            assert hist.status_code == 200
            bundle = validate(hist.json())
            assert bundle.type == "history"
            assert bundle.entry[0].resource.meta.versionId == res["meta"]["versionId"]
    assert seen["Patient"] == 3
    observations = await all_pages(c, f"{FHIR}/Observation?_count=500")
    kinds = {cat["coding"][0]["code"] for o in observations for cat in o["category"]}
    assert {"survey", "activity", "social-history", "strength", "protective-factor", "exception"} <= kinds
    for cs in ("observation-category", "strength-domain", "strength-kind", "protective-factor-category",
               "observation-code", "exception-condition", "safety-alert-status", "outcome-marker"):
        r = await api.http.get(f"{FHIR}/CodeSystem/{cs}")
        assert r.status_code == 200, cs
        validate(r.json())


async def test_panels_goals_and_flags_carry_the_mapped_codes(api):
    org = await demo_org(api)
    c = api.client(await api.token(org, "system/*.cruds"))
    maya = (await all_pages(c, f"{FHIR}/Patient?identifier=urn:demo:ehr:mrn|MRN-1001"))
    assert [p["name"][0]["text"] for p in maya] == ["Maya R."]
    pid = maya[0]["id"]
    phq = await all_pages(c, f"{FHIR}/Observation?patient=Patient/{pid}&code=http://loinc.org|44249-1&_sort=-date")
    assert phq
    dates = [o["effectiveDateTime"] for o in phq]
    assert [validate(o).effectiveDateTime for o in phq] == sorted((validate(o).effectiveDateTime for o in phq),
                                                                   reverse=True), dates
    panel = phq[-1]
    codes = [comp["code"]["coding"][0]["code"] for comp in panel["component"]]
    assert codes[:9] == ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3",
                         "44260-8"]
    assert codes[9] == "44261-6"
    assert panel["component"][9]["valueQuantity"]["code"] == "{score}"
    assert panel["category"][0]["coding"][0]["code"] == "survey"
    by_total = await all_pages(c, f"{FHIR}/Observation?patient={pid}&code=44261-6")
    assert {o["id"] for o in by_total} == {o["id"] for o in phq}

    goals = await all_pages(c, f"{FHIR}/Goal?subject=Patient/{pid}&lifecycle-status=active")
    assert goals
    g = goals[0]
    strength_refs = [e["valueReference"]["reference"] for e in g["extension"]
                     if e["url"] == "http://hl7.org/fhir/StructureDefinition/workflow-protectiveFactor"]
    assert strength_refs
    assert all(ref.startswith("Observation/strength-") for ref in strength_refs)
    for ref in strength_refs:
        s = (await c.get(f"{FHIR}/{ref}")).json()
        assert s["code"]["coding"][0]["code"] == "strength"
        assert s["subject"]["reference"] == f"Patient/{pid}"
    assert g["achievementStatus"]["coding"][0]["code"] in {"in-progress", "improving", "worsening", "no-change",
                                                           "achieved", "not-achieved"}
    assert g["target"][0]["detailQuantity"]["comparator"] == ">="

    # Amara's first PHQ-9 endorses item 9: the demo's one safety alert
    amara = (await all_pages(c, f"{FHIR}/Patient?identifier=urn:demo:ehr:mrn|MRN-1003"))[0]["id"]
    [flagged] = await all_pages(c, f"{FHIR}/Observation?patient=Patient/{amara}&code=http://loinc.org|44249-1")
    flags = await all_pages(c, f"{FHIR}/Flag?patient=Patient/{amara}&status=active")
    assert flags
    assert all(f["category"][0]["coding"][0]["code"] == "safety" for f in flags)
    assert await all_pages(c, f"{FHIR}/Flag?patient=Patient/{amara}&status=inactive") == []
    assert await all_pages(c, f"{FHIR}/Flag?patient=Patient/{pid}") == []
    measured = [e["valueReference"]["reference"] for f in flags for e in f["extension"] if "valueReference" in e]
    assert any(ref.removeprefix("Observation/") == flagged["id"] for ref in measured)

    strengths = await all_pages(c, f"{FHIR}/Observation?patient={pid}&category=strength")
    assert len(strengths) == 3
    relational = await all_pages(
        c, f"{FHIR}/Observation?patient={pid}&category=https://strengths-api.dev/fhir/CodeSystem/strength-domain"
           "|relational")
    assert [o["valueString"] for o in relational] == ["help-seeking"]


async def test_date_prefixes_and_last_updated(api):
    org = await demo_org(api)
    c = api.client(await api.token(org, "system/*.cruds"))
    everything = await all_pages(c, f"{FHIR}/Observation?category=survey,activity&_count=500")
    dated = sorted(validate(o).effectiveDateTime for o in everything)
    middle = dated[len(dated) // 2]
    stamp = middle.isoformat().replace("+00:00", "Z")
    from urllib.parse import quote

    ge = await all_pages(c, f"{FHIR}/Observation?category=survey,activity&date=ge{quote(stamp)}&_count=500")
    lt = await all_pages(c, f"{FHIR}/Observation?category=survey,activity&date=lt{quote(stamp)}&_count=500")
    assert len(ge) + len(lt) == len(everything)
    assert all(validate(o).effectiveDateTime >= middle for o in ge)
    assert all(validate(o).effectiveDateTime < middle for o in lt)
    # A date alone is its day (or month) in UTC: so are the observations' times compared with it, whatever their own
    # offset (the demo is dated from today: 2026-10-31T20:00-05:00 is in November).
    def utc(when: datetime) -> datetime:
        return when.astimezone(UTC)

    month, day_of = utc(middle).strftime("%Y-%m"), utc(middle).strftime("%Y-%m-%d")
    day = await all_pages(c, f"{FHIR}/Observation?date={month}&date=le{day_of}&_count=500")
    assert all(utc(validate(o).effectiveDateTime).strftime("%Y-%m") == month for o in day)
    assert all(utc(validate(o).effectiveDateTime).strftime("%Y-%m-%d") <= day_of for o in day)
    assert day
    assert await all_pages(c, f"{FHIR}/Patient?_lastUpdated=lt2000-01-01") == []
    assert len(await all_pages(c, f"{FHIR}/Patient?_lastUpdated=ge2000-01-01")) == 3


def test_fhir_operations_document_operation_outcome_and_every_ref_resolves(api):
    doc = api.app.openapi()
    text = str(doc)
    for ref in {part.split("'")[0] for part in text.split("'$ref': '")[1:]}:
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref
    fhir_ops = [(p, op) for p, item in doc["paths"].items() if p.startswith("/fhir/") for op in item.values()]
    assert len(fhir_ops) >= 19
    for path, op in fhir_ops:
        if path in ("/fhir/R4/metadata", "/fhir/R4/CodeSystem/{code_system_id}",
                    "/fhir/R4/.well-known/smart-configuration", "/fhir/R4/Questionnaire/{questionnaire_id}"):
            continue
        # Bulk Data spans types: system/*.s (each type's own s is then checked, tests/fhir/test_fhir_bulk.py).
        assert op["security"][0]["OAuth2"][0].split("/")[1].split(".")[0] in {
            "Patient", "Goal", "Observation", "Flag", "QuestionnaireResponse", "Group", "*"}
        for code in ("401", "403"):
            assert FHIR_JSON in op["responses"][code]["content"], (path, code)
