"""``POST /fhir/R4/Observation``: a FHIR Observation in, a measurement out, through ``service.create``
(same validation, same safety alert in the same transaction)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request
from pydantic import ValidationError
from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.collections import service
from service.collections.registry import REGISTRY
from service.collections.repository import readable
from service.domain.instruments import INSTRUMENTS
from service.errors import MalformedRequest, RuleViolation, ValidationFailed, field_error
from service.fhir import codes as c
from service.fhir import urls
from service.fhir.search import reference_id

# Where each measurement field lives in the Observation (for OperationOutcome.issue.expression).
FHIR_PATHS = {"client_id": "Observation.subject", "marker_id": "Observation.code", "value": "Observation.value",
              "items": "Observation.component", "observed_at": "Observation.effective",
              "source": "Observation.identifier", "external_id": "Observation.identifier", "note": "Observation.note"}


def fhir_path(field: str) -> str:
    head, _, rest = field.partition(".")
    base = FHIR_PATHS.get(head, f"Observation.{head}" if head else "Observation")
    return f"{base}[{rest}]" if head == "items" and rest.isdigit() else base


def invalid(path: str, message: str, code: str = "invalid_observation") -> ValidationFailed:
    """A 422 at ``path`` whose domain code (OperationOutcome issue details) is ``code``."""
    exc = RuleViolation(path, message, code)
    for err in exc.errors or []:
        err["fhir_path"] = path
    return exc


def with_fhir_paths(exc: ValidationFailed) -> ValidationFailed:
    for err in exc.errors or []:
        err.setdefault("fhir_path", fhir_path(str(err.get("field", ""))))
    return exc


def _number(element: dict[str, Any], where: str) -> float | None:
    if "valueQuantity" in element:
        value = (element["valueQuantity"] or {}).get("value")
    elif "valueInteger" in element:
        value = element["valueInteger"]
    elif "valueString" in element:
        try:
            value = float(element["valueString"])
        except (TypeError, ValueError):
            raise invalid(where, "valueString must hold a number") from None
    elif "valueCodeableConcept" in element:
        codes = [cd.get("code") for cd in (element["valueCodeableConcept"] or {}).get("coding", [])]
        scores = [c.ANSWER_SCORES[cd] for cd in codes if cd in c.ANSWER_SCORES]
        if not scores:
            raise invalid(where, "valueCodeableConcept must be a LOINC answer of list LL358-3 (e.g. LA6568-5)")
        value = scores[0]
    else:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(where, "the value must be a number")
    return value


def _codings(concept: Any) -> list[tuple[str | None, str | None]]:
    if not isinstance(concept, dict):
        return []
    return [(cd.get("system"), cd.get("code")) for cd in concept.get("coding") or [] if isinstance(cd, dict)]


async def _marker(conn: AsyncConnection, who: Principal, client_id: UUID, code: Any) -> dict[str, Any]:
    codings = _codings(code)
    if not codings:
        raise invalid("Observation.code", "Observation.code needs a coding (LOINC, or our outcome-marker code)")
    markers = REGISTRY["outcome-markers"]
    table = markers.table
    conds = []
    for system, value in codings:
        if system == c.system("outcome-marker") and value:
            try:
                conds.append(table.c.id == UUID(value))
            except ValueError:
                raise invalid("Observation.code", f"{value} is not an outcome-marker code") from None
        elif system == c.LOINC and value:
            conds.append(table.c.code == value)
            instruments = [k for k, s in INSTRUMENTS.items() if value in (s.panel_loinc, s.total_loinc)]
            if instruments:
                conds.append(table.c.instrument.in_(instruments))
    if not conds:
        raise invalid("Observation.code", "No coding this server knows (use LOINC or our outcome-marker system)")
    stmt = readable(table, who).where(table.c.client_id == client_id, table.c.deleted_at.is_(None), or_(*conds))
    rows = (await conn.execute(stmt)).all()
    if not rows:
        raise invalid("Observation.code", "No outcome marker of this patient has this code", "reference_not_found")
    if len(rows) > 1:
        raise invalid("Observation.code", "Several outcome markers of this patient have this code; send the "
                      f"marker's own coding ({c.system('outcome-marker')})", "ambiguous_code")
    return service.serialize(markers, rows[0])


async def measurement_body(conn: AsyncConnection, who: Principal, body: Any, request: Request) -> Any:
    """The measurement create body for an Observation (``request``: whose base URL is ours, service.fhir.urls)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Observation":
        raise MalformedRequest("The body must be an Observation resource")
    if body.get("status") == "entered-in-error":
        raise invalid("Observation.status", "An observation entered in error cannot be created")
    ref = (body.get("subject") or {}).get("reference") if isinstance(body.get("subject"), dict) else None
    try:
        client_id = reference_id(urls.local(request, ref)) if isinstance(ref, str) else None
    except urls.ForeignReference:
        raise invalid("Observation.subject", "subject references another server's resource; this server takes "
                      "Patient/<id> (or its own base URL)", "foreign_reference") from None
    if client_id is None:
        raise invalid("Observation.subject", "subject must reference a Patient (Patient/<id>)")
    clients = REGISTRY["clients"].table
    found = await conn.execute(readable(clients, who).where(clients.c.id == client_id, clients.c.deleted_at.is_(None))
                               .with_only_columns(clients.c.id))
    if found.first() is None:
        raise invalid("Observation.subject", f"No patient {client_id}", "reference_not_found")
    marker = await _marker(conn, who, client_id, body.get("code"))
    data: dict[str, Any] = {"client_id": str(client_id), "marker_id": str(marker["id"])}
    effective = body.get("effectiveDateTime") or body.get("effectiveInstant")
    if effective is None:
        raise invalid("Observation.effective", "effectiveDateTime (with a time zone) is required")
    data["observed_at"] = effective
    value = _number(body, "Observation.value")
    components = body.get("component") or []
    if marker.get("instrument"):
        spec = INSTRUMENTS[marker["instrument"]]
        items: dict[int, Any] = {}
        for i, comp in enumerate(components if isinstance(components, list) else []):
            codes = {cd for _, cd in _codings(comp.get("code") if isinstance(comp, dict) else None)}
            where = f"Observation.component[{i}]"
            if spec.total_loinc in codes:
                value = _number(comp, where)
            for n, loinc in enumerate(spec.item_loincs):
                if loinc in codes:
                    items[n] = _number(comp, where)
        if items:
            ordered = [items.get(n) for n in range(spec.n_items)]
            data["items"] = [int(v) if isinstance(v, float) and v.is_integer() else v for v in ordered
                             if v is not None]
    if value is not None:
        data["value"] = value
    identifiers = body.get("identifier") or []
    if identifiers:
        first = identifiers[0] if isinstance(identifiers, list) and isinstance(identifiers[0], dict) else {}
        data["source"], data["external_id"] = first.get("system"), first.get("value")
    annotations = body.get("note") or []
    if not isinstance(annotations, list) or not all(
            isinstance(n, dict) and isinstance(n.get("text", ""), str) for n in annotations):
        raise invalid("Observation.note", "note must be a list of Annotations, each with its text as a string")
    notes: list[str] = [n["text"] for n in annotations if n.get("text")]
    if notes:
        data["note"] = "\n".join(notes)
    coll = REGISTRY["measurements"]
    try:
        return coll.create.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err.get("loc", ()))
            item = field_error(name, str(err.get("msg")), str(err.get("type")))
            item["fhir_path"] = fhir_path(name)
            errors.append(item)
        raise ValidationFailed("The Observation does not make a valid measurement", errors=errors) from None
