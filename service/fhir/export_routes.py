"""FHIR Bulk Data Access (v2) export over HTTP: kick-off (system, Patient, Group), status, manifest, download,
cancel. The service layer is service/fhir/export_jobs.py; the worker that runs the jobs, export_runner.py."""


from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from service import audit
from service.auth.principal import Principal
from service.auth.rest import needs_any
from service.collections.rest import Db
from service.errors import MalformedRequest, NotFound
from service.fhir import export_jobs as jobs
from service.fhir import urls
from service.fhir.group import caseload_id
from service.fhir.http import FHIR_JSON, FhirOut, outcome
from service.fhir.routes import OUTCOME_SCHEMA, fhir_responses
from service.http import JSONOut

Exporter = Annotated[Principal, needs_any("s")]
KNOWN = {"_type", "_since", "_outputFormat"}
TYPES = "|".join(jobs.EXPORT_TYPES)

TypeParam = Annotated[str | None, Query(
    alias="_type", pattern=f"^({TYPES})(,({TYPES}))*$",
    description=f"Comma-separated resource types ({', '.join(jobs.EXPORT_TYPES)}); default: every type the token "
                "may search")]
INSTANT = (r"^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
           r"(\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")
SinceParam = Annotated[str | None, Query(
    alias="_since", pattern=INSTANT, description="Only resources changed after this FHIR instant (with a time "
                                                 "zone), e.g. the transactionTime of the previous export")]
FormatParam = Annotated[str | None, Query(alias="_outputFormat", description="NDJSON (the default)",
                                          json_schema_extra={"enum": list(jobs.OUTPUT_FORMATS)})]
PreferHeader = Annotated[str, Header(
    alias="Prefer", max_length=200, pattern="respond-async",
    description="respond-async (required by Bulk Data); with handling=lenient, unsupported parameters are ignored")]

KICK_OFF_DOC = """Starts an asynchronous export (FHIR Bulk Data Access v2). Answers 202 with `Content-Location`:
poll that URL (202 with `X-Progress` and `Retry-After` while it runs; 200 with the manifest when done; `DELETE`
cancels). Files are NDJSON per resource type, downloaded with the same token, kept for
`BULK_EXPORT_RETENTION_HOURS`. Needs `s` on the exported types (e.g. `system/*.rs`); a patient-context token
exports its own patient only. Unsupported parameters are a 400 unless `Prefer: handling=lenient`."""


def _kick_off_responses(*more: int) -> dict[int | str, dict[str, Any]]:
    out = fhir_responses(202, "Accepted: poll the Content-Location URL", 400, 401, 403, *more)
    out[202]["headers"] = {"Content-Location": {"description": "The status URL", "schema": {"type": "string"}}}
    out[429] = {"description": "Too many exports of this organization queued or running",
                "content": {FHIR_JSON: {"schema": OUTCOME_SCHEMA}}}
    return out


def _status_responses() -> dict[int | str, dict[str, Any]]:
    out = fhir_responses(200, "Done: the manifest", 401, 403, 404)
    out[200]["content"] = {"application/json": {"schema": {"type": "object", "required": [
        "transactionTime", "request", "requiresAccessToken", "output", "error"]}}}
    out[202] = {"description": "Still running (X-Progress, Retry-After)", "headers": {
        "X-Progress": {"schema": {"type": "string"}}, "Retry-After": {"schema": {"type": "integer"}}}}
    out[500] = {"description": "The export failed", "content": {FHIR_JSON: {"schema": OUTCOME_SCHEMA}}}
    return out


async def _kick_off(request: Request, who: Principal, db: Any, level: str, group: str | None) -> Response:
    settings = request.app.state.ctx.settings
    group_id = caseload_id(group, who) if group is not None else None  # another organization's: 404 first
    params = urls.parameter_values(request, KNOWN, "$export")
    if "respond-async" not in request.headers.get("prefer", ""):
        raise MalformedRequest("Bulk Data kick-off needs Prefer: respond-async")
    jobs.parse_format(params.get("_outputFormat", []))
    ask = jobs.KickOff(
        level=level, group_id=group_id,
        types=jobs.parse_types(params.get("_type", [])), since=jobs.parse_since(params.get("_since", [])),
        request_url=settings.base_url + request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    job_id = await jobs.kick_off(db, who, settings, ask)
    status_url = f"{urls.base_url(request)}/$export-status/{job_id}"
    body = outcome(202, f"Export accepted; poll {status_url}", code="informational")
    body["issue"][0]["severity"] = "information"
    return FhirOut(body, status_code=202, headers={"Content-Location": status_url, "Cache-Control": "no-store"})


def add_routes(router: APIRouter) -> None:
    kick: dict[str, Any] = {"response_model": None, "status_code": 202, "description": KICK_OFF_DOC,
            "responses": _kick_off_responses()}

    @router.get("/$export", operation_id="fhir_export_system", summary="Bulk Data export: everything", **kick)
    async def export_system(who: Exporter, db: Db, request: Request, prefer: PreferHeader,
                            _type: TypeParam = None, _since: SinceParam = None,
                            _output_format: FormatParam = None) -> Response:
        return await _kick_off(request, who, db, "system", None)

    @router.get("/Patient/$export", operation_id="fhir_export_patients", summary="Bulk Data export: all patients",
                **kick)
    async def export_patients(who: Exporter, db: Db, request: Request, prefer: PreferHeader,
                              _type: TypeParam = None, _since: SinceParam = None,
                              _output_format: FormatParam = None) -> Response:
        return await _kick_off(request, who, db, "patient", None)

    @router.get("/Group/{group_id}/$export", operation_id="fhir_export_group",
                **{**kick, "responses": _kick_off_responses(404)},
                summary="Bulk Data export: the caseload Group's patients (404 for another organization's group)")
    async def export_group(group_id: str, who: Exporter, db: Db, request: Request, prefer: PreferHeader,
                           _type: TypeParam = None, _since: SinceParam = None,
                           _output_format: FormatParam = None) -> Response:
        return await _kick_off(request, who, db, "group", group_id)

    _status_routes(router)


def _status_routes(router: APIRouter) -> None:
    @router.get("/$export-status/{job_id}", operation_id="fhir_export_status", response_model=None,
                summary="Bulk Data export status (202 while running, 200 with the manifest)",
                responses=_status_responses())
    async def export_status(job_id: str, who: Exporter, db: Db, request: Request) -> Response:
        job = await jobs.load(db, who, jobs.job_uuid(job_id))
        settings = request.app.state.ctx.settings
        if job.status in jobs.ACTIVE:
            return Response(status_code=202, headers={
                "X-Progress": jobs.progress(job), "Retry-After": str(settings.bulk_export_retry_after_seconds),
                "Cache-Control": "no-store"})
        if jobs.expired(job):
            raise NotFound(f"Export {job_id} has expired: its files were deleted")
        if job.status == "failed":
            return FhirOut(outcome(500, f"The export failed: {job.error}", code="exception"), status_code=500,
                           headers={"Cache-Control": "no-store"})
        body = jobs.manifest(job, await jobs.files(db, job), urls.base_url(request))
        return JSONOut(body, headers={"Cache-Control": "no-store", "Expires": format_datetime(job.expires_at,
                                                                                             usegmt=True)})

    @router.delete("/$export-status/{job_id}", operation_id="fhir_export_cancel", response_model=None,
                   status_code=202, summary="Cancel a Bulk Data export (or delete its files); then its status is 404",
                   responses=fhir_responses(202, "Cancelled; its files are deleted", 401, 403, 404))
    async def export_cancel(job_id: str, who: Exporter, db: Db) -> Response:
        await jobs.cancel(db, who, jobs.job_uuid(job_id))
        body = outcome(202, f"Export {job_id} cancelled; its files are deleted", code="informational")
        body["issue"][0]["severity"] = "information"
        return FhirOut(body, status_code=202, headers={"Cache-Control": "no-store"})

    @router.get("/$export-status/{job_id}/files/{file_id}", operation_id="fhir_export_file", response_model=None,
                summary="Download one NDJSON file of a finished export (the token that started it)",
                responses={200: {"description": "NDJSON: one resource per line",
                                 "content": {jobs.NDJSON: {"schema": {"type": "string"}}}},
                           **{k: v for k, v in fhir_responses(200, "", 401, 403, 404).items() if k != 200}})
    async def export_file(job_id: str, file_id: str, who: Exporter, db: Db, request: Request) -> Response:
        row = await jobs.file_of(db, who, jobs.job_uuid(job_id), file_id)
        audit.set_action("export")
        return StreamingResponse(jobs.file_lines(request.app.state.ctx.engine, who, row.id), media_type=jobs.NDJSON,
                                 headers={"Cache-Control": "no-store"})

