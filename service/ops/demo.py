"""`strengths-api demo`: a realistic caseload from strengths-based practice, written through the service
layer (so every rule, version, history row and change-feed entry is exactly as through the API).

Every date is relative to the day it is loaded, so the caseload always looks current: measurements over the
last weeks, milestones done on the days they were done, the next ones due ahead. Three stories:
- Maya: low mood lifting (PHQ-9 16 -> 8, GAD-7 11 -> 7: recovered); mornings out meet their target; reaching
  out to her friend has stalled (off track: a goal to review).
- Daniel: panic on the bus easing (GAD-7 14 -> 7 on his goal; PHQ-9 below caseness throughout): recovered.
- Amara: new to the service; her first PHQ-9 (18) endorses item 9, so an alert is open and she is the one
  safety-priority client; one reading, so no verdict yet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.apps import create_app_record, create_org
from service.auth.principal import Principal
from service.auth.scopes import parse_scopes
from service.collections import service
from service.collections.registry import REGISTRY
from service.db import set_tenant
from service.domain.registry import COLLECTIONS  # noqa: F401 - builds the registry

CASELOAD: list[dict[str, Any]] = [
    {
        "client": {"display_name": "Maya R.", "preferred_language": "en", "birth_date": "1994-03-12",
                   "identifiers": [{"system": "urn:demo:ehr:mrn", "value": "MRN-1001"}],
                   "preferred_future": "Getting up on weekdays, back at the bakery three mornings a week, and "
                                       "calling my brother on Sundays without dreading it."},
        "tz": -5,
        "strengths": [
            ("help", {"domain": "relational", "kind": "skill", "label": "help-seeking",
                      "client_label": "I text Jess when it gets bad",
                      "description": "Texts a friend when low and follows through on the plan they make",
                      "context": "Evenings at home", "under_stress": True, "source": "client_report",
                      "status": "confirmed", "evidence": ["Texted Jess on 3 Nov instead of skipping dinner",
                                                          "Asked her manager for a later start after a bad night"]}),
            ("baking", {"domain": "practical", "kind": "skill", "label": "structured routines",
                        "client_label": "Baking keeps me steady",
                        "description": "Follows a step-by-step baking routine that structures the morning",
                        "context": "Weekend mornings", "source": "clinician_observation", "status": "hypothesis",
                        "evidence": []}),
            ("faith", {"domain": "spiritual", "kind": "value", "label": "sense of purpose",
                       "description": "Volunteers at the food bank once a month and keeps the commitment",
                       "source": "collateral", "status": "confirmed",
                       "evidence": ["Kept the November food bank shift despite low mood"]}),
        ],
        "protective": [("relationship", "Best friend Jess answers texts most evenings", "present"),
                       ("routine", "Part-time bakery shifts give the week a shape", "at_risk")],
        "exceptions": [{"problem": "staying in bed all morning", "strength": "baking",
                        "description": "On days she has a shift she is up by 7 and the low mood lifts by noon",
                        "conditions": ["structure", "sleep"]}],
        "goals": [
            {"description": "Get up and out of the flat by 9am on three weekdays each week",
             "strengths": ["baking", "help"], "lifecycle": "active", "achievement": "improving",
             "start": 42, "target_days": 60, "barriers": ["Late-night phone use"],
             "marker": {"kind": "frequency", "name": "Mornings out by 9am", "unit": "/wk", "min": 0, "max": 7,
                        "direction": "higher_is_better"},
             "series": [1, 2, 3, 3, 3, 4, 3, 4],
             "target": {"comparator": ">=", "value": 3, "period": "P1W", "duration": "P4W"},
             # (title, completion criteria, status, days ago it was done, or days ahead it is due)
             "milestones": [("Set an alarm across the room", "Alarm placed across the room on 5 of 7 nights", "done",
                             30),
                            ("Walk to the corner shop before 9", "Out of the door by 9am twice in one week", "done",
                             16),
                            ("Bakery shift start at 8", "Worked two 8am shifts in a week", "in_progress", 7)]},
            {"description": "Use texting Jess instead of isolating when mood drops below 4/10",
             "strengths": ["help"], "lifecycle": "active", "achievement": "in_progress", "start": 28,
             "target_days": 56,
             "marker": {"kind": "confidence", "name": "Confidence to reach out", "unit": "{score}", "min": 0,
                        "max": 10, "direction": "higher_is_better", "min_change": 1},
             "series": [4, 4, 5, 4, 4],  # stalled: off track, a goal to review
             "milestones": [("Draft the text in advance", "A ready-to-send text saved in phone notes", "done", 20),
                            ("Send it once in a hard moment", "Sent the text at least once when mood was below 4",
                             "planned", 10)]},
        ],
        # weekly, the last a week ago; item 9 never endorsed (no safety alert). None of her goals names them.
        "phq9": {"items": [[2, 2, 2, 2, 2, 2, 2, 2, 0], [2, 2, 2, 2, 2, 2, 1, 1, 0], [2, 2, 1, 1, 1, 1, 1, 2, 0],
                           [1, 1, 1, 1, 1, 1, 1, 2, 0], [1, 1, 1, 1, 1, 1, 1, 1, 0]]},
        "gad7": {"items": [[2, 2, 2, 2, 1, 1, 1], [2, 2, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]},
        "uses": [("help", "Felt flat after a cancelled shift", "Texted Jess, went for a walk together", 8),
                 ("baking", "Sunday morning with no plans", "Baked bread, felt productive by 10am", 7)],
        "experiments": [
            {"strength": "help", "plan": "When I notice I'm cancelling plans, text Jess before deciding",
             "status": "done", "confidence_before": 4, "confidence_after": 7,
             "result": "Texted twice; went out once instead of cancelling",
             "debrief": "It's easier to decide after someone knows how I feel"},
            {"strength": "baking", "plan": "Bake something small on Tuesday morning before 9",
             "status": "planned", "confidence_before": 6, "due": 5},
        ],
    },
    {
        "client": {"display_name": "Daniel O.", "preferred_language": "en", "birth_date": "1988-07-02",
                   "identifiers": [{"system": "urn:demo:ehr:mrn", "value": "MRN-1002"}],
                   "preferred_future": "Taking the bus to work without planning my whole day around it, and "
                                       "coaching my son's football team again."},
        "tz": 0,
        "strengths": [
            ("coach", {"domain": "community", "kind": "skill", "label": "encouraging others",
                       "client_label": "I'm good with the kids on the team",
                       "description": "Breaks a hard drill into small steps and cheers each attempt",
                       "context": "Saturday football", "source": "client_report", "status": "confirmed",
                       "evidence": ["Ran the under-9s practice when the coach was ill"]}),
            ("breath", {"domain": "personal", "kind": "skill", "label": "paced breathing",
                        "description": "Uses 4-6 breathing for two minutes when his chest tightens",
                        "under_stress": True, "source": "clinician_observation", "status": "confirmed",
                        "evidence": ["Stayed on the bus for two stops using paced breathing"]}),
            ("humour", {"domain": "personal", "kind": "character", "label": "humour",
                        "description": "Motivated", "source": "via_inventory", "status": "hypothesis",
                        "evidence": []}),
        ],
        "protective": [("responsibility", "Takes his son to school every morning", "present"),
                       ("social_support", "Brother offers lifts when needed", "present")],
        "exceptions": [{"problem": "panic on public transport", "strength": "breath",
                        "description": "Panic is smaller when he sits near the door and talks to his son",
                        "conditions": ["social_contact", "reduced_triggers"]}],
        "goals": [
            {"description": "Ride the bus to work on three days a week for four weeks in a row",
             "strengths": ["breath", "coach"], "lifecycle": "active", "achievement": "improving", "start": 35,
             "target_days": 70,
             "marker": {"kind": "recovery_time", "name": "Minutes to calm after panic", "unit": "min", "min": 0,
                        "max": 240, "direction": "lower_is_better", "min_change": 10},
             "series": [45, 40, 30, 30, 20, 15, 12],
             "milestones": [("One stop with his brother", "Rode one stop with his brother on two days", "done", 25),
                            ("Three stops alone", "Rode three stops alone using paced breathing", "done", 11),
                            ("Full commute", "Full bus commute on three days in one week", "planned", 6)]},
        ],
        # GAD-7 14 -> 7 measures his bus goal; PHQ-9 below caseness throughout (never a depressive case)
        "gad7": {"goal": 0, "items": [[2, 2, 2, 2, 2, 2, 2], [2, 2, 2, 2, 2, 2, 1], [2, 2, 1, 2, 1, 1, 1],
                                      [1, 1, 1, 1, 1, 1, 1]]},
        "phq9": {"items": [[1, 1, 1, 1, 1, 1, 1, 2, 0], [1, 1, 1, 1, 1, 1, 1, 0, 0]]},
        "uses": [("breath", "Chest tight at the bus stop", "Two minutes of paced breathing; took the bus", 8)],
        "experiments": [
            {"strength": "coach", "plan": "Talk myself through the bus ride the way I talk the kids through drills",
             "status": "done", "confidence_before": 3, "confidence_after": 6,
             "result": "Rode five stops", "debrief": "Being my own coach works; I said 'one more stop' each time"},
        ],
    },
    {
        "client": {"display_name": "Amara N.", "preferred_language": "fr", "birth_date": "2001-11-30",
                   "identifiers": [{"system": "urn:demo:ehr:mrn", "value": "MRN-1003"}],
                   "preferred_future": "Finishing my nursing course and sleeping through most nights."},
        "tz": 1,
        "strengths": [
            ("study", {"domain": "practical", "kind": "skill", "label": "planning",
                       "client_label": "I make lists and stick to them",
                       "description": "Writes a three-item plan each evening and completes at least two items",
                       "source": "client_report", "status": "confirmed",
                       "evidence": ["Submitted the pharmacology assignment on time"]}),
            ("church", {"domain": "cultural", "kind": "external_support", "label": "church choir",
                        "description": "Sings in the choir on Thursdays and Sundays",
                        "source": "client_report", "status": "confirmed", "evidence": ["Has not missed choir"]}),
        ],
        "protective": [("cultural", "Choir community checks in on her", "present"),
                       ("healthcare_access", "Registered with the student health service", "present")],
        "exceptions": [{"problem": "lying awake worrying", "strength": "study",
                        "description": "Falls asleep sooner on nights she writes tomorrow's plan first",
                        "conditions": ["sleep", "structure"]}],
        "goals": [
            {"description": "Write tomorrow's three-item plan before 10pm on five nights a week",
             "strengths": ["study"], "lifecycle": "active", "achievement": "in_progress", "start": 21,
             "target_days": 42,
             "marker": {"kind": "duration", "name": "Minutes to fall asleep", "unit": "min", "min": 0,
                        "max": 300, "direction": "lower_is_better", "min_change": 15},
             "series": [90, 80, 85, 70],
             "milestones": [("Plan notebook by the bed", "Notebook and pen kept on the bedside table", "done", 12),
                            ("Five plans in a week", "Plans written on five nights in one week", "planned", 5)]},
        ],
        # her first PHQ-9, a week ago: 18, item 9 endorsed: the service opens a safety alert
        "phq9": {"items": [[2, 2, 3, 3, 2, 2, 2, 1, 1]]},
        "uses": [("study", "Exam week with poor sleep", "Wrote the plan, slept by midnight", 6)],
        "experiments": [{"strength": "church", "plan": "Hum a choir piece while getting ready for bed",
                         "status": "planned", "confidence_before": 5, "due": 3}],
    },
]


def _org_principal(org_id: Any) -> Principal:
    return Principal(org_id=org_id, app_id="demo-loader", subject="demo-loader",
                     scopes=parse_scopes("system/*.cruds"))


async def _make(conn: AsyncConnection, who: Principal, collection: str, **body: Any) -> dict[str, Any]:
    coll = REGISTRY[collection]
    return await service.create(conn, who, coll, coll.create.model_validate(body))


@dataclass
class Loader:
    """Writes one organization's caseload through the service layer, dated from ``today``."""

    conn: AsyncConnection
    who: Principal
    today: date
    counts: dict[str, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    async def make(self, collection: str, /, **body: Any) -> dict[str, Any]:
        self.counts[collection] = self.counts.get(collection, 0) + 1
        return await _make(self.conn, self.who, collection, **body)

    def at(self, days_ago: float, hour: int, tz: int) -> str:
        zone = timezone(timedelta(hours=tz))
        day = self.today - timedelta(days=int(days_ago))
        return datetime.combine(day, datetime.min.time(), zone).replace(hour=hour).isoformat()

    def day(self, days_ahead: int) -> str:
        return str(self.today + timedelta(days=days_ahead))

    async def case(self, case: dict[str, Any]) -> None:
        tz = case["tz"]
        cid = (await self.make("clients", **case["client"]))["id"]
        strengths = {key: await self.make("strengths", client_id=cid, **body) for key, body in case["strengths"]}
        for category, description, status in case["protective"]:
            await self.make("protective-factors", client_id=cid, category=category, description=description,
                            status=status)
        for exc in case["exceptions"]:
            await self.make("exceptions", client_id=cid, problem=exc["problem"], description=exc["description"],
                            conditions=exc["conditions"], strength_ids=[strengths[exc["strength"]]["id"]],
                            observed_at=self.at(10, 18, tz))
        goal_ids = [await self.goal(cid, g, strengths, tz) for g in case["goals"]]
        for instrument in ("phq9", "gad7"):
            if instrument in case:
                await self.instrument(cid, instrument, case[instrument], goal_ids, tz)
        for key, situation, result, rating in case["uses"]:
            await self.make("strength-uses", client_id=cid, strength_id=strengths[key]["id"], situation=situation,
                            result=result, rating=rating, occurred_at=self.at(4, 19, tz))
        for x in case["experiments"]:
            body = {k: v for k, v in x.items() if k not in ("strength", "due")}
            if "due" in x:
                body["due_date"] = self.day(x["due"])
            await self.make("experiments", client_id=cid, strength_id=strengths[x["strength"]]["id"],
                            goal_id=goal_ids[0], **body)

    async def goal(self, cid: Any, g: dict[str, Any], strengths: dict[str, Any], tz: int) -> Any:
        goal = await self.make(
            "goals", client_id=cid, description=g["description"],
            strength_ids=[strengths[k]["id"] for k in g["strengths"]], lifecycle=g["lifecycle"],
            achievement=g["achievement"], start_date=self.day(-g["start"]),
            target_date=self.day(g["target_days"] - g["start"]), barriers=g.get("barriers", []),
        )
        marker = await self.make("outcome-markers", client_id=cid, goal_id=goal["id"], **g["marker"])
        if "target" in g:
            goals = REGISTRY["goals"]
            await service.patch(self.conn, self.who, goals, goal["id"], goals.patch.model_validate(
                {"target": {**g["target"], "marker_id": str(marker["id"])}}), None)
        step = max(1, g["start"] // max(1, len(g["series"])))
        for i, value in enumerate(g["series"]):
            await self.make("measurements", client_id=cid, marker_id=marker["id"], value=value,
                            observed_at=self.at(g["start"] - i * step, 20, tz), source="demo-app",
                            external_id=f"{cid}-{marker['id']}-{i}")
        for seq, (title, criteria, status, days) in enumerate(g["milestones"], 1):
            # done: completed `days` ago (and due that day); otherwise due in `days`
            dates = ({"completed_at": self.at(days, 18, tz), "due_date": self.day(-days)} if status == "done"
                     else {"due_date": self.day(days)})
            await self.make("milestones", client_id=cid, goal_id=goal["id"], title=title,
                            completion_criteria=criteria, sequence=seq, status=status, **dates)
        return goal["id"]

    async def instrument(self, cid: Any, instrument: str, spec: dict[str, Any], goal_ids: list[Any],
                         tz: int) -> None:
        """Weekly, the last a week ago; linked to a goal when the story says so."""
        name = {"phq9": "PHQ-9", "gad7": "GAD-7"}[instrument]
        goal = goal_ids[spec["goal"]] if spec.get("goal") is not None else None
        marker = await self.make("outcome-markers", client_id=cid, kind="instrument", name=name,
                                 instrument=instrument, goal_id=goal)
        series = spec["items"]
        for i, items in enumerate(series):
            await self.make("measurements", client_id=cid, marker_id=marker["id"], items=items,
                            observed_at=self.at(7 * (len(series) - i), self.rng.choice([9, 14, 19]), tz))


async def load_demo(conn: AsyncConnection, org_name: str = "Riverside Counselling (demo)",
                    today: date | None = None) -> dict[str, Any]:
    org = await create_org(conn, org_name)
    who = _org_principal(org["id"])
    await set_tenant(conn, org["id"], None)
    loader = Loader(conn, who, today or datetime.now(UTC).date())
    for case in CASELOAD:
        await loader.case(case)
    app = await create_app_record(conn, org_id=org["id"], name="Demo dashboard", scopes="system/*.cruds")
    return {"organization": org, "app": app, "created": loader.counts, "loaded_at": datetime.now(UTC)}
