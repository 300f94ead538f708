"""Signal quality of the alert rules on a simulated scenario with injected truth.

Run ``python -m tests.signals.quality`` for the table in docs/ALERTS.md; the test
``test_signal_quality`` asserts the targets of the alerts issue on the same run.

Scoring (alert *episodes*, i.e. distinct alert ids):
- restock: truth = the scenario's SKUs heading for stockout. Precision = episodes on
  truth SKUs / all episodes; recall = truth SKUs with an episode / truth SKUs.
- surge and rising share: truth = each injected (category, colour). An episode on a
  truth key that opened after its surge began is a true positive; one that opened
  before is a false positive. Episodes on other keys are false positives unless the
  injection really raised that key's expected orders by >= 25% (e.g. the size most of
  the surging colour's SKUs come in): those are correct but not the injected truth and
  are left out of both counts, and listed as collateral.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.core.alerting.book import Alert
from streams.core.alerting.evaluator import AlertEvaluator, PreparedInputs
from streams.sim.model import DAY_MS, HOUR_MS, ShopSimulator, SimEvent
from streams.sim.scenario import Scenario, ScenarioTruth
from tests.signals.reference import reference_inputs

START_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
DAYS = 8
#: 02:00 UTC = 10:00 China time, six days in
SURGE_START_MS = START_MS + 6 * DAY_MS + 2 * HOUR_MS


def scenario_sim(seed: int = 7, surge_start_ms: int = SURGE_START_MS) -> ShopSimulator:
    return ShopSimulator(
        seed, START_MS, n_skus=60, orders_per_hour=200,
        scenario=Scenario(surge_start_ms=surge_start_ms),
    )


def scenario_events(
    seed: int = 7, days: float = DAYS, surge_start_ms: int = SURGE_START_MS
) -> tuple[list[SimEvent], ScenarioTruth]:
    sim = scenario_sim(seed, surge_start_ms)
    events = sim.catalog() + sim.events(START_MS + int(days * DAY_MS))
    return events, sim.truth


def evaluate_hours(events: list[SimEvent]) -> list[Alert]:
    """Every alert change over the scenario, hour by hour, from the reference inputs."""
    inputs = reference_inputs(events)
    prep = PreparedInputs(inputs)
    evaluator = AlertEvaluator()
    assert prep.first_hour is not None
    last = max(h for s in inputs.category_orders.values() for h in s)
    changes: list[Alert] = []
    for h in range(prep.first_hour, last, 3600):
        changes += evaluator.evaluate(h, prep)
    return changes


@dataclass
class RuleScore:
    tp: int = 0
    fp: int = 0
    truth: int = 0
    detected: int = 0
    delays_h: list[float] = field(default_factory=list)
    collateral: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.truth if self.truth else 1.0


def score(
    changes: list[Alert], truth: ScenarioTruth, events: list[SimEvent]
) -> dict[str, RuleScore]:
    opened = [a for a in changes if a.state == "open"]
    out: dict[str, RuleScore] = {}
    # restock
    rs = RuleScore(truth=len(truth.stockout_skus))
    seen: set[str] = set()
    for a in opened:
        if a.kind != "restock":
            continue
        if a.sku in truth.stockout_skus:
            rs.tp += 1
            seen.add(a.sku)
        else:
            rs.fp += 1
            rs.false.append(a.sku)
    rs.detected = len(seen)
    out["restock"] = rs
    # demand signals
    key_skus: dict[tuple[str, ...], list[str]] = {}
    for ev in events:
        v = ev.value
        if v["event_type"] == "product_upsert":
            for dim, val in (("color", v["color"]), ("size", v["size"])):
                key_skus.setdefault((v["category"], dim, val), []).append(v["sku"])
    from streams.core.pricebands import PriceBands

    bands = PriceBands()
    for ev in events:
        v = ev.value
        if v["event_type"] == "product_upsert":
            k = (v["category"], "price_band", bands.label(v["list_price"]))
            key_skus.setdefault(k, []).append(v["sku"])
    for kind in ("surge", "rising_share"):
        sc = RuleScore(truth=len(truth.surges))
        found: set[tuple[str, str]] = set()
        for a in opened:
            if a.kind != kind:
                continue
            at_ms = a.window_start * 1000
            sg = next(
                (s for s in truth.surges if (s.category, "color", s.color) == a.key), None
            )
            if sg is not None and at_ms + HOUR_MS > sg.start_ms:
                sc.tp += 1
                if (sg.category, sg.color) not in found:
                    found.add((sg.category, sg.color))
                    sc.delays_h.append((at_ms - sg.start_ms // HOUR_MS * HOUR_MS) / HOUR_MS)
            elif sg is None and truth.uplift(key_skus.get(a.key, []), at_ms) >= 1.25:
                sc.collateral.append("/".join(a.key))
            else:
                sc.fp += 1
                sc.false.append("/".join(a.key))
        sc.detected = len(found)
        out[kind] = sc
    return out


def main(seed: int = 7) -> None:
    events, truth = scenario_events(seed)
    changes = evaluate_hours(events)
    scores = score(changes, truth, events)
    print(f"scenario: {len(events):,} events over {DAYS} days, seed {seed}")
    print(
        "| rule | truth | episodes TP/FP | precision | recall | detection delay (h) "
        "| collateral |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind, s in scores.items():
        delays = ", ".join(f"{d:g}" for d in s.delays_h) or "-"
        print(
            f"| {kind} | {s.truth} | {s.tp}/{s.fp} | {s.precision:.2f} | {s.recall:.2f} "
            f"| {delays} | {', '.join(s.collateral) or '-'} |"
        )
    for a in changes:
        if a.kind == "restock" and a.state == "open":
            lead = a.details["lead_time_days"]
            true_out = truth.stockout_ms.get(a.sku)
            margin = "-" if true_out is None else f"{(true_out / 1000 - a.opened_at) / 86400:.2f}"
            print(
                f"restock {a.sku}: lead {lead} d, cover at alert {a.score:.2f} d, "
                f"true stockout in {margin} d"
            )


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:] or ["7"]:
        main(int(arg))
