"""The instrument registry, as data: adding an instrument is adding an entry here, not a code branch.

Sources (docs/standards.md, §1.4 and §1.5):
- PHQ-9: Kroenke, Spitzer & Williams, J Gen Intern Med 2001;16:606 (items, 0-3 scoring, bands 5/10/15/20);
  LOINC panel 44249-1, total 44261-6, item 9 44260-8 (US Core PHQ-9 example,
  HL7/US-Core input/examples/Observation-PHQ9-panel-example-44249-1.json); reliable improvement >= 6 and
  caseness >= 10 (NHS Talking Therapies / IAPT manual; Gyani et al., BRAT 2013;51:597); MCID 5
  (Löwe et al., Med Care 2004;42:1194).
- GAD-7: Spitzer et al., Arch Intern Med 2006;166:1092 (items, 0-3 scoring, bands 5/10/15); LOINC panel
  69737-5, total 70274-6; reliable improvement >= 4 and caseness >= 8 (IAPT manual); MCID 4
  (Toussaint et al., J Affect Disord 2020;265:395).
Item LOINC codes follow the LOINC panels 44249-1 and 69737-5.

Reliable change (Jacobson & Truax, J Consult Clin Psychol 1991;59:12, with the sqrt(2) of Christensen &
Mendoza 1986; see docs/standards.md §1.5): S_diff = SD * sqrt(2) * sqrt(1 - r), RCI = (post - pre) / S_diff,
reliable when |RCI| > 1.96. Each instrument carries the SD and reliability r it is computed with:
- PHQ-9: r = 0.84, the 48-hour test-retest reliability (Kroenke, Spitzer & Williams 2001, above);
  SD = 5.5, a pre-treatment (clinical) SD as assumed in docs/standards.md §1.5, which reproduces the IAPT
  reliable-change threshold of 6 points (1.96 * 3.11 = 6.1). Verify against a published clinical sample
  before relying on it; the value is data here, not code.
- GAD-7: r = 0.83, the test-retest intraclass correlation (Spitzer et al. 2006, above); SD = 3.41, the
  general-population SD of Löwe et al., Med Care 2008;46:266 (quoted from memory, to verify), which gives
  1.96 * S_diff = 3.9, i.e. the IAPT reliable-change threshold of 4 points.
Clinically significant change uses the caseness cut-off (criterion c is not used: Jacobson & Truax's
normative means are not in the reference): PHQ-9 >= 10, GAD-7 >= 8 (IAPT manual, as above).

The verdicts (CONTRACT.md section 4) use the whole-score thresholds of NHS Talking Therapies, not the RCI:
a change is reliable when it is at least ``reliable_change`` points (PHQ-9 6, GAD-7 4), so PHQ-9 14 -> 8 is a
reliable improvement although its RCI is 1.93 (the Jacobson-Truax 1.96 * S_diff is 6.10 and would need 7). The
RCI is reported beside the verdict for information. Reliable recovery (Gyani et al. 2013): a reliable improvement
from at or above caseness to below it.

The severity bands are the instruments' published bands (PHQ-9 Kroenke 2001: 0-4 minimal, 5-9 mild, 10-14
moderate, 15-19 moderately severe, 20-27 severe; GAD-7 Spitzer 2006: 0-4, 5-9, 10-14, 15-21). ``band_sql`` turns
them into the SQL expression every statement uses, so the registry stays their one source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, literal_column, null
from sqlalchemy.dialects.postgresql.base import PGDialect


@dataclass(frozen=True)
class Band:
    low: int
    high: int
    label: str


@dataclass(frozen=True)
class RiskRule:
    """Opens a safety alert: an item above a value, or a total at or above a value.

    Rules are listed in precedence order: when several fire, the first names the alert's ``kind`` (CONTRACT.md
    section 3: item 9 before a severe total). The severity is ``urgent`` when the item reaches ``urgent_from``,
    else ``high``.
    """

    reason: str
    kind: str  # TriggerKind
    item: int | None = None  # 1-based item number
    item_above: int = 0
    total_at_least: int | None = None
    urgent_from: int | None = None  # the item value from which the alert is urgent

    def fires(self, items: list[int] | None, total: float) -> bool:
        if self.item is not None:
            return items is not None and len(items) >= self.item and items[self.item - 1] > self.item_above
        return self.total_at_least is not None and total >= self.total_at_least


@dataclass(frozen=True)
class InstrumentDef:
    key: str
    name: str
    display_name: str  # what a chart or a note calls it ("PHQ-9 depression score")
    panel_loinc: str
    total_loinc: str
    item_loincs: tuple[str, ...]
    item_min: int
    item_max: int
    bands: tuple[Band, ...]
    reliable_change: float  # points of change that count as reliable
    caseness: float  # at or above: a clinical case
    mcid: float
    risk: tuple[RiskRule, ...]
    sd: float  # the standard deviation the reliable change index is computed with (see the module doc)
    reliability: float  # test-retest reliability r_xx (see the module doc)
    citation: str = ""
    unit: str = "{score}"
    direction: str = "lower_is_better"

    @property
    def n_items(self) -> int:
        return len(self.item_loincs)

    @property
    def max_total(self) -> int:
        return self.n_items * self.item_max

    def band(self, total: float) -> str:
        for band in self.bands:
            if band.low <= total <= band.high:
                return band.label
        return "unknown"

    def is_case(self, total: float) -> bool:
        """At or above the caseness cut-off."""
        return total >= self.caseness

    @property
    def s_diff(self) -> float:
        """The standard error of the difference between two scores (Jacobson & Truax)."""
        return self.sd * math.sqrt(2) * math.sqrt(1 - self.reliability)

    def risk_reasons(self, items: list[int] | None, total: float) -> list[str]:
        return [rule.reason for rule in self.risk if rule.fires(items, total)]


INSTRUMENTS: dict[str, InstrumentDef] = {
    "phq9": InstrumentDef(
        key="phq9",
        name="PHQ-9",
        display_name="PHQ-9 depression score",
        panel_loinc="44249-1",
        total_loinc="44261-6",
        item_loincs=("44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3",
                     "44260-8"),
        item_min=0,
        item_max=3,
        bands=(Band(0, 4, "minimal"), Band(5, 9, "mild"), Band(10, 14, "moderate"),
               Band(15, 19, "moderately_severe"), Band(20, 27, "severe")),
        reliable_change=6,
        caseness=10,
        mcid=5,
        sd=5.5,
        reliability=0.84,
        citation="r: Kroenke et al., J Gen Intern Med 2001;16:606 (test-retest 0.84); SD 5.5: clinical SD as in "
                 "docs/standards.md §1.5 (reproduces the IAPT threshold of 6); caseness 10: IAPT manual",
        risk=(
            RiskRule("PHQ-9 item 9 endorsed: thoughts of being better off dead or of self-harm", kind="item9",
                     item=9, urgent_from=2),
            RiskRule("PHQ-9 total in the severe band (20 or more)", kind="severe_total", total_at_least=20),
        ),
    ),
    "gad7": InstrumentDef(
        key="gad7",
        name="GAD-7",
        display_name="GAD-7 anxiety score",
        panel_loinc="69737-5",
        total_loinc="70274-6",
        item_loincs=("69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"),
        item_min=0,
        item_max=3,
        bands=(Band(0, 4, "minimal"), Band(5, 9, "mild"), Band(10, 14, "moderate"), Band(15, 21, "severe")),
        reliable_change=4,
        caseness=8,
        mcid=4,
        sd=3.41,
        reliability=0.83,
        citation="r: Spitzer et al., Arch Intern Med 2006;166:1092 (test-retest ICC 0.83); SD 3.41: Löwe et al., "
                 "Med Care 2008;46:266; caseness 8: IAPT manual",
        risk=(RiskRule("GAD-7 total in the severe band (15 or more): symptom severity for clinician review, not a "
                       "risk statement", kind="severe_total", total_at_least=15),),
    ),
}


def band_case(instrument: ColumnElement[Any], value: ColumnElement[Any]) -> ColumnElement[Any]:
    """The severity band of ``value`` for the instrument ``instrument`` names, as a SQL CASE built from the
    registry (null for a marker that is not an instrument, or a value outside every band). Keys, bounds and
    labels are the registry's constants, rendered inline (no parameters)."""
    return case(*(
        (and_(instrument == literal_column(f"'{spec.key}'"),
              value.between(literal_column(str(band.low)), literal_column(str(band.high)))),
         literal_column(f"'{band.label}'"))
        for spec in INSTRUMENTS.values() for band in spec.bands
    ), else_=null())


def band_sql(instrument: str, value: str) -> str:
    """``band_case`` as SQL text, over two SQL expressions (for the hand-written progress statements)."""
    expr = band_case(literal_column(instrument), literal_column(value))
    return f"({expr.compile(dialect=PGDialect())})"
