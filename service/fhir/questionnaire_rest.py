"""QuestionnaireResponse create and the two Questionnaires (read, search, history and vread of responses are the
shared resource routes of service/fhir/rest.py)."""


from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request, Response

from service.api.dependencies import Db, IdempotencyKeyHeader
from service.api.http import is_json, loads_strict
from service.api.idempotency import idempotent
from service.auth.principal import Principal
from service.collections import service
from service.collections.registry import REGISTRY
from service.errors import NotFound, UnsupportedMediaType, ValidationFailed
from service.fhir import codes as c
from service.fhir import questionnaire_create, questionnaires, urls
from service.fhir.http import FHIR_JSON, FhirOut
from service.fhir.rest import (
    check,
    fhir_needs,
    fhir_responses,
    one_resource,
    resource_response,
)

CREATE_DOC = """Stores a completed PHQ-9 (questionnaire `http://loinc.org/q/44249-1`) or GAD-7
(`http://loinc.org/q/69737-5`) response as a measurement of the patient's instrument marker, through the same
measurement service as REST: scored by the server, validated, and checked by the safety rules in the same
transaction. Items by linkId (`/44250-9` ...), answers as LOINC codings (`LA6568-5` ...). An alert it opened is
named in the returned resource (extension `https://strengths-api.dev/fhir/StructureDefinition/safety-alert`,
a reference to the Flag); with `Prefer: return=OperationOutcome` the body is an OperationOutcome whose
warning names it."""


def _opened(resource: dict[str, Any]) -> list[str]:
    return [e["valueReference"]["reference"] for e in resource.get("extension", []) if e["url"] == c.SD_SAFETY_ALERT]


def _outcome_body(resource: dict[str, Any]) -> dict[str, Any]:
    """``Prefer: return=OperationOutcome``: what was created, and a warning per safety alert it opened."""
    issues: list[dict[str, Any]] = [{
        "severity": "information", "code": "informational",
        "diagnostics": f"Created QuestionnaireResponse/{resource['id']} (total score "
                       f"{resource['item'][-1]['answer'][0]['valueInteger']})"}]
    issues += [{"severity": "warning", "code": "informational", "expression": ["QuestionnaireResponse"],
                "details": {"coding": [{"system": "https://strengths-api.dev/problems",
                                        "code": "safety_alert_opened"}]},
                "diagnostics": f"A safety alert was opened: {ref}. Show crisis resources now; a clinician reviews "
                               "it."} for ref in _opened(resource)]
    return {"resourceType": "OperationOutcome", "issue": issues}


def add_routes(router: APIRouter) -> None:
    Creator = Annotated[Principal, fhir_needs("QuestionnaireResponse", "c")]

    @router.post(
        "/QuestionnaireResponse", status_code=201, operation_id="fhir_create_questionnaireresponse",
        response_model=None, summary="Create a QuestionnaireResponse (PHQ-9 or GAD-7; a measurement)",
        description=CREATE_DOC, responses=fhir_responses(201, "The created QuestionnaireResponse", 400, 401, 403,
                                                          409, 413, 415, 422),
        openapi_extra={"requestBody": {"required": True, "content": {FHIR_JSON: {"schema": {
            "type": "object", "description": "A FHIR R4 QuestionnaireResponse", "required": ["resourceType"]}}}}},
    )
    async def create_questionnaire_response(who: Creator, db: Db, request: Request,
                                            idempotency_key: IdempotencyKeyHeader = None) -> Response:
        check(who, "measurements", "c")
        if not is_json(request.headers.get("content-type")):
            raise UnsupportedMediaType("Send the QuestionnaireResponse as application/fhir+json")

        async def run() -> Response:
            body, spec = await questionnaire_create.measurement_body(db, who, loads_strict(await request.body()))
            try:
                record = await service.create(db, who, REGISTRY["measurements"], body)
            except ValidationFailed as exc:
                raise questionnaire_create.with_fhir_paths(exc, spec) from None
            resource = await one_resource(db, who, "QuestionnaireResponse", "measurements", record, str(record["id"]))
            location = f"{urls.base_url(request)}/QuestionnaireResponse/{resource['id']}/_history/{record['version']}"
            if "return=operationoutcome" in request.headers.get("prefer", "").lower():
                return FhirOut(_outcome_body(resource), status_code=201, headers={
                    "Location": location, "ETag": f'W/"{record["version"]}"', "Cache-Control": "no-store"})
            return resource_response(resource, 201, Location=location)

        return await idempotent(request, db, who, run, client_ids=_subject_ids)

    @router.get("/Questionnaire/{questionnaire_id}", operation_id="fhir_read_questionnaire", response_model=None,
                summary="Read a Questionnaire (PHQ-9 44249-1, GAD-7 69737-5)",
                responses=fhir_responses(200, "The LOINC questionnaire as this server takes it", 404))
    async def read_questionnaire(questionnaire_id: str) -> Response:
        resource = questionnaires.questionnaire(questionnaire_id)
        if resource is None:
            raise NotFound(f"No Questionnaire {questionnaire_id}; ours are "
                           f"{', '.join(questionnaires.QUESTIONNAIRE_IDS)}")
        return FhirOut(resource, headers={"Cache-Control": "public, max-age=3600"})


def _subject_ids(response: Response) -> list[str]:
    """The client a response is about, so that erasing the client also erases its stored replies."""
    body = orjson.loads(bytes(response.body))
    reference = (body.get("subject") or {}).get("reference", "") if body.get("resourceType") != "OperationOutcome" \
        else ""
    return [reference.rsplit("/", 1)[-1]] if reference else []
