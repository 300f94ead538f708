"""Event contract v1: what shops publish to the ``shop.*`` topics.

One JSON object (UTF-8) per Kafka message. Unknown extra fields are ignored; types are
strict (a quantity sent as the string ``"3"`` is an error, not a 3).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import Attr, EventTime, Id, Price, Qty, Text


class _Event(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    event_id: Id = Field(description="Unique per event; producers retry with the same id.")
    ts: EventTime = Field(description="Event time, RFC 3339 or epoch milliseconds; handled as UTC.")
    shop_id: Id


class OrderLine(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    sku: Id
    qty: Qty
    unit_price: Price = Field(description="CNY per piece.")


class OrderEvent(_Event):
    """``shop.orders``, key ``order_id``."""

    event_type: Literal["order_placed", "order_cancelled"]
    order_id: Id
    region: Attr
    buyer_id: Id
    lines: list[OrderLine] = Field(min_length=1, max_length=1000)


class PageViewEvent(_Event):
    """``shop.pageviews``, key ``sku``."""

    event_type: Literal["page_view"]
    sku: Id
    visitor_id: Id
    region: Attr


class _LogisticsEvent(_Event):
    sku: Id
    order_id: Id | None = None
    region: Attr | None = None
    reason: Text | None = None
    factory_id: Id | None = None


class LogisticsMovement(_LogisticsEvent):
    """``shop.logistics`` movements of goods, key ``order_id`` or ``sku``."""

    event_type: Literal["shipped", "delivered", "returned", "restock_shipped", "restock_received"]
    qty: Qty


class StockLevel(_LogisticsEvent):
    """``shop.logistics`` stock count: sets on-hand for the SKU."""

    event_type: Literal["stock_level"]
    on_hand: int = Field(ge=0, le=1_000_000_000)


LogisticsEvent = Annotated[LogisticsMovement | StockLevel, Field(discriminator="event_type")]


class ProductUpsert(_Event):
    """``shop.products`` (compacted, key ``sku``): the catalog."""

    event_type: Literal["product_upsert"]
    sku: Id
    factory_id: Id
    category: Attr
    color: Attr
    size: Attr
    list_price: Price
    lead_time_days: int = Field(ge=0, le=365)
    moq: int = Field(ge=1, le=10_000_000)
