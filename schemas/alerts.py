"""Alert messages: what c2m-pulse publishes for factories (contract v1).

- ``factory.<factory>.restock-alerts`` (one topic per factory, ``streams.core.tenancy``),
  key ``sku``: restock alerts for the SKUs the factory makes; with
  ``C2M_SHARED_RESTOCK_TOPIC`` also ``factory.restock-alerts``, key ``factory_id``;
- ``factory.demand-signals``, key ``category``: market signals: demand surges, rising
  shares and lost sales (demand hidden by stockouts), published only from at least
  ``C2M_MIN_SHOPS_PER_SIGNAL`` shops and naming no factory.

Every state change of an alert is one message; ``(alert_id, version)`` identifies it.
A message can be delivered twice (at-least-once; e.g. a crash between publishing and
recording an hour), always with the same content: consumers keep the highest version per
``alert_id``. Times are RFC 3339 UTC, in event time (the hour the change was computed for).
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

TOPIC_RESTOCK_ALERTS: Final = "factory.restock-alerts"
TOPIC_DEMAND_SIGNALS: Final = "factory.demand-signals"
ALERT_SCHEMA_VERSION: Final = 1


class RestockDetails(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    on_hand: int
    in_transit: int
    daily_rate: float = Field(description="net units per day (ordered - cancelled)")
    daily_sigma: float
    lead_time_days: int
    moq: int
    service_level: float
    review_days: int
    reorder_point: float
    recommended_qty: int = Field(description="at least the MOQ, a multiple of it")
    days_of_cover: float | None = Field(description="on hand / daily rate; null without demand")
    projected_stockout: str | None
    color: str
    size: str
    price_band: str


class SignalDetails(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    observed: float = Field(description="surge: cell orders in the hour; rising_share: share")
    baseline: float
    ratio: float
    score: float


class LostSalesDetails(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lost_units: float = Field(description="units the value's SKUs could not sell while out "
                                          "of stock, over the local day up to the hour")
    lost_gmv: float = Field(description="lost units x list price (CNY)")
    sold_units: int = Field(description="net units sold over the same day")
    lost_share: float = Field(description="lost / (sold + lost)")
    method: str


class AlertMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    alert_id: str = Field(description="stable per episode: hash of (kind, key, opening hour)")
    version: int = Field(ge=1)
    kind: Literal["restock", "surge", "rising_share", "lost_sales"]
    state: Literal["open", "updated", "resolved"]
    severity: Literal["critical", "warning", "info"]
    factory_id: str | None = Field(description="restock alerts: the factory making the SKU")
    factories: list[str] = Field(description="restock: [factory_id]; market signals: [] "
                                 "(they name no factory)")
    category: str
    sku: str | None = None
    dimension: Literal["color", "size", "price_band"] | None = None
    value: str | None = None
    window_start: str = Field(description="start of the event-time hour evaluated")
    opened_at: str
    changed_at: str
    restock: RestockDetails | None = None
    signal: SignalDetails | None = None
    lost_sales: LostSalesDetails | None = None
    summary_zh: str
    summary_en: str
