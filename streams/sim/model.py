"""A seeded, realistic simulator of the shops that feed c2m-pulse. Pure logic: no Kafka.

``ShopSimulator(seed, start_ms)`` is fully determined by its arguments: it draws from one
``random.Random(seed)`` and generates simulated time in fixed one-minute ticks, so the
events up to a time do not depend on how the calls to ``events`` were chunked
(``events(t1) + events(t2) == events(t2)`` on a fresh simulator).

What it models:

- a catalog of SKUs (``catalog()``), each sold by one shop and made by one factory
  (F001..F006), with Chinese and English attributes and list prices over every default
  price band (0-10 .. 500+); with ``shops_per_product`` above 1, every product (category,
  colour, size, list price, factory) is listed by that many shops, each as a SKU of its
  own, as a factory's product is sold by several shops (a market whose cells have enough
  shops for the k-shop rule of the market numbers);
- browsing sessions: a skewed SKU popularity (Zipf-like, cheaper items sell more), a
  per-SKU "appeal" that makes some SKUs viewed a lot but bought little, repeat visitors
  from a fixed pool with a home region; about 20 page views per order;
- orders of 1-3 lines (same shop), qty 1-5, unit prices near list price with occasional
  discounts (deeper during a promotion); ~5% are cancelled minutes to hours later;
- per-line ``shipped`` (hours later), ``delivered`` (about 1-4 days later) and
  ``returned`` (size-dependent rates around 3-8%, within 7 days of delivery);
- inventory: an hourly ``stock_level`` per SKU (staggered), and factory restocks
  (``restock_shipped`` / ``restock_received``) when stock runs below a reorder point;
- daily seasonality in China time (UTC+8: evening peak, night trough) and an optional
  promotion window multiplying traffic by ``promo_multiplier``;
- a warm start (on by default): the shops were already trading before ``start_ms``, so
  shipments, deliveries and returns of earlier orders arrive from the first minute;
- late, out-of-order delivery: each event is *emitted* at ``ts + delay`` with
  ``0 <= delay <= disorder_ms`` and ``events`` returns events in emission order, so an
  event's ts is never more than ``disorder_ms`` behind one emitted before it;
- three ``ts`` encodings when ``ts_format_mix``: epoch ms, RFC 3339 ``Z`` and
  ``+08:00`` (each shop mostly uses one), all denoting ``SimEvent.ts_ms`` exactly.

Everything validates against ``schemas.contract`` (checked by the unit tests).
"""

from __future__ import annotations

import gc
import heapq
import math
import random
import time
from bisect import bisect_right
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Any, Final

from schemas.contract import TOPIC_LOGISTICS, TOPIC_ORDERS, TOPIC_PAGEVIEWS, TOPIC_PRODUCTS
from streams.sim.scenario import Scenario, ScenarioTruth, Surge

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
#: China Standard Time (UTC+8): the shoppers' clock, which drives the daily curve.
CST_OFFSET_MS: Final = 8 * HOUR_MS
#: Generation step. Events are generated tick by tick, which makes chunking irrelevant.
TICK_MS: Final = MINUTE_MS

#: ``ts`` encodings: integer epoch ms, RFC 3339 in UTC (``Z``), RFC 3339 at ``+08:00``.
TS_EPOCH_MS: Final = 0
TS_UTC: Final = 1
TS_CST: Final = 2

# Relative traffic by hour of the day in China time, 00:00 .. 23:00 (normalised below so
# that the daily mean is 1: ``orders_per_hour`` is the average over a day).
_HOURLY_SHAPE: Final = (
    0.90, 0.55, 0.30, 0.18, 0.13, 0.13, 0.20, 0.40, 0.65, 0.85, 1.00, 1.05,
    1.15, 1.10, 1.00, 1.00, 1.00, 0.95, 1.05, 1.35, 1.75, 1.95, 1.80, 1.35,
)
_HOURLY: Final = tuple(v * 24 / sum(_HOURLY_SHAPE) for v in _HOURLY_SHAPE)

_REGIONS: Final = (
    ("广东", 16), ("浙江", 14), ("江苏", 12), ("上海", 8), ("北京", 7), ("山东", 8),
    ("四川", 7), ("福建", 6), ("河南", 6), ("湖北", 5), ("湖南", 4), ("重庆", 3),
    ("陕西", 2), ("辽宁", 2),
)
#: More provinces for a wider market (``n_regions`` above 14, e.g. the read benchmark).
_MORE_REGIONS: Final = (
    ("安徽", 4), ("河北", 4), ("江西", 3), ("广西", 3), ("云南", 3), ("山西", 2),
    ("天津", 2), ("黑龙江", 2), ("吉林", 2), ("贵州", 2), ("内蒙古", 1), ("新疆", 1),
    ("甘肃", 1), ("海南", 1), ("宁夏", 1), ("青海", 1), ("西藏", 1), ("香港", 1),
    ("澳门", 1), ("台湾", 1),
)
_COLORS: Final = (
    "雾霾蓝", "樱花粉", "奶白", "燕麦色", "牛油果绿", "雾灰", "焦糖", "black", "navy",
    "white", "khaki",
)
_FACTORIES: Final = ("F001", "F002", "F003", "F004", "F005", "F006")

# Return probability of a delivered line by size; a category factor scales it.
_SIZE_RETURN_RATE: Final = {
    "S": 0.09, "M": 0.06, "L": 0.07, "XL": 0.095, "1-3岁": 0.075, "3-6岁": 0.085,
    "6-9岁": 0.08, "均码": 0.035, "1.5m": 0.05, "1.8m": 0.055,
}
_MAX_RETURN_RATE: Final = 0.15
_APPAREL_REASONS: Final = ("尺码偏小", "尺码偏大", "颜色与图片不符", "七天无理由退货", "质量问题")
_GOODS_REASONS: Final = ("七天无理由退货", "质量问题", "颜色与图片不符", "arrived damaged", "")

# Line count and quantity distributions (cumulative probabilities).
_LINES_CUM: Final = (0.70, 0.92, 1.0)
_MEAN_LINES: Final = 0.70 * 1 + 0.22 * 2 + 0.08 * 3
_QTY_SINGLE_CUM: Final = (0.62, 0.82, 0.91, 0.96, 1.0)
_QTY_MULTI_CUM: Final = (0.30, 0.55, 0.70, 0.80, 1.0)  # socks, towels: packs of several

# Sessions: non-converting sessions per order, and their mean extra views (geometric).
_BROWSE_SESSIONS_PER_ORDER: Final = 5.0
_BROWSE_CONTINUE: Final = 0.62  # P(one more view) -> mean views = 1 / (1 - p) ~ 2.6
_VIEW_GAP_MEAN_MS: Final = 40_000.0
_VISITORS: Final = 40_000

_CANCEL_RATE: Final = 0.05
_PROMO_CANCEL_RATE: Final = 0.07
#: After this long, no event of an order placed before ``start_ms`` is left.
_WARM_HORIZON_MS: Final = 170 * HOUR_MS
_STOCK_REPORT_MS: Final = HOUR_MS
# Delivery after shipment: 18 h + exponential (mean 20 h), capped; returns after delivery:
# 2 h + exponential (mean 40 h), within 7 days.
_DELIVERY_MIN: Final = 18 * HOUR_MS
_DELIVERY_MEAN: Final = 20.0 * HOUR_MS
_DELIVERY_CAP: Final = 100.0 * HOUR_MS
_RETURN_MIN: Final = 2 * HOUR_MS
_RETURN_MEAN: Final = 40.0 * HOUR_MS
_RETURN_CAP: Final = 166.0 * HOUR_MS


@dataclass(frozen=True, slots=True)
class _Category:
    name: str
    lo: float  # list price range, CNY
    hi: float
    sizes: tuple[str, ...]
    moq: tuple[int, int]
    weight: float  # share of the catalog
    multi: bool  # bought in packs: larger quantities
    return_factor: float
    factory: str  # main factory; others make some SKUs too


_CATEGORIES: Final = (
    _Category("袜子", 3, 39, ("均码", "M", "L"), (1000, 5000), 3.0, True, 0.8, "F001"),
    _Category("漱口杯", 5, 45, ("均码",), (500, 3000), 1.5, False, 0.5, "F002"),
    _Category("毛巾", 9, 69, ("均码",), (500, 3000), 2.0, True, 0.6, "F003"),
    _Category("童装", 39, 399, ("1-3岁", "3-6岁", "6-9岁"), (200, 1000), 2.5, False, 1.1, "F004"),
    _Category("拖鞋", 12, 89, ("S", "M", "L", "XL"), (300, 2000), 1.5, False, 1.0, "F005"),
    _Category("保温杯", 49, 299, ("均码",), (200, 1500), 1.0, False, 0.7, "F002"),
    _Category("四件套", 129, 799, ("1.5m", "1.8m"), (100, 500), 1.0, False, 0.9, "F003"),
    _Category("羽绒服", 259, 800, ("S", "M", "L", "XL"), (100, 500), 1.0, False, 1.3, "F006"),
    _Category("T-shirt", 29, 159, ("S", "M", "L", "XL"), (300, 2000), 2.0, False, 1.0, "F004"),
    _Category("hoodie", 89, 359, ("S", "M", "L", "XL"), (200, 1000), 1.0, False, 1.1, "F006"),
    _Category("phone case", 5, 49, ("均码",), (500, 5000), 1.5, False, 0.6, "F005"),
    _Category("tote bag", 19, 129, ("均码",), (300, 2000), 1.0, False, 0.7, "F001"),
)
#: Price ranges forced onto the first SKUs so that every default band is in the catalog.
_FORCED_BANDS: Final = ((1, 10), (10, 20), (20, 50), (50, 100), (100, 200), (200, 500), (500, 800))


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One message: topic, key, JSON-ready value, and the true event time in epoch ms."""

    topic: str
    key: str
    value: dict[str, Any]
    ts_ms: int


_Queued = tuple[int, int, SimEvent]
_OUT_BUCKET_MS: Final = 60_000


def _emit_of(item: _Queued) -> int:
    return item[0]


@dataclass(frozen=True, slots=True)
class _Sku:
    sku: str
    shop: int
    category: _Category
    color: str
    size: str
    list_price: float
    factory_id: str
    lead_time_days: int
    moq: int
    qty_cum: tuple[float, ...]
    return_rate: float


def seasonality(ts_ms: int) -> float:
    """Relative traffic at ``ts_ms`` (daily mean 1): China-time evening peak, night trough."""
    h = ((ts_ms + CST_OFFSET_MS) % DAY_MS) / HOUR_MS
    i = int(h)
    f = h - i
    return _HOURLY[i] * (1.0 - f) + _HOURLY[(i + 1) % 24] * f


_MINUTE_PREFIX: dict[int, str] = {}  # epoch minute (local) -> "YYYY-MM-DDTHH:MM:"
_SECONDS: Final = tuple(f"{i:02d}" for i in range(60))
_MILLIS_Z: Final = tuple(f".{i:03d}Z" for i in range(1000))
_MILLIS_CST: Final = tuple(f".{i:03d}+08:00" for i in range(1000))


def _minute_prefix(minute: int) -> str:
    if len(_MINUTE_PREFIX) >= 100_000:
        _MINUTE_PREFIX.clear()
    t = time.gmtime(minute * 60)
    prefix = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
    _MINUTE_PREFIX[minute] = prefix
    return prefix


def format_ts(ts_ms: int, fmt: int) -> int | str:
    """``ts_ms`` as epoch ms (``TS_EPOCH_MS``) or an RFC 3339 string with milliseconds,
    in UTC ``Z`` (``TS_UTC``) or at ``+08:00`` (``TS_CST``)."""
    if fmt == TS_EPOCH_MS:
        return ts_ms
    if fmt == TS_UTC:
        minute, rem = divmod(ts_ms, 60_000)
        millis = _MILLIS_Z
    else:
        minute, rem = divmod(ts_ms + CST_OFFSET_MS, 60_000)
        millis = _MILLIS_CST
    prefix = _MINUTE_PREFIX.get(minute) or _minute_prefix(minute)
    return prefix + _SECONDS[rem // 1000] + millis[rem % 1000]


def _uniform_survival(x: float, lo: float, hi: float) -> float:
    return 1.0 if x < lo else (0.0 if x >= hi else (hi - x) / (hi - lo))


def _ship_survival(x: float) -> float:
    """P(ship delay > x) for ``ShopSimulator._ship_delay``."""
    h = HOUR_MS
    return (
        0.70 * _uniform_survival(x, h, 12 * h)
        + 0.25 * _uniform_survival(x, 12 * h, 36 * h)
        + 0.05 * _uniform_survival(x, 36 * h, 72 * h)
    )


def _shifted_exp_survival(x: float, lo: float, mean: float, cap: float) -> float:
    if x < lo:
        return 1.0
    if x >= lo + cap:
        return 0.0
    return math.exp(-(x - lo) / mean)


def _charm_price(raw: float, lo: float, hi: float, u: float) -> float:
    """A shop-like price (19.9, 29.0, 45.5) in ``[lo, hi)`` near ``raw``."""
    base = min(max(math.floor(raw), math.ceil(lo)), math.ceil(hi) - 1)
    ending = 0.9 if u < 0.6 else (0.0 if u < 0.9 else 0.5)
    return round(base + ending, 2)


def _cumulative(weights: list[float]) -> list[float]:
    return list(accumulate(weights))


# Internal (non-emitting) scheduled actions.
_ACT_DELTA: Final = 0  # on-hand += qty
_ACT_REPORT: Final = 1  # emit stock_level, maybe trigger a restock
_ACT_RESTOCK_IN: Final = 2  # on-hand += qty, restock no longer pending


class ShopSimulator:
    """Deterministic shop traffic for one ``seed`` and ``start_ms`` (see module docstring).

    ``catalog()`` gives the product upserts; ``events(until_ms)`` advances simulated time
    and returns, in emission order, every event emitted up to ``until_ms`` that was not
    returned before. Every returned event has ``ts_ms <= until_ms`` and
    ``ts_ms >= start_ms``.
    """

    def __init__(
        self,
        seed: int,
        start_ms: int,
        *,
        n_shops: int = 5,
        n_skus: int = 120,
        shops_per_product: int = 1,
        n_regions: int = len(_REGIONS),
        orders_per_hour: float = 600.0,
        promo_start_ms: int | None = None,
        promo_hours: float = 2.0,
        promo_multiplier: float = 4.0,
        disorder_ms: int = 180_000,
        ts_format_mix: bool = True,
        warm_start: bool = True,
        scenario: Scenario | None = None,
        page_views: bool = True,
    ) -> None:
        if n_shops < 1:
            raise ValueError("n_shops must be >= 1")
        if n_skus < n_shops:
            raise ValueError("n_skus must be >= n_shops (every shop sells at least one SKU)")
        if not 1 <= shops_per_product <= n_shops:
            raise ValueError("shops_per_product must be in [1, n_shops]")
        if not 1 <= n_regions <= len(_REGIONS) + len(_MORE_REGIONS):
            raise ValueError(
                f"n_regions must be in [1, {len(_REGIONS) + len(_MORE_REGIONS)}]"
            )
        if orders_per_hour < 0 or not math.isfinite(orders_per_hour):
            raise ValueError("orders_per_hour must be a finite number >= 0")
        if disorder_ms < 0:
            raise ValueError("disorder_ms must be >= 0")
        if promo_multiplier < 0 or promo_hours < 0:
            raise ValueError("promo_multiplier and promo_hours must be >= 0")
        if start_ms < 0:
            raise ValueError("start_ms must be >= 0 (epoch milliseconds)")
        self.seed = seed
        self.start_ms = start_ms
        self.n_shops = n_shops
        self.n_skus = n_skus
        self.shops_per_product = shops_per_product
        self.n_regions = n_regions
        self.orders_per_hour = float(orders_per_hour)
        self.promo_start_ms = promo_start_ms
        self.promo_end_ms = (
            None if promo_start_ms is None else promo_start_ms + int(promo_hours * HOUR_MS)
        )
        self.promo_multiplier = float(promo_multiplier)
        self.disorder_ms = int(disorder_ms)
        self.ts_format_mix = ts_format_mix
        #: False: page views are simulated (the same random draws, the same event ids
        #: given out) but not emitted, so the other events are those of a full run, made
        #: faster for a reader of orders, returns and stock movements only
        self.page_views = page_views
        self.scenario = scenario
        self.truth = ScenarioTruth()
        self._rate_factor = 1.0  # traffic growth from a scenario surge
        self._launch_pending = scenario is not None and scenario.launch_ms is not None
        self._outage_pending = scenario is not None and scenario.outage_ms is not None
        self._surges_on = 0

        self._rng = random.Random(seed)
        self._tag = f"{seed}-{start_ms:x}"
        self._counter = 0  # event ids; also orders events emitted at the same ms
        self._orders = 0
        self._aseq = 0
        self._gen_ms = start_ms  # next tick to generate
        # Emission queue, bucketed by emit time: bucket -> [(emit_ms, seq, event)]; seq
        # is unique, so sorting never compares events.
        self._out: dict[int, list[_Queued]] = {}
        self._out_bucket = start_ms // _OUT_BUCKET_MS  # buckets before this one are empty
        self._actions: list[tuple[int, int, int, int, int]] = []  # (ts, seq, kind, sku, qty)

        self._shops = [f"S{i + 1:03d}" for i in range(n_shops)]
        # Each shop's system mostly (85%) writes one ts format: a lookup by int(u * 20).
        self._shop_fmt = [
            (i % 3,) * 16 + (TS_EPOCH_MS, TS_UTC, TS_CST, i % 3) for i in range(n_shops)
        ]
        self._quick_delay = min(self.disorder_ms, 3_000) / 0.85
        self._late_delay = self.disorder_ms / 0.15
        self._build_catalog()
        self._build_visitors()
        if scenario is not None:
            self._build_scenario(scenario)
        self._build_stock()
        self.warm_start = warm_start

    # ------------------------------------------------------------------ setup
    def _build_catalog(self) -> None:
        rng = self._rng
        n = self.n_skus
        factory_lead = {f: rng.randint(3, 24) for f in _FACTORIES}
        cat_weights = [c.weight for c in _CATEGORIES]
        shop_weights = [1.0 / (i + 1) ** 0.6 for i in range(self.n_shops)]
        skus: list[_Sku] = []
        per = self.shops_per_product
        first_shop = 0
        for i in range(n):
            if i % per:  # another shop's listing of the product before it
                shop = (first_shop + i % per) % self.n_shops
                skus.append(replace(skus[i - 1], sku=f"SKU{i + 1:05d}", shop=shop))
                continue
            if i < len(_FORCED_BANDS) * per:
                b_lo, b_hi = _FORCED_BANDS[i // per]
                fits = [c for c in _CATEGORIES if c.lo < b_hi and c.hi > b_lo]
                cat = fits[rng.randrange(len(fits))]
                lo, hi = max(float(b_lo), cat.lo), min(float(b_hi), cat.hi)
            else:
                cat = rng.choices(_CATEGORIES, cat_weights)[0]
                lo, hi = cat.lo, cat.hi
            raw = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            price = _charm_price(raw, lo, hi, rng.random())
            if per == 1:
                shop = i if i < self.n_shops else rng.choices(
                    range(self.n_shops), shop_weights)[0]
            else:  # the first products' listings cover every shop, the others at random
                shop = first_shop = i if i < self.n_shops else rng.randrange(self.n_shops)
            factory = cat.factory if rng.random() < 0.8 else rng.choice(_FACTORIES)
            lead = min(30, max(3, factory_lead[factory] + rng.randint(0, 6)))
            size = rng.choice(cat.sizes)
            skus.append(
                _Sku(
                    sku=f"SKU{i + 1:05d}",
                    shop=shop,
                    category=cat,
                    color=rng.choice(_COLORS),
                    size=size,
                    list_price=price,
                    factory_id=factory,
                    lead_time_days=lead,
                    moq=rng.randrange(cat.moq[0], cat.moq[1] + 1, 100),
                    qty_cum=_QTY_MULTI_CUM if cat.multi else _QTY_SINGLE_CUM,
                    return_rate=min(
                        _MAX_RETURN_RATE, _SIZE_RETURN_RATE.get(size, 0.05) * cat.return_factor
                    ),
                )
            )
        self._skus = skus
        self._sku_ids = [s.sku for s in skus]
        self._sku_shop = [s.shop for s in skus]

        # Popularity: Zipf over a random ranking, cheaper items sell more. "Appeal" only
        # drives views, so conversion varies by SKU. Promo items get an extra boost. The
        # listings of one product are ranked next to each other (similar popularity).
        if per == 1:
            ranks = list(range(n))
            rng.shuffle(ranks)
        else:
            product_ranks = list(range(-(-n // per)))
            rng.shuffle(product_ranks)
            ranks = [product_ranks[i // per] * per + i % per for i in range(n)]
        pop = [
            (1.0 / (ranks[i] + 1) ** 0.9) * (30.0 / (skus[i].list_price + 30.0)) ** 0.5
            for i in range(n)
        ]
        appeal = [rng.lognormvariate(0.0, 0.5) for _ in range(n)]
        boost = [3.0 if rng.random() < 0.15 else 1.0 for _ in range(n)]
        self._boost = boost
        self._pop = pop
        self._order_cum = _cumulative(pop)
        self._order_cum_promo = _cumulative([p * b for p, b in zip(pop, boost, strict=True)])
        pv = [p * a for p, a in zip(pop, appeal, strict=True)]
        self._pv_weights = pv
        self._pv_cum = _cumulative(pv)
        self._pv_cum_promo = _cumulative([p * b for p, b in zip(pv, boost, strict=True)])
        self._shop_skus: list[list[int]] = [[] for _ in range(self.n_shops)]
        for i, s in enumerate(skus):
            self._shop_skus[s.shop].append(i)
        self._shop_order_cum = [_cumulative([pop[i] for i in ids]) for ids in self._shop_skus]
        self._shop_pv_cum = [_cumulative([pv[i] for i in ids]) for ids in self._shop_skus]

        listed_ms = max(0, self.start_ms - DAY_MS)  # listed a day before the simulation
        self._catalog: list[SimEvent] = []
        for s in skus:
            value = {
                "event_id": self._next_id(),
                "ts": self._ts(listed_ms, s.shop),
                "shop_id": self._shops[s.shop],
                "event_type": "product_upsert",
                "sku": s.sku,
                "factory_id": s.factory_id,
                "category": s.category.name,
                "color": s.color,
                "size": s.size,
                "list_price": s.list_price,
                "lead_time_days": s.lead_time_days,
                "moq": s.moq,
            }
            self._catalog.append(SimEvent(TOPIC_PRODUCTS, s.sku, value, listed_ms))

    def _build_visitors(self) -> None:
        regions = (_REGIONS + _MORE_REGIONS)[: self.n_regions]
        names = [r for r, _ in regions]
        weights = [w for _, w in regions]
        self._visitor_region = self._rng.choices(names, weights, k=_VISITORS)

    def _build_scenario(self, sc: Scenario) -> None:
        """Apply a ``Scenario``: lead times, high returns, and pick the truth SKUs."""

        rng = random.Random(f"scenario-{self.seed}")
        truth = self.truth
        pop = self._pop
        # a size with high returns: the most popular (category, size) of a sized category
        by_size: dict[tuple[str, str], float] = {}
        for i, s in enumerate(self._skus):
            if len(s.category.sizes) > 1:
                k = (s.category.name, s.size)
                by_size[k] = by_size.get(k, 0.0) + pop[i]
        if by_size:
            truth.high_return_category, truth.high_return_size = max(
                by_size, key=lambda k: (by_size[k], k)
            )
        skus = []
        for s in self._skus:
            rate = s.return_rate
            if (s.category.name, s.size) == (truth.high_return_category, truth.high_return_size):
                rate = min(0.45, rate * sc.high_return_multiplier)
            skus.append(
                replace(s, lead_time_days=rng.randint(*sc.lead_time_days), return_rate=rate)
            )
        self._skus = skus
        for ev, s in zip(self._catalog, skus, strict=True):
            ev.value["lead_time_days"] = s.lead_time_days
        truth.popularity = {s.sku: pop[i] for i, s in enumerate(skus)}
        # a colour taking off: the most popular (category, colour) under a third of its
        # category, with at least two SKUs
        cat_pop: dict[str, float] = {}
        by_color: dict[tuple[str, str], list[int]] = {}
        for i, s in enumerate(skus):
            cat_pop[s.category.name] = cat_pop.get(s.category.name, 0.0) + pop[i]
            by_color.setdefault((s.category.name, s.color), []).append(i)
        candidates = [
            (sum(pop[i] for i in ids), k) for k, ids in by_color.items()
            if len(ids) >= 2 and sum(pop[i] for i in ids) < cat_pop[k[0]] / 3
        ]
        if sc.surge_start_ms is not None:
            used: set[str] = set()
            total_pop = sum(pop)
            for weight, (cat, color) in sorted(candidates, reverse=True):
                if cat in used or len(truth.surges) >= sc.surges:
                    continue
                start = sc.surge_start_ms + len(truth.surges) * sc.surge_gap_hours * HOUR_MS
                base = self.orders_per_hour * seasonality(start) * weight / total_pop
                if base < sc.surge_min_base_per_hour:
                    continue
                used.add(cat)
                ids = tuple(skus[i].sku for i in by_color[(cat, color)])
                truth.surges.append(Surge(cat, color, ids, start))
                truth.multiplier.update({sku: sc.surge_multiplier for sku in ids})
        # SKUs heading for stockout: popular enough to matter, not in the surge
        ranked = sorted(
            (i for i, s in enumerate(skus) if s.sku not in truth.multiplier),
            key=lambda i: -pop[i],
        )
        pool = ranked[: max(sc.stockout_skus * 3, 1)]
        chosen = sorted(rng.sample(pool, min(sc.stockout_skus, len(pool))))
        truth.stockout_skus = [skus[i].sku for i in chosen]
        # issue 20: new products and stockouts of healthy SKUs (their own random draws, so
        # the choices above stay those of earlier versions)
        rng2 = random.Random(f"scenario-20-{self.seed}")
        taken = set(truth.stockout_skus) | set(truth.multiplier)
        free = [i for i in ranked if skus[i].sku not in taken]
        if sc.launch_ms is not None and sc.launch_skus > 0:
            launch = sorted(rng2.sample(free[len(free) // 2:], min(sc.launch_skus,
                                                                  len(free) // 2)))
            truth.launch_skus = [skus[i].sku for i in launch]
            truth.launch_ms = sc.launch_ms
            for i in launch:
                pop[i] = 0.0
                self._pv_weights[i] = 0.0
                ev = self._catalog[i]
                listed = max(sc.launch_ms - MINUTE_MS, 0)
                ev.value["ts"] = self._ts(listed, skus[i].shop)
                self._catalog[i] = SimEvent(ev.topic, ev.key, ev.value, listed)
            self._set_popularity(pop)
            free = [i for i in free if i not in launch]
        if sc.outage_ms is not None and sc.outage_skus > 0:
            outage = sorted(rng2.sample(free[: max(sc.outage_skus * 3, 1)],
                                        min(sc.outage_skus, len(free))))
            truth.outage_skus = [skus[i].sku for i in outage]
            truth.outage_ms = sc.outage_ms

    def _scenario_traffic(self, ts: int) -> float:
        """Traffic factor of the scenario's weekly pattern, growth and promotion days."""
        sc = self.scenario
        assert sc is not None  # noqa: S101 - only called with a scenario
        f = 1.0
        if sc.weekday_factors is not None:
            day = (ts + CST_OFFSET_MS) // DAY_MS
            f *= sc.weekday_factors[(day + 3) % 7]  # 1970-01-01 was a Thursday
        if sc.weekly_growth:
            f *= (1.0 + sc.weekly_growth) ** ((ts - self.start_ms) / (7 * DAY_MS))
        for start in sc.promo_days:
            if start <= ts < start + DAY_MS:
                f *= sc.promo_day_multiplier
                break
        return f

    def _set_popularity(self, pop: list[float]) -> None:
        """Rebuild the order and page-view tables from order popularity ``pop``."""
        pv = [
            p * (b / a if a else 1.0)
            for p, a, b in zip(self._pv_weights, self._pop, pop, strict=True)
        ]
        self._order_cum = _cumulative(pop)
        self._pv_cum = _cumulative(pv)
        self._order_cum_promo = _cumulative(
            [p * b for p, b in zip(pop, self._boost, strict=True)])
        self._pv_cum_promo = _cumulative([p * b for p, b in zip(pv, self._boost, strict=True)])
        self._shop_order_cum = [_cumulative([pop[i] for i in ids]) for ids in self._shop_skus]
        self._shop_pv_cum = [_cumulative([pv[i] for i in ids]) for ids in self._shop_skus]

    def _launch(self) -> None:
        """The scenario's new products go on sale: each takes ``launch_share`` of orders."""
        sc = self.scenario
        assert sc is not None  # noqa: S101
        self._launch_pending = False
        idx = [self._sku_ids.index(s) for s in self.truth.launch_skus]
        others = sum(p for i, p in enumerate(self._pop) if i not in idx)
        share = sc.launch_share / max(len(idx), 1)
        for i in idx:
            self._pop[i] = others * share / max(1.0 - sc.launch_share, 0.05)
            self._pv_weights[i] = self._pop[i] * 1.5  # a hit: viewed about as it sells
            self._on_hand[i] = sc.launch_on_hand
        total = sum(self._pop)
        self._daily_units[:] = [
            self.orders_per_hour * 24 * _MEAN_LINES * (2.6 if s.category.multi else 1.7)
            * p / total
            for p, s in zip(self._pop, self._skus, strict=True)
        ]
        for i in idx:  # the first run: ten days of its demand, a lead time after the launch
            s = self._skus[i]
            qty = max(s.moq, math.ceil(self._daily_units[i] * 10 / 100) * 100)
            received = (sc.launch_ms or 0) + s.lead_time_days * DAY_MS
            self._restock_event("restock_shipped", i, qty, received - HOUR_MS)
            self._restock_event("restock_received", i, qty, received)
            self._act(received, _ACT_RESTOCK_IN, i, qty)
        self._set_popularity(self._pop)

    def _outage(self) -> None:
        """The scenario's outage SKUs lose their stock; a restock comes ``outage_days``
        later (their factory does nothing else meanwhile)."""
        sc = self.scenario
        assert sc is not None  # noqa: S101
        self._outage_pending = False
        end = (sc.outage_ms or 0) + int(sc.outage_days * DAY_MS)
        self.truth.outage_end_ms = end
        for sku in self.truth.outage_skus:
            i = self._sku_ids.index(sku)
            self._on_hand[i] = 0
            s = self._skus[i]
            qty = max(s.moq, math.ceil(self._daily_units[i] * 30 / 100) * 100)
            self._on_road[i] += qty
            self._restock_event("restock_shipped", i, qty, end - s.lead_time_days * DAY_MS)
            self._restock_event("restock_received", i, qty, end)
            self._act(end, _ACT_RESTOCK_IN, i, qty)

    def _start_surge(self) -> None:
        """The next scenario surge begins: rebuild the popularity tables."""
        sg = self.truth.surges[self._surges_on]
        self._surges_on += 1
        on = {sku for s in self.truth.surges[: self._surges_on] for sku in s.skus}
        mult = {sku: m for sku, m in self.truth.multiplier.items() if sku in on}
        pop = [p * mult.get(s.sku, 1.0) for p, s in zip(self._pop, self._skus, strict=True)]
        self._rate_factor = sum(pop) / sum(self._pop)
        pv = [
            p * (b / a if a else 1.0)
            for p, a, b in zip(self._pv_weights, self._pop, pop, strict=True)
        ]
        self._order_cum = _cumulative(pop)
        self._pv_cum = _cumulative(pv)
        self._shop_order_cum = [_cumulative([pop[i] for i in ids]) for ids in self._shop_skus]
        self._shop_pv_cum = [_cumulative([pv[i] for i in ids]) for ids in self._shop_skus]
        self._daily_units[:] = [
            d * (self.truth.multiplier[s.sku] if s.sku in sg.skus else 1.0)
            for d, s in zip(self._daily_units, self._skus, strict=True)
        ]

    def _build_stock(self) -> None:
        rng = self._rng
        total = self._order_cum[-1]
        self._daily_units: list[float] = []
        self._reorder_days: list[float] = []
        self._on_hand: list[int] = []
        self._restock_pending: list[bool] = []
        self._on_road: list[int] = [0] * len(self._skus)
        low: list[int] = []
        for i, s in enumerate(self._skus):
            mean_qty = 2.6 if s.category.multi else 1.7
            daily = self.orders_per_hour * 24 * _MEAN_LINES * mean_qty * self._pop[i] / total
            sc = self.scenario
            if sc is not None:
                lead = s.lead_time_days
                if s.sku in self.truth.stockout_skus:
                    cover = lead + rng.uniform(*sc.stockout_cover_days)
                else:
                    cover = lead + sc.healthy_cover_days + rng.uniform(2.0, 10.0)
            elif rng.random() < 0.1:
                cover = rng.uniform(0.2, 2.0)
                low.append(i)
            else:
                cover = rng.uniform(3.0, 25.0)
            self._daily_units.append(daily)
            self._reorder_days.append(rng.uniform(3.0, 7.0))
            self._on_hand.append(int(daily * cover) + rng.randint(0, 20))
            self._restock_pending.append(False)
            self._act(self.start_ms + rng.randrange(_STOCK_REPORT_MS), _ACT_REPORT, i, 0)
        # Restocks already under way when the simulation starts.
        for i in low:
            qty = self._restock_qty(i)
            self._restock_pending[i] = True
            if rng.random() < 0.5:  # already on the road
                received = self.start_ms + int(rng.uniform(HOUR_MS, 36 * HOUR_MS))
            else:
                shipped = self.start_ms + int(rng.uniform(10 * MINUTE_MS, 12 * HOUR_MS))
                self._restock_event("restock_shipped", i, qty, shipped)
                received = shipped + int(rng.uniform(12 * HOUR_MS, 60 * HOUR_MS))
            self._restock_event("restock_received", i, qty, received)
            self._act(received, _ACT_RESTOCK_IN, i, qty)

    def _restock_qty(self, i: int) -> int:
        s = self._skus[i]
        want = math.ceil(self._daily_units[i] * 20 / 100) * 100
        return max(int(s.moq), int(want))

    # ------------------------------------------------------------------ helpers
    def _next_id(self) -> str:
        self._counter += 1
        return f"{self._tag}-{self._counter}"

    def _next_order_id(self) -> str:
        self._orders += 1
        return f"O{self._tag}-{self._orders:07d}"

    def _ts(self, ts_ms: int, shop: int) -> int | str:
        """``ts_ms`` in the format this shop's system used for this event."""
        if not self.ts_format_mix:
            return ts_ms
        return format_ts(ts_ms, self._shop_fmt[shop][int(self._rng.random() * 20.0)])

    def _act(self, ts: int, kind: int, sku: int, qty: int) -> None:
        self._aseq += 1
        heapq.heappush(self._actions, (ts, self._aseq, kind, sku, qty))

    def _emit(self, topic: str, key: str, ts: int, shop: int, value: dict[str, Any]) -> None:
        """Stamp ``value`` (event id, ts in the shop's format) and queue it for emission
        at ``ts + delay`` with ``0 <= delay <= disorder_ms``: most events within seconds,
        some (shops that batch uploads or lose connectivity) minutes late."""
        rnd = self._rng.random
        self._counter = seq = self._counter + 1
        value["event_id"] = f"{self._tag}-{seq}"
        if self.ts_format_mix:
            fmt = self._shop_fmt[shop][int(rnd() * 20.0)]
            value["ts"] = ts if fmt == TS_EPOCH_MS else format_ts(ts, fmt)
        else:
            value["ts"] = ts
        emit = ts
        d = self.disorder_ms
        if d:
            u = rnd()
            if u < 0.85:
                emit += int(u * self._quick_delay)
            else:
                emit += int((u - 0.85) * self._late_delay)
        item = (emit, seq, SimEvent(topic, key, value, ts))
        b = emit // _OUT_BUCKET_MS
        bucket = self._out.get(b)
        if bucket is None:
            self._out[b] = [item]
        else:
            bucket.append(item)

    @staticmethod
    def _pick(cum: list[float], u: float) -> int:
        return min(bisect_right(cum, u * cum[-1]), len(cum) - 1)

    def _promo(self, ts: int) -> bool:
        return (
            self.promo_start_ms is not None
            and self.promo_end_ms is not None
            and self.promo_start_ms <= ts < self.promo_end_ms
        )

    def _ship_delay(self) -> int:
        u = self._rng.random()
        if u < 0.70:
            return int(HOUR_MS + u / 0.70 * 11 * HOUR_MS)  # 1-12 h
        if u < 0.95:
            return int(12 * HOUR_MS + (u - 0.70) / 0.25 * 24 * HOUR_MS)  # 12-36 h
        return int(36 * HOUR_MS + (u - 0.95) / 0.05 * 36 * HOUR_MS)  # presale: 36-72 h

    def _delivery_delay(self) -> int:
        x = -_DELIVERY_MEAN * math.log(1.0 - self._rng.random())
        return int(_DELIVERY_MIN + min(x, _DELIVERY_CAP))

    def _return_delay(self) -> int:
        x = -_RETURN_MEAN * math.log(1.0 - self._rng.random())
        return int(_RETURN_MIN + min(x, _RETURN_CAP))

    def _pick_lines(self, promo: bool) -> list[tuple[int, int, float]]:
        """(sku index, qty, unit price) for 1-3 distinct SKUs of one shop."""
        rnd = self._rng.random
        cum = self._order_cum_promo if promo else self._order_cum
        first = min(bisect_right(cum, rnd() * cum[-1]), self.n_skus - 1)
        shop = self._sku_shop[first]
        picked = [first]
        n = 1 + bisect_right(_LINES_CUM, rnd())
        if n > 1:
            ids, cum = self._shop_skus[shop], self._shop_order_cum[shop]
            for _ in range(n - 1):
                j = ids[min(bisect_right(cum, rnd() * cum[-1]), len(ids) - 1)]
                if j not in picked:
                    picked.append(j)
        lines: list[tuple[int, int, float]] = []
        skus = self._skus
        for i in picked:
            s = skus[i]
            qty = 1 + bisect_right(s.qty_cum, rnd())
            u = rnd()
            if promo:
                factor = 1.0 if u < 0.3 else (0.7 + u * 0.2 if u < 0.8 else 0.5 + u * 0.2)
            else:
                factor = 1.0 if u < 0.75 else (0.85 + u * 0.1 if u < 0.95 else 0.6 + u * 0.2)
            lines.append((i, qty, max(0.01, round(s.list_price * factor, 2))))
        return lines

    # ------------------------------------------------------------------ event builders
    def _order_event(
        self, kind: str, order_id: str, shop: int, region: str, buyer: int,
        lines: list[tuple[int, int, float]], ts: int,
    ) -> None:
        ids = self._sku_ids
        value = {
            "event_id": "",
            "ts": 0,
            "shop_id": self._shops[shop],
            "event_type": kind,
            "order_id": order_id,
            "region": region,
            "buyer_id": f"u{buyer:06d}",
            "lines": [{"sku": ids[i], "qty": q, "unit_price": p} for i, q, p in lines],
        }
        self._emit(TOPIC_ORDERS, order_id, ts, shop, value)

    def _page_view(self, i: int, visitor_id: str, region: str, ts: int) -> None:
        if not self.page_views:
            # what _emit draws and gives out, without the event
            self._counter += 1
            if self.ts_format_mix:
                self._rng.random()
            if self.disorder_ms:
                self._rng.random()
            return
        sku = self._sku_ids[i]
        shop = self._sku_shop[i]
        value = {
            "event_id": "",
            "ts": 0,
            "shop_id": self._shops[shop],
            "event_type": "page_view",
            "sku": sku,
            "visitor_id": visitor_id,
            "region": region,
        }
        self._emit(TOPIC_PAGEVIEWS, sku, ts, shop, value)

    def _movement(
        self, kind: str, order_id: str, shop: int, region: str, i: int, qty: int, ts: int
    ) -> dict[str, Any]:
        value = {
            "event_id": "",
            "ts": 0,
            "shop_id": self._shops[shop],
            "event_type": kind,
            "sku": self._sku_ids[i],
            "qty": qty,
            "order_id": order_id,
            "region": region,
        }
        self._emit(TOPIC_LOGISTICS, order_id, ts, shop, value)
        return value

    def _returned(
        self, order_id: str, shop: int, region: str, i: int, qty: int, ts: int, u: float
    ) -> None:
        s = self._skus[i]
        reasons = _GOODS_REASONS if s.size in ("均码", "1.5m", "1.8m") else _APPAREL_REASONS
        value = self._movement("returned", order_id, shop, region, i, qty, ts)
        reason = reasons[int(u * len(reasons))]
        if reason:
            value["reason"] = reason
        if u < 0.85:  # resaleable: back on the shelf
            self._act(ts, _ACT_DELTA, i, qty)

    def _restock_event(self, kind: str, i: int, qty: int, ts: int) -> None:
        s = self._skus[i]
        value = {
            "event_id": "",
            "ts": 0,
            "shop_id": self._shops[s.shop],
            "event_type": kind,
            "sku": s.sku,
            "qty": qty,
            "factory_id": s.factory_id,
        }
        self._emit(TOPIC_LOGISTICS, s.sku, ts, s.shop, value)

    def _stock_level(self, i: int, ts: int) -> None:
        s = self._skus[i]
        value = {
            "event_id": "",
            "ts": 0,
            "shop_id": self._shops[s.shop],
            "event_type": "stock_level",
            "sku": s.sku,
            "on_hand": max(0, self._on_hand[i]),
            "factory_id": s.factory_id,
        }
        self._emit(TOPIC_LOGISTICS, s.sku, ts, s.shop, value)

    def _fulfil(
        self, order_id: str, shop: int, region: str, lines: list[tuple[int, int, float]],
        placed: int,
    ) -> None:
        """Shipment of each line, then delivery and maybe returns."""
        shipped = placed + self._ship_delay()
        for i, qty, _ in lines:
            self._movement("shipped", order_id, shop, region, i, qty, shipped)
        self._deliver(order_id, shop, region, lines, shipped + self._delivery_delay())

    def _deliver(
        self, order_id: str, shop: int, region: str, lines: list[tuple[int, int, float]],
        delivered: int,
    ) -> None:
        """Delivery of each line; some lines come back (size-dependent return rates)."""
        rng = self._rng
        for i, qty, _ in lines:
            self._movement("delivered", order_id, shop, region, i, qty, delivered)
            if rng.random() < self._skus[i].return_rate:
                rq = qty if rng.random() < 0.7 else rng.randint(1, qty)
                returned = delivered + self._return_delay()
                self._returned(order_id, shop, region, i, rq, returned, rng.random())

    def _ghosts(self, t0: int, t1: int) -> None:
        """Logistics of orders placed before ``start_ms`` (the warm start).

        Before the simulation the shops traded at the average order rate, so orders
        placed earlier ship at ``t`` at rate ``rate * P(ship delay > t - start)``; in the
        same way earlier shipments are delivered, and earlier deliveries come back.
        Generated lazily, tick by tick; what follows a ghost event is simulated as usual.
        """
        x = (t0 + t1) / 2 - self.start_ms
        if x >= _WARM_HORIZON_MS or self.orders_per_hour <= 0:
            return
        rng = self._rng
        lam = self.orders_per_hour * (1.0 - _CANCEL_RATE) / HOUR_MS
        streams = (
            (0, lam * _ship_survival(x)),
            (1, lam * _shifted_exp_survival(x, _DELIVERY_MIN, _DELIVERY_MEAN, _DELIVERY_CAP)),
            (2, lam * _MEAN_LINES * _MAX_RETURN_RATE
             * _shifted_exp_survival(x, _RETURN_MIN, _RETURN_MEAN, _RETURN_CAP)),
        )
        for kind, rate in streams:
            if rate <= 0:
                continue
            t = float(t0)
            while True:
                t += rng.expovariate(rate)
                if t >= t1:
                    break
                ts = int(t)
                region = self._visitor_region[int(_VISITORS * rng.random() ** 2)]
                order_id = self._next_order_id()
                if kind == 2:  # a returned line; thinned to the SKU's return rate
                    i = self._pick(self._order_cum, rng.random())
                    s = self._skus[i]
                    if s.sku in self.truth.launch_skus:  # not sold before the start
                        continue
                    if rng.random() * _MAX_RETURN_RATE < s.return_rate:
                        qty = 1 + bisect_right(s.qty_cum, rng.random())
                        self._returned(order_id, s.shop, region, i, qty, ts, rng.random())
                    continue
                lines = self._pick_lines(False)
                if self.truth.launch_skus:
                    launched = self.truth.launch_skus
                    lines = [ln for ln in lines if self._sku_ids[ln[0]] not in launched]
                    if not lines:
                        continue
                shop = self._sku_shop[lines[0][0]]
                if kind == 0:
                    for i, qty, _ in lines:
                        self._movement("shipped", order_id, shop, region, i, qty, ts)
                    self._deliver(order_id, shop, region, lines, ts + self._delivery_delay())
                else:
                    self._deliver(order_id, shop, region, lines, ts)

    # ------------------------------------------------------------------ generation
    def _run_actions(self, until: int) -> None:
        rng = self._rng
        actions = self._actions
        while actions and actions[0][0] < until:
            ts, _, kind, i, qty = heapq.heappop(actions)
            if kind == _ACT_DELTA:
                self._on_hand[i] += qty
            elif kind == _ACT_RESTOCK_IN:
                self._on_hand[i] += qty
                self._restock_pending[i] = False
                self._on_road[i] -= qty
            else:
                self._stock_level(i, ts)
                self._act(ts + _STOCK_REPORT_MS, _ACT_REPORT, i, 0)
                if self.scenario is not None:
                    self._scenario_restock(i, ts)
                    continue
                reorder_point = self._daily_units[i] * self._reorder_days[i]
                if not self._restock_pending[i] and self._on_hand[i] < reorder_point:
                    self._restock_pending[i] = True
                    qty = self._restock_qty(i)
                    if rng.random() < 0.6:  # the factory has finished goods in stock
                        ship = ts + int(rng.uniform(2 * HOUR_MS, 24 * HOUR_MS))
                    else:  # made to order
                        lead = self._skus[i].lead_time_days * DAY_MS
                        ship = ts + int(lead * rng.uniform(0.5, 1.0))
                    received = ship + int(rng.uniform(12 * HOUR_MS, 60 * HOUR_MS))
                    self._restock_event("restock_shipped", i, qty, ship)
                    self._restock_event("restock_received", i, qty, received)
                    self._act(received, _ACT_RESTOCK_IN, i, qty)

    def _scenario_restock(self, i: int, ts: int) -> None:
        """Scenario policy: lead-time-aware restocks for healthy SKUs, none for the truth."""
        sc = self.scenario
        s = self._skus[i]
        if sc is None or s.sku in self.truth.stockout_skus:
            return
        truth = self.truth
        if s.sku in truth.launch_skus and (truth.launch_ms is None or ts < truth.launch_ms
                                           + s.lead_time_days * DAY_MS):
            return  # before its first run arrives
        if s.sku in truth.outage_skus and truth.outage_ms is not None and (
                ts >= truth.outage_ms and (truth.outage_end_ms is None
                                           or ts < truth.outage_end_ms)):
            return
        daily = self._daily_units[i]
        want = daily * (s.lead_time_days + sc.healthy_cover_days)
        if self._on_hand[i] + self._on_road[i] >= want:
            return
        qty = max(s.moq, math.ceil(daily * 30 / 100) * 100)
        ship = ts + int(self._rng.uniform(HOUR_MS, 6 * HOUR_MS))
        received = ts + s.lead_time_days * DAY_MS
        self._on_road[i] += qty
        self._restock_event("restock_shipped", i, qty, ship)
        self._restock_event("restock_received", i, qty, received)
        self._act(received, _ACT_RESTOCK_IN, i, qty)

    def _order_session(self, start: float, promo: bool) -> None:
        """A visitor views a few SKUs of one shop, then orders (and maybe cancels)."""
        rng = self._rng
        rnd = rng.random
        log = math.log
        v = int(_VISITORS * rnd() ** 2)
        vid = f"v{v:06d}"
        region = self._visitor_region[v]
        lines = self._pick_lines(promo)
        shop = self._sku_shop[lines[0][0]]
        wanted = lines
        if self.scenario is not None and self.scenario.censor_stockouts:
            lines = [ln for ln in lines if self._on_hand[ln[0]] > 0]
        ids, cum = self._shop_skus[shop], self._shop_pv_cum[shop]
        last = len(ids) - 1
        views = [
            ids[min(bisect_right(cum, rnd() * cum[-1]), last)] for _ in range(int(rnd() * 4))
        ]
        for i, _, _ in wanted:
            views.append(i)
            if rnd() < 0.4:
                views.append(i)
        rng.shuffle(views)
        t = start
        for i in views:
            self._page_view(i, vid, region, int(t))
            t += min(-_VIEW_GAP_MEAN_MS * log(1.0 - rnd()), 300_000.0)
        placed = int(t + 20_000.0 + 160_000.0 * rnd())
        if len(lines) < len(wanted):  # sold out: the shopper could not buy these
            lost = self.truth.lost_units
            kept = {ln[0] for ln in lines}
            for i, qty, _ in wanted:
                if i not in kept:
                    by_hour = lost.setdefault(self._sku_ids[i], {})
                    h = placed // HOUR_MS * 3600
                    by_hour[h] = by_hour.get(h, 0) + qty
            if not lines:
                return
        order_id = self._next_order_id()
        self._order_event("order_placed", order_id, shop, region, v, lines, placed)
        on_hand = self._on_hand
        for i, qty, _ in lines:
            on_hand[i] -= qty
            if on_hand[i] <= 0 and self.scenario is not None:
                sku = self._skus[i].sku
                if sku in self.truth.stockout_skus and sku not in self.truth.stockout_ms:
                    self.truth.stockout_ms[sku] = placed
        if rnd() < (_PROMO_CANCEL_RATE if promo else _CANCEL_RATE):
            u = rnd()
            if u < 0.6:  # changed their mind quickly
                delay = MINUTE_MS + u / 0.6 * 29 * MINUTE_MS
            else:
                delay = 30 * MINUTE_MS + (u - 0.6) / 0.4 * 330 * MINUTE_MS
            cancelled = placed + int(delay)
            self._order_event("order_cancelled", order_id, shop, region, v, lines, cancelled)
            for i, qty, _ in lines:
                self._act(cancelled, _ACT_DELTA, i, qty)
        else:
            self._fulfil(order_id, shop, region, lines, placed)

    def _browse_session(self, start: float, promo: bool) -> None:
        """A visitor views one or more SKUs (mostly of the same shop) and buys nothing."""
        rnd = self._rng.random
        log = math.log
        v = int(_VISITORS * rnd() ** 2)
        vid = f"v{v:06d}"
        region = self._visitor_region[v]
        pv_cum = self._pv_cum_promo if promo else self._pv_cum
        last = self.n_skus - 1
        i = min(bisect_right(pv_cum, rnd() * pv_cum[-1]), last)
        t = start
        page_view = self._page_view
        while True:
            page_view(i, vid, region, int(t))
            if rnd() >= _BROWSE_CONTINUE:
                break
            t += min(-_VIEW_GAP_MEAN_MS * log(1.0 - rnd()), 300_000.0)
            if rnd() < 0.7:  # stay in the shop
                shop = self._sku_shop[i]
                ids, cum = self._shop_skus[shop], self._shop_pv_cum[shop]
                i = ids[min(bisect_right(cum, rnd() * cum[-1]), len(ids) - 1)]
            else:
                i = min(bisect_right(pv_cum, rnd() * pv_cum[-1]), last)

    def _tick(self, t0: int) -> None:
        t1 = t0 + TICK_MS
        self._run_actions(t1)
        if self.warm_start:
            self._ghosts(t0, t1)
        mid = t0 + TICK_MS // 2
        promo = self._promo(mid)
        surges = self.truth.surges
        while self._surges_on < len(surges) and t0 >= surges[self._surges_on].start_ms:
            self._start_surge()
        rate = self.orders_per_hour * seasonality(mid) / HOUR_MS * self._rate_factor
        if promo:
            rate *= self.promo_multiplier
        sc = self.scenario
        if sc is not None:
            rate *= self._scenario_traffic(mid)
            if self._launch_pending and t0 >= (sc.launch_ms or 0):
                self._launch()
            if self._outage_pending and t0 >= (sc.outage_ms or 0):
                self._outage()
        if rate <= 0:
            return
        rnd = self._rng.random
        log = math.log
        mean = 1.0 / rate
        t = float(t0)
        while True:  # sessions that end in an order: Poisson arrivals
            t -= mean * log(1.0 - rnd())
            if t >= t1:
                break
            self._order_session(t, promo)
        mean /= _BROWSE_SESSIONS_PER_ORDER
        t = float(t0)
        while True:  # sessions without an order
            t -= mean * log(1.0 - rnd())
            if t >= t1:
                break
            self._browse_session(t, promo)

    # ------------------------------------------------------------------ public API
    def catalog(self) -> list[SimEvent]:
        """One ``product_upsert`` per SKU (ts one day before ``start_ms``)."""
        return list(self._catalog)

    def events(self, until_ms: int) -> list[SimEvent]:
        """Advance to ``until_ms``; the events emitted since the last call, in emission order."""
        # Generation allocates many small, acyclic containers: the cyclic GC would only
        # rescan them over and over (about a third of the run time), so pause it.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            while self._gen_ms <= until_ms:
                self._tick(self._gen_ms)
                self._gen_ms += TICK_MS
            return self._pop_emitted(until_ms)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _pop_emitted(self, until_ms: int) -> list[SimEvent]:
        out = self._out
        result: list[SimEvent] = []
        last = until_ms // _OUT_BUCKET_MS
        for b in range(self._out_bucket, last + 1):
            items = out.pop(b, None)
            if not items:
                continue
            items.sort()
            if b == last:  # partly in the future: keep the rest for later
                k = bisect_right(items, until_ms, key=_emit_of)
                if k < len(items):
                    out[b] = items[k:]
                    del items[k:]
            result.extend([item[2] for item in items])
        self._out_bucket = max(self._out_bucket, last)
        return result


def generate_history(seed: int, start_ms: int, hours: float, **sim_kwargs: Any) -> list[SimEvent]:
    """The catalog, then every event emitted by ``start_ms + hours`` (in emission order).

    All have ``start_ms <= ts_ms <= start_ms + hours``; events with a ts in the last few
    minutes that a shop would report late are not emitted yet, as in a live run.
    """
    sim = ShopSimulator(seed, start_ms, **sim_kwargs)
    return sim.catalog() + sim.events(start_ms + int(hours * HOUR_MS))
