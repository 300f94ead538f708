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
  are left out of both counts, and listed as collateral; so are episodes on the cells of
  a product launched during the scenario, after its launch (demand that did appear).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.core.alerting.book import Alert
from streams.core.alerting.evaluator import AlertEvaluator, PreparedInputs
from streams.sim.model import DAY_MS, HOUR_MS, ShopSimulator, SimEvent
from streams.sim.scenario import Scenario, ScenarioTruth
from tests.signals.reference import reference_inputs, ts_ms

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


#: the issue-20 scenario: a surge as above, a new product launched two days in (3 units
#: on hand, its first run a lead time away), and two SKUs out of stock for three days from
#: day 3 while their views go on; orders for SKUs with nothing on hand do not happen
LAUNCH_MS = START_MS + 2 * DAY_MS + 3 * HOUR_MS
OUTAGE_MS = START_MS + 3 * DAY_MS + 5 * HOUR_MS
STOCKOUT_DAYS = 9


def stockout_sim(seed: int = 7) -> ShopSimulator:
    return ShopSimulator(seed, START_MS, n_skus=60, orders_per_hour=200, scenario=Scenario(
        surge_start_ms=SURGE_START_MS, censor_stockouts=True,
        launch_ms=LAUNCH_MS, launch_share=0.05, launch_on_hand=3,
        outage_ms=OUTAGE_MS, outage_skus=2, outage_days=3.0))


def stockout_events(seed: int = 7) -> tuple[list[SimEvent], ScenarioTruth]:
    """The issue-20 scenario's events and truth; the restock truth (``stockout_skus``) is
    extended by the launched SKU and the outage SKUs that ran out with nothing on the way
    (their run ships after the stockout; one already in transit covers the SKU, and an
    alert on it would be noise)."""
    sim = stockout_sim(seed)
    events = sim.catalog() + sim.events(START_MS + STOCKOUT_DAYS * DAY_MS)
    truth = sim.truth
    shipped = {e.value["sku"]: ts_ms(e.value["ts"]) for e in events
               if e.value["event_type"] == "restock_shipped"
               and e.value["sku"] in truth.outage_skus}
    truth.stockout_skus = [*truth.stockout_skus, *truth.launch_skus, *(
        s for s in truth.outage_skus if shipped.get(s, 0) > (truth.outage_ms or 0))]
    return events, truth


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
            elif (truth.launch_ms is not None and at_ms + HOUR_MS > truth.launch_ms
                  and set(truth.launch_skus) & set(key_skus.get(a.key, []))):
                # a new product's cells: their demand did rise from nothing (a launch)
                sc.collateral.append("/".join(a.key) + " (launch)")
            else:
                sc.fp += 1
                sc.false.append("/".join(a.key))
        sc.detected = len(found)
        out[kind] = sc
    return out


def _key_map(events: list[SimEvent]) -> dict[str, list[tuple[str, str, str]]]:
    from streams.core.pricebands import PriceBands

    bands = PriceBands()
    out: dict[str, list[tuple[str, str, str]]] = {}
    for ev in events:
        v = ev.value
        if v["event_type"] == "product_upsert":
            out[v["sku"]] = [(v["category"], "color", v["color"]),
                             (v["category"], "size", v["size"]),
                             (v["category"], "price_band", bands.label(v["list_price"]))]
    return out


def score_lost_sales(
    changes: list[Alert], truth: ScenarioTruth, events: list[SimEvent],
    min_units: float = 20.0, min_share: float = 0.10,
) -> RuleScore:
    """The lost-sales signal against what the simulator's shoppers could not buy.

    Truth, per (category, dimension, value) and hour: over the 24 hours ending with it,
    the units wanted but not orderable (``truth.lost_units``) are at least ``min_units``
    and ``min_share`` of the units wanted (net ordered + lost), the rule's own thresholds
    applied to the injected truth. An episode on a truth key opened while the truth held
    (or up to a day after it began) is a true positive; any other is false. Delay: from
    the first truth hour of the key to the episode's first hour."""
    keys_of = _key_map(events)
    lost: dict[tuple[str, str, str], dict[int, float]] = {}
    for sku, by_hour in truth.lost_units.items():
        for key in keys_of.get(sku, []):
            target = lost.setdefault(key, {})
            for h, u in by_hour.items():
                target[h] = target.get(h, 0.0) + u
    sold: dict[tuple[str, str, str], dict[int, float]] = {}
    for ev in events:
        v = ev.value
        kind = v["event_type"]
        if kind not in ("order_placed", "order_cancelled"):
            continue
        h = ts_ms(v["ts"]) // HOUR_MS * 3600
        sign = 1 if kind == "order_placed" else -1
        for line in v["lines"]:
            for key in keys_of.get(line["sku"], []):
                if key in lost:
                    target = sold.setdefault(key, {})
                    target[h] = target.get(h, 0.0) + sign * line["qty"]
    truth_hours: dict[tuple[str, str, str], list[int]] = {}
    for key, by_hour in lost.items():
        hours = sorted(by_hour)
        for h in range(hours[0], hours[-1] + 86_400, 3600):
            lo = h - 23 * 3600
            lu = sum(u for t, u in by_hour.items() if lo <= t <= h)
            su = sum(u for t, u in sold.get(key, {}).items() if lo <= t <= h)
            if lu >= min_units and lu >= min_share * (lu + max(su, 0)):
                truth_hours.setdefault(key, []).append(h)
    rs = RuleScore(truth=len(truth_hours))
    seen: set[tuple[str, str, str]] = set()
    for a in changes:
        if a.kind != "lost_sales" or a.state != "open":
            continue
        hours = truth_hours.get(a.key, [])
        if hours and hours[0] - 3600 <= a.window_start <= hours[-1] + 86_400:
            rs.tp += 1
            if a.key not in seen:
                seen.add(a.key)
                rs.delays_h.append((a.window_start - hours[0]) / 3600)
        else:
            rs.fp += 1
            rs.false.append("/".join(a.key))
    rs.detected = len(seen)
    return rs


def restock_delays(changes: list[Alert], truth: ScenarioTruth) -> dict[str, float]:
    """Hours from a launch or outage to the first restock episode of its SKUs (the end of
    the finished hour the alert judged)."""
    out: dict[str, float] = {}
    for sku, at in [*((s, truth.launch_ms) for s in truth.launch_skus),
                    *((s, truth.outage_ms) for s in truth.outage_skus)]:
        if at is None or sku not in truth.stockout_skus:
            continue
        first = min((a.window_start for a in changes
                     if a.kind == "restock" and a.state == "open" and a.sku == sku), default=None)
        if first is not None:
            out[sku] = (first + 3600 - at / 1000) / 3600
    return out


def _table(scores: dict[str, RuleScore]) -> None:
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


def main_stockouts(seed: int = 7) -> None:
    events, truth = stockout_events(seed)
    changes = evaluate_hours(events)
    scores = score(changes, truth, events)
    scores["lost_sales"] = score_lost_sales(changes, truth, events)
    print(f"stockout scenario: {len(events):,} events over {STOCKOUT_DAYS} days, seed {seed}")
    _table(scores)
    for sku, d in restock_delays(changes, truth).items():
        print(f"restock {sku}: {d:g} h after its launch or stockout")


def main(seed: int = 7) -> None:
    events, truth = scenario_events(seed)
    changes = evaluate_hours(events)
    scores = score(changes, truth, events)
    print(f"scenario: {len(events):,} events over {DAYS} days, seed {seed}")
    _table(scores)
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

    args = sys.argv[1:]
    run = main_stockouts if args[:1] == ["stockouts"] else main
    for arg in [a for a in args if a != "stockouts"] or ["7"]:
        run(int(arg))
