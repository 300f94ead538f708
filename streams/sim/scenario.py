"""Known truth injected into a simulation, to measure the alert rules against it.

``Scenario`` is passed to ``ShopSimulator(..., scenario=...)``. With it:

- lead times are drawn from ``lead_time_days`` and every SKU starts with enough stock;
- ``stockout_skus`` SKUs (the truth for restock alerts) are never restocked by their
  factory and start with ``lead time + stockout_cover_days`` days of cover: they run out,
  and the simulator records when (``ScenarioTruth.stockout_ms``);
- every other SKU is restocked early, lead-time aware: when on-hand plus what is on the
  road falls below ``lead time + healthy_cover_days`` days of its current demand, the
  factory ships within hours and the goods arrive after the lead time. They must never
  raise a restock alert;
- from ``surge_start_ms`` a colour within a category takes off, then every
  ``surge_gap_hours`` another one in another category (``surges`` in all): its SKUs
  become ``surge_multiplier`` times as popular, without taking demand from the other
  SKUs (traffic grows by what they gain). ``ScenarioTruth.uplift`` gives, for any set of
  SKUs, the factor by which their expected orders grew (what a surge alert should see).
  Only colours expected to take at least ``surge_min_base_per_hour`` orders an hour at
  the surge start are chosen: the rules ignore smaller cells on purpose;
- one size of one category has ``high_return_multiplier`` times its return rate.

Issue 20 adds, all off by default (the scenarios above stay as they were):

- ``censor_stockouts``: a SKU with nothing on hand cannot be ordered (its page views go on;
  the lines that could not be bought are ``ScenarioTruth.lost_units``): demand hidden by a
  stockout, as in a real shop;
- ``launch_ms``: ``launch_skus`` new products listed then, each taking ``launch_share`` of
  all orders from that moment (a hit), starting with ``launch_on_hand`` units; their
  factory ships a run a lead time after the launch (the truth for a cold-start restock
  alert: they sell out within the first hours);
- ``outage_ms``: ``outage_skus`` popular healthy SKUs run out then (their stock is lost)
  and get a restock ``outage_days`` later; their true demand never changes (the truth for
  censored demand: the rate after the restock, no surge when they come back);
- ``weekday_factors`` (Monday to Sunday, China dates), ``weekly_growth`` (traffic grows by
  this share a week) and ``promo_days`` (days starting at these epoch ms, China midnight,
  with ``promo_day_multiplier`` times the traffic): the patterns the brief's forecast is
  backtested on.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Scenario:
    lead_time_days: tuple[int, int] = (2, 4)
    stockout_skus: int = 4
    stockout_cover_days: tuple[float, float] = (2.5, 4.0)
    healthy_cover_days: float = 12.0
    surge_start_ms: int | None = None
    surge_multiplier: float = 4.0
    surges: int = 2
    surge_gap_hours: int = 4
    #: only colours with at least this many expected orders per hour when their surge
    #: starts: below it the rules' minimum volume applies (the long tail must not fire)
    surge_min_base_per_hour: float = 4.5
    high_return_multiplier: float = 3.0
    censor_stockouts: bool = False
    launch_ms: int | None = None
    launch_skus: int = 1
    launch_share: float = 0.3
    launch_on_hand: int = 3
    outage_ms: int | None = None
    outage_skus: int = 1
    outage_days: float = 3.0
    weekday_factors: tuple[float, ...] | None = None
    weekly_growth: float = 0.0
    promo_days: tuple[int, ...] = ()
    promo_day_multiplier: float = 3.0


@dataclass(frozen=True, slots=True)
class Surge:
    category: str
    color: str
    skus: tuple[str, ...]
    start_ms: int


@dataclass(slots=True)
class ScenarioTruth:
    """What the scenario injected (filled in as the simulation runs)."""

    stockout_skus: list[str] = field(default_factory=list)
    #: sku -> ts (epoch ms) of the order that took its stock to zero or below
    stockout_ms: dict[str, int] = field(default_factory=dict)
    surges: list[Surge] = field(default_factory=list)
    high_return_category: str = ""
    high_return_size: str = ""
    #: sku -> order popularity before the surge, and the surge multiplier per SKU
    popularity: dict[str, float] = field(default_factory=dict)
    multiplier: dict[str, float] = field(default_factory=dict)
    #: new products (launch_ms) and the SKUs that ran out (outage_ms .. outage_end_ms)
    launch_skus: list[str] = field(default_factory=list)
    launch_ms: int | None = None
    outage_skus: list[str] = field(default_factory=list)
    outage_ms: int | None = None
    outage_end_ms: int | None = None
    #: sku -> units that shoppers wanted but could not order (censored by a stockout), by
    #: hour start (epoch s)
    lost_units: dict[str, dict[int, int]] = field(default_factory=dict)

    def uplift(self, skus: list[str], at_ms: int | None = None) -> float:
        """Factor by which the expected orders of ``skus`` grew by ``at_ms`` (default: once
        every surge is on)."""
        on = {
            sku for sg in self.surges if at_ms is None or sg.start_ms <= at_ms for sku in sg.skus
        }
        before = sum(self.popularity[s] for s in skus)
        if before <= 0:
            return 1.0
        after = sum(self.popularity[s] * (self.multiplier[s] if s in on else 1.0) for s in skus)
        return after / before
