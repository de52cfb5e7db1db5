"""PHQ-9 and GAD-7 as the standard LOINC questionnaires (SDC): canonicals, item linkIds and texts.

The canonical of each is ``http://loinc.org/q/<panel LOINC>`` (the form LOINC and the NLM's LHC-Forms give
their FHIR Questionnaires); each item's ``linkId`` is ``/<item LOINC>`` as in LHC-Forms' SDC Questionnaires,
answers are the LOINC answers of list LL358-3 (``LA6568-5`` ... ``LA6571-9``), and the total score is an
item of its own (``/44261-6``, ``/70274-6``). The instrument registry (service/domain/instruments.py) stays
the one source of codes and scoring; this module adds only what FHIR presents.
"""

from __future__ import annotations

from typing import Any

from service.domain.instruments import INSTRUMENTS, InstrumentDef
from service.fhir import codes as c

# LOINC long common names of the items (LOINC panels 44249-1 and 69737-5).
ITEM_TEXTS: dict[str, str] = {
    "44250-9": "Little interest or pleasure in doing things",
    "44255-8": "Feeling down, depressed, or hopeless",
    "44259-0": "Trouble falling or staying asleep, or sleeping too much",
    "44254-1": "Feeling tired or having little energy",
    "44251-7": "Poor appetite or overeating",
    "44258-2": "Feeling bad about yourself-or that you are a failure or have let yourself or your family down",
    "44252-5": "Trouble concentrating on things, such as reading the newspaper or watching television",
    "44253-3": "Moving or speaking so slowly that other people could have noticed. Or the opposite-being so "
               "fidgety or restless that you have been moving around a lot more than usual",
    "44260-8": "Thoughts that you would be better off dead, or of hurting yourself in some way",
    "44261-6": "Patient health questionnaire 9 item total score",
    "69725-0": "Feeling nervous, anxious or on edge",
    "68509-9": "Not being able to stop or control worrying",
    "69733-4": "Worrying too much about different things",
    "69734-2": "Trouble relaxing",
    "69735-9": "Being so restless that it is hard to sit still",
    "69689-8": "Becoming easily annoyed or irritable",
    "69736-7": "Feeling afraid as if something awful might happen",
    "70274-6": "Generalized anxiety disorder 7 item (GAD-7) total score",
}
TITLES = {"phq9": "PHQ-9 quick depression assessment panel", "gad7": "Generalized anxiety disorder 7 item (GAD-7)"}


def canonical(spec: InstrumentDef) -> str:
    return f"http://loinc.org/q/{spec.panel_loinc}"


def link_id(loinc: str) -> str:
    return f"/{loinc}"


def loinc_of(link: str) -> str:
    """The LOINC code a linkId names: ``/44250-9`` (LHC-Forms, what we write) or the bare ``44250-9``."""
    return link.removeprefix("/")


def instrument_of(reference: str) -> InstrumentDef | None:
    """The instrument a ``QuestionnaireResponse.questionnaire`` (or a ``questionnaire`` search value) names: its
    canonical (a ``|version`` suffix is ignored), ``Questionnaire/<panel LOINC>`` or the bare panel code."""
    text = reference.split("|", 1)[0].rstrip("/")
    for spec in INSTRUMENTS.values():
        if text in (canonical(spec), f"Questionnaire/{spec.panel_loinc}", spec.panel_loinc) or \
                text.endswith(f"/Questionnaire/{spec.panel_loinc}"):
            return spec
    return None


def supported() -> str:
    return ", ".join(canonical(spec) for spec in INSTRUMENTS.values())


def _answer_options() -> list[dict[str, Any]]:
    return [{"valueCoding": {"system": c.LOINC, "code": code, "display": display}}
            for code, display in (c.ITEM_ANSWERS[s] for s in sorted(c.ITEM_ANSWERS))]


def questionnaire(panel: str) -> dict[str, Any] | None:
    """The Questionnaire resource of an instrument, for ``GET /fhir/R4/Questionnaire/<panel LOINC>``."""
    spec = next((s for s in INSTRUMENTS.values() if s.panel_loinc == panel), None)
    if spec is None:
        return None
    items: list[dict[str, Any]] = [
        {"linkId": link_id(code), "code": [{"system": c.LOINC, "code": code}], "text": ITEM_TEXTS[code],
         "type": "choice", "required": True, "answerOption": _answer_options()}
        for code in spec.item_loincs
    ]
    items.append({"linkId": link_id(spec.total_loinc), "code": [{"system": c.LOINC, "code": spec.total_loinc}],
                  "text": ITEM_TEXTS[spec.total_loinc], "type": "integer", "readOnly": True, "required": False})
    return {
        "resourceType": "Questionnaire", "id": spec.panel_loinc, "url": canonical(spec),
        "identifier": [{"system": c.LOINC, "value": spec.panel_loinc}], "name": spec.name.replace("-", ""),
        "title": TITLES[spec.key], "status": "active", "subjectType": ["Patient"],
        "code": [{"system": c.LOINC, "code": spec.panel_loinc, "display": TITLES[spec.key]}],
        "description": f"{spec.name}: items scored 0 to 3 (LOINC answer list LL358-3); the total is computed by "
                       "this server, which stores a response as a measurement of the patient's "
                       f"{spec.name} outcome marker",
        "item": items,
    }


QUESTIONNAIRE_IDS = tuple(spec.panel_loinc for spec in INSTRUMENTS.values())
