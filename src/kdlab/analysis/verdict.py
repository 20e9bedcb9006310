"""Verdicts on claims: a rule declared before the run, decided from an interval, written once.

A claim names a *statistic* (what is measured), a *rule* (a comparison of that statistic with a threshold) and what
makes it *not applicable*. A measurement gives the statistic's estimate, its interval and the number of independent
units behind it (seeds, teacher seeds, (seed, class) pairs). One evaluator turns the two into a three-valued
verdict:

- ``True``  when the whole interval satisfies the rule;
- ``False`` when the whole interval satisfies its negation (the interval clears the threshold the other way);
- ``None``  otherwise (the interval straddles the threshold, or there is no interval, e.g. one seed), and
- ``None`` with ``not_applicable`` set when the claim's precondition is absent (no gap to close, nothing detected).

This is the reading of a confidence interval against a fixed threshold used for superiority, non-inferiority and
equivalence claims (Lakens, "Equivalence Tests: A Practical Primer for t Tests, Correlations, and Meta-Analyses",
Social Psychological and Personality Science, 2017). The rule's text, the evidence line and the documentation are
all generated from the same :class:`Rule`, so a rule is written once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Op = Literal[">", ">=", "<", "<=", "within"]
OPS: tuple[str, ...] = (">", ">=", "<", "<=", "within")

_WORDS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below"}
_NEGATION = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}


@dataclass(frozen=True)
class Rule:
    """``statistic OP threshold`` decided on the statistic's interval.

    ``op``: ``>``, ``>=``, ``<``, ``<=``, or ``within`` (the interval inside ``[-threshold, +threshold]``; it fails when
    the interval lies entirely outside). ``scale`` and ``unit`` only affect how numbers are written (accuracy
    fractions are written in points: scale 100, unit "points").
    """

    op: Op
    threshold: float
    unit: str = ""
    scale: float = 1.0
    digits: int = 2

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"Rule op={self.op!r} is not allowed; allowed: {', '.join(OPS)}")
        if self.op == "within" and not self.threshold > 0:
            raise ValueError(f"a 'within' rule needs a margin > 0, got threshold={self.threshold!r}")

    def number(self, value: float) -> str:
        """``value`` in the rule's unit, e.g. 0.005 -> "0.5 points" (trailing zeros dropped)."""
        text = f"{value * self.scale:.{self.digits}f}".rstrip("0").rstrip(".")
        text = "0" if text in ("-0", "") else text
        return f"{text} {self.unit}".rstrip()

    def text(self, confidence: float = 0.95, interval: str | None = None) -> str:
        """The rule in words, e.g. "holds if the 95% interval lies above 0 points; does not hold if it lies at or
        below 0 points; undecided otherwise". ``interval`` names an interval that is not a plain confidence
        interval at ``confidence`` (e.g. "BH-adjusted interval", whose level depends on the family)."""
        name = interval or f"{confidence * 100:g}% interval"
        if self.op == "within":
            m = self.number(self.threshold)
            return (f"holds if the {name} lies within ±{m}; does not hold if it lies entirely outside "
                    f"±{m}; undecided otherwise")
        t = self.number(self.threshold)
        return (f"holds if the {name} lies {_WORDS[self.op]} {t}; does not hold if it lies "
                f"{_WORDS[_NEGATION[self.op]]} {t}; undecided otherwise")


@dataclass(frozen=True)
class Measurement:
    """A statistic's estimate with its interval ``[low, high]`` over ``n`` independent units.

    ``interval`` says how the interval was made (e.g. "95% paired t interval over seeds"); ``context`` is extra
    evidence in words (numbers behind the statistic); ``selections`` records every choice made to compute it (e.g.
    ``{"best KD of T4": "kd_T4"}``) and ``selected_on`` what those choices read (validation accuracy).
    A missing interval is NaN (e.g. one seed).
    """

    estimate: float
    low: float
    high: float
    n: int
    interval: str
    context: str = ""
    selections: dict[str, Any] = field(default_factory=dict)
    selected_on: str | None = None

    @property
    def has_interval(self) -> bool:
        """Whether both ends of the interval are numbers (False with one seed)."""
        return not (math.isnan(self.low) or math.isnan(self.high))


@dataclass(frozen=True)
class NotApplicable:
    """The claim's precondition is absent: nothing to decide (the verdict is null with this reason)."""

    reason: str
    context: str = ""
    selections: dict[str, Any] = field(default_factory=dict)
    selected_on: str | None = None


def decide(rule: Rule, low: float, high: float) -> bool | None:
    """Three-valued verdict of ``rule`` on the interval ``[low, high]`` (module docstring); None without an interval.

    For ``>`` (t): True if low > t, False if high <= t; ``>=``: True if low >= t, False if high < t; ``<`` and ``<=``
    mirror these; ``within`` (m): True if -m <= low and high <= m, False if high < -m or low > m.
    """
    if math.isnan(low) or math.isnan(high):
        return None
    if low > high:
        raise ValueError(f"interval [{low}, {high}] has low > high")
    t = rule.threshold
    if rule.op == "within":
        if -t <= low and high <= t:
            return True
        if high < -t or low > t:
            return False
        return None
    holds = {">": low > t, ">=": low >= t, "<": high < t, "<=": high <= t}[rule.op]
    fails = {">": high <= t, ">=": high < t, "<": low >= t, "<=": low > t}[rule.op]
    return True if holds else False if fails else None


def verdict_word(holds: bool | None, not_applicable: str | None = None) -> str:
    """How a verdict is written in reports: holds / does not hold / undecided / not applicable."""
    if not_applicable:
        return "not applicable"
    return {True: "holds", False: "does not hold", None: "undecided"}[holds]


@dataclass(frozen=True)
class Claim:
    """A claim under test, declared as data before anything runs.

    ``statistic`` says in words what is measured; ``rule`` how it is decided; ``measure(results)`` computes it from a
    study's results (a :class:`Measurement`, or :class:`NotApplicable` when ``precondition`` is absent);
    ``selection`` says what is chosen, and on which split, before the statistic is read (None: nothing is chosen).
    ``source``: the paper the claim comes from. ``interval`` names the interval the rule reads when it is not the
    plain ``confidence`` interval (e.g. an interval adjusted for the many cells of a map).
    """

    id: str
    text: str
    statistic: str
    rule: Rule
    measure: Any  # Callable[[dict], Measurement | NotApplicable]; Any keeps the dataclass hashable and simple
    precondition: str | None = None
    selection: str | None = None
    source: str = ""
    confidence: float = 0.95
    interval: str | None = None

    def rule_text(self) -> str:
        """The decision rule in words (generated from ``rule``; the same text goes to reports and docs)."""
        return self.rule.text(self.confidence, self.interval)

    def evaluate(self, results: dict[str, Any]) -> dict[str, Any]:
        """The claim's entry in results.json: verdict, rule, statistic, estimate, interval, n, selections, evidence."""
        m = self.measure(results)
        return claim_entry(self, m)


def claim_entry(claim: Claim, m: Measurement | NotApplicable) -> dict[str, Any]:
    """results.json entry of ``claim`` measured as ``m`` (see docs/results_schema.md)."""
    entry: dict[str, Any] = {"id": claim.id, "claim": claim.text, "statistic": claim.statistic,
                             "rule": claim.rule_text()}
    if isinstance(m, NotApplicable):
        entry.update(holds=None, not_applicable=m.reason, estimate=None, interval=None, n=0, interval_kind=None,
                     selected_on=m.selected_on, selections=m.selections,
                     evidence="not applicable: " + m.reason + (f"; {m.context}" if m.context else ""))
        return entry
    holds = decide(claim.rule, m.low, m.high)
    interval = [m.low, m.high] if m.has_interval else None
    entry.update(holds=holds, not_applicable=None, estimate=None if math.isnan(m.estimate) else m.estimate,
                 interval=interval, n=m.n, interval_kind=m.interval, selected_on=m.selected_on,
                 selections=m.selections, evidence=_evidence(claim.rule, m))
    return entry


def _evidence(rule: Rule, m: Measurement) -> str:
    signed = rule.op == "within" or rule.threshold == 0
    digits = rule.digits

    def num(v: float) -> str:
        return f"{v * rule.scale:{'+' if signed else ''}.{digits}f}"

    unit = f" {rule.unit}" if rule.unit else ""
    if m.has_interval:
        value = f"{num(m.estimate)} [{num(m.low)}, {num(m.high)}]{unit} ({m.interval}, n = {m.n})"
    elif math.isnan(m.estimate):
        value = f"not measurable (n = {m.n})"
    else:
        value = f"{num(m.estimate)}{unit} (no interval: n = {m.n})"
    return f"{value}" + (f"; {m.context}" if m.context else "")


def paired_measurement(diff: dict[str, Any], context: str = "", selections: dict[str, Any] | None = None,
                       selected_on: str | None = None) -> Measurement:
    """A paired difference over seeds (:func:`kdlab.analysis.stats.paired_by_seed`) as a :class:`Measurement`."""
    return Measurement(diff["mean"], diff["low"], diff["high"], int(diff["n"]), "95% paired t interval over seeds",
                       context, dict(selections or {}), selected_on)
