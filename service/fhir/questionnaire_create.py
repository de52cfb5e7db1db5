"""``POST /fhir/R4/QuestionnaireResponse``: a completed PHQ-9 or GAD-7 response in, a measurement body out.

The body then goes through the one measurement create service (``service.create`` on the measurements
collection), exactly as REST and ``POST Observation`` do: the same validation and scoring, and the safety
rules in the same transaction. Nothing here scores or decides risk.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.collections.registry import REGISTRY
from service.collections.repository import readable
from service.domain.instruments import InstrumentDef
from service.errors import MalformedRequest, ValidationFailed, field_error
from service.fhir import codes as c
from service.fhir import questionnaires as q
from service.fhir.search import reference_id

QR = "QuestionnaireResponse"


def invalid(path: str, message: str, code: str = "invalid_questionnaire_response") -> ValidationFailed:
    err = field_error(path, message, code)
    err["fhir_path"] = path
    return ValidationFailed(message, errors=[err])


def _item_path(loinc: str) -> str:
    return f"{QR}.item.where(linkId='{q.link_id(loinc)}')"


def fhir_path(field: str, spec: InstrumentDef) -> str:
    """Where a measurement field lives in the response (for OperationOutcome.issue.expression)."""
    head, _, rest = field.partition(".")
    if head == "items" and rest.isdigit() and int(rest) < spec.n_items:
        return _item_path(spec.item_loincs[int(rest)])
    return {"client_id": f"{QR}.subject", "marker_id": f"{QR}.questionnaire", "items": f"{QR}.item",
            "value": _item_path(spec.total_loinc), "observed_at": f"{QR}.authored",
            "source": f"{QR}.identifier", "external_id": f"{QR}.identifier"}.get(head, QR)


def with_fhir_paths(exc: ValidationFailed, spec: InstrumentDef) -> ValidationFailed:
    for err in exc.errors or []:
        err.setdefault("fhir_path", fhir_path(str(err.get("field", "")), spec))
    return exc


def _answer(item: dict[str, Any], where: str, *, total: bool) -> float:
    answers = item.get("answer")
    if not isinstance(answers, list) or len(answers) != 1 or not isinstance(answers[0], dict):
        raise invalid(where, "Each answered item has exactly one answer")
    answer = answers[0]
    if "valueCoding" in answer and not total:
        coding = answer["valueCoding"] if isinstance(answer["valueCoding"], dict) else {}
        if coding.get("system") not in (None, c.LOINC) or coding.get("code") not in c.ANSWER_SCORES:
            raise invalid(where, "valueCoding must be a LOINC answer of list LL358-3 (LA6568-5, LA6569-3, "
                                 "LA6570-1 or LA6571-9)")
        return c.ANSWER_SCORES[coding["code"]]
    for key in ("valueInteger", "valueDecimal") if total else ("valueInteger",):
        if key in answer:
            value = answer[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid(where, f"{key} must be a number")
            return value
    raise invalid(where, "The total is a valueInteger" if total else "An item's answer is a LOINC valueCoding "
                         "(or its score as valueInteger)")


def _flatten(items: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """Every answered item, groups opened (SDC forms may nest the questions in a group)."""
    if not isinstance(items, list):
        raise invalid(where, "item must be a list")
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(items):
        path = f"{where}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("linkId"), str):
            raise invalid(path, "Each item has a linkId")
        if "item" in item and "answer" not in item:
            out += _flatten(item["item"], f"{path}.item")
        else:
            out.append((path, item))
    return out


def _items(body: dict[str, Any], spec: InstrumentDef) -> tuple[list[Any], float | None]:
    """The item scores in item order (missing ones left out: the service then names them) and the total."""
    scores: dict[int, float] = {}
    total: float | None = None
    seen: set[str] = set()
    for path, item in _flatten(body.get("item") or [], f"{QR}.item"):
        loinc = q.loinc_of(item["linkId"])
        if loinc in seen:
            raise invalid(path, f"linkId {item['linkId']} is answered twice")
        seen.add(loinc)
        if loinc == spec.total_loinc:
            total = _answer(item, path, total=True)
        elif loinc in spec.item_loincs:
            scores[spec.item_loincs.index(loinc)] = _answer(item, path, total=False)
        else:
            known = ", ".join(q.link_id(code) for code in (*spec.item_loincs, spec.total_loinc))
            raise invalid(path, f"linkId {item['linkId']} is not an item of {spec.name} that this server stores "
                                f"(its items: {known})", "unknown_item")
    ordered = [scores[n] for n in range(spec.n_items) if n in scores]
    return [int(v) if isinstance(v, float) and v.is_integer() else v for v in ordered], total


async def _marker(conn: AsyncConnection, who: Principal, body: dict[str, Any], client_id: UUID,
                  spec: InstrumentDef) -> UUID:
    """The patient's one live marker of this instrument, or the one our outcome-marker extension names."""
    table = REGISTRY["outcome-markers"].table
    stmt = readable(table, who).where(table.c.client_id == client_id, table.c.deleted_at.is_(None),
                                      table.c.instrument == spec.key).with_only_columns(table.c.id)
    named = [e.get("valueCoding") for e in body.get("extension") or []
             if isinstance(e, dict) and e.get("url") == c.SD_OUTCOME_MARKER]
    if named:
        coding = named[0] if isinstance(named[0], dict) else {}
        try:
            stmt = stmt.where(table.c.id == UUID(str(coding.get("code"))))
        except ValueError:
            raise invalid(f"{QR}.extension", "The outcome-marker extension's code is a marker id") from None
    rows = (await conn.execute(stmt)).all()
    if not rows:
        raise invalid(f"{QR}.subject", f"The patient has no {spec.name} outcome marker (or there is no such "
                                       "patient): create the marker first", "reference_not_found")
    if len(rows) > 1:
        raise invalid(f"{QR}.questionnaire", f"The patient has several {spec.name} markers: name one with the "
                      f"extension {c.SD_OUTCOME_MARKER} (valueCoding, code = marker id)", "ambiguous_marker")
    marker_id: UUID = rows[0].id
    return marker_id


async def measurement_body(conn: AsyncConnection, who: Principal, body: Any) -> tuple[Any, InstrumentDef]:
    """The measurement create body for a completed PHQ-9 or GAD-7 response, and its instrument."""
    if not isinstance(body, dict) or body.get("resourceType") != QR:
        raise MalformedRequest("The body must be a QuestionnaireResponse resource")
    spec = q.instrument_of(body["questionnaire"]) if isinstance(body.get("questionnaire"), str) else None
    if spec is None:
        raise invalid(f"{QR}.questionnaire", f"questionnaire must be one of {q.supported()}", "unknown_questionnaire")
    if body.get("status") != "completed":
        raise invalid(f"{QR}.status", "Only a completed response is stored and scored (status: completed)")
    ref = body["subject"].get("reference") if isinstance(body.get("subject"), dict) else None
    client_id = reference_id(ref) if isinstance(ref, str) else None
    if client_id is None:
        raise invalid(f"{QR}.subject", "subject must reference a Patient (Patient/<id>)")
    if not body.get("authored"):
        raise invalid(f"{QR}.authored", "authored (a dateTime with a time zone) is required")
    items, total = _items(body, spec)
    marker_id = await _marker(conn, who, body, client_id, spec)
    data: dict[str, Any] = {"client_id": str(client_id), "marker_id": str(marker_id),
                            "observed_at": body["authored"], "items": items}
    if total is not None:
        data["value"] = total
    identifier = body.get("identifier")
    if isinstance(identifier, dict):
        data["source"], data["external_id"] = identifier.get("system"), identifier.get("value")
    try:
        return REGISTRY["measurements"].create.model_validate(data), spec
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err.get("loc", ()))
            item = field_error(name, str(err.get("msg")), str(err.get("type")))
            item["fhir_path"] = fhir_path(name, spec)
            errors.append(item)
        raise ValidationFailed("The QuestionnaireResponse does not make a valid measurement", errors=errors) from None

