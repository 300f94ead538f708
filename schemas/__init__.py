"""c2m-pulse event contracts (pydantic v2), exported as JSON Schema under ``schemas/json``."""

from schemas.contract import (
    CONTRACT_VERSION,
    INPUT_TOPICS,
    TOPIC_DEAD_LETTER,
    TOPIC_LOGISTICS,
    TOPIC_ORDERS,
    TOPIC_PAGEVIEWS,
    TOPIC_PRODUCTS,
    ContractViolation,
    decode,
)
from schemas.events import (
    LogisticsMovement,
    OrderEvent,
    OrderLine,
    PageViewEvent,
    ProductUpsert,
    StockLevel,
)

__all__ = [
    "CONTRACT_VERSION",
    "INPUT_TOPICS",
    "TOPIC_DEAD_LETTER",
    "TOPIC_LOGISTICS",
    "TOPIC_ORDERS",
    "TOPIC_PAGEVIEWS",
    "TOPIC_PRODUCTS",
    "ContractViolation",
    "LogisticsMovement",
    "OrderEvent",
    "OrderLine",
    "PageViewEvent",
    "ProductUpsert",
    "StockLevel",
    "decode",
]
