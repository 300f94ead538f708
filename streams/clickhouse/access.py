"""Factory-scoped, read-only ClickHouse users (``c2m db grant --factory F``).

One definition of what a factory may read, rendered two ways: as SQL for a ClickHouse
server (``CREATE USER``, ``GRANT SELECT``, ``CREATE ROW POLICY``) and as a users.xml
section (for servers configured by files; the embedded engine, chDB, has no writable user
storage, so the tests load this form to run the policies in the real engine).

A factory's user may read:

- the market views ``market_demand`` and ``market_rolling`` (k-anonymous; they run with
  their definer's rights, so the user needs no access to the cells behind them);
- its own alerts and the market signals (``alerts``, ``alert_history``, ``alerts_current``:
  row policy ``factory_id = F OR kind != 'restock'``);
- its own catalog (``products``, ``products_current``: ``factory_id = F``), the hourly
  counters of the SKUs in it (``sku_hours``, ``sku_hourly``, and per day ``sku_days``),
  its lost sales
  (``lost_sales``), its forecast (``brief_forecast``: its own rows, not the whole
  market's) and so its production brief (``production_brief`` runs with the caller's
  rights: it reads only what these policies let through);
- the pipeline's progress (``source_progress``, ``checkpoints_latest``: partition
  positions and counts; ``sku_days_cut``: the day the SKU days are folded up to, a view
  with its definer's rights; the brief reads them).

Nothing else: not the cells (``demand_state``, ``demand_cells``, ``demand_by_attribute``,
``demand_rolling``: other shops' and factories' numbers below k), not ``late_events``
(payloads), not the visitor or shop hashes. The factory id is written into the policies as
``unhex('<hex of its UTF-8>')``, so no id, however odd, can change the SQL around it; the
user name comes from ``streams.core.tenancy.clickhouse_user`` (``[A-Za-z0-9_-]`` only).
The password is stored as its SHA-256 (``IDENTIFIED WITH sha256_hash``): the SQL text and
the server's query log never hold it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from xml.sax.saxutils import escape

from streams.core.tenancy import check_factory_id, clickhouse_user

#: what every factory's user may SELECT (tables and views of the database)
GRANTED = (
    "market_demand", "market_rolling",
    "alerts", "alert_history", "alerts_current",
    "products", "products_current", "sku_hours", "sku_hourly", "sku_days", "lost_sales",
    "brief_forecast", "production_brief", "source_progress", "checkpoints_latest",
    "sku_days_cut",
)


def literal(text: str) -> str:
    """A string literal that is the same text whatever it holds: ``unhex('..')``."""
    return f"unhex('{text.encode('utf-8').hex().upper()}')"


@dataclass(frozen=True)
class FactoryAccess:
    database: str
    factory: str

    def __post_init__(self) -> None:
        check_factory_id(self.factory)

    @property
    def user(self) -> str:
        return clickhouse_user(self.factory)

    def row_filters(self) -> dict[str, str]:
        """Table -> the condition a row must meet for this factory's user."""
        f = literal(self.factory)
        own_alerts = f"factory_id = {f} OR kind != 'restock'"
        return {
            "alerts": own_alerts,
            "alert_history": own_alerts,
            "products": f"factory_id = {f}",
            "sku_hours": f"sku IN (SELECT sku FROM {self.database}.products "  # noqa: S608
                         f"WHERE factory_id = {f})",
            "sku_days": f"sku IN (SELECT sku FROM {self.database}.products "  # noqa: S608
                        f"WHERE factory_id = {f})",
            "lost_sales": f"factory_id = {f}",
            "brief_forecast": f"factory_id = {f}",
        }

    def statements(self, password: str) -> list[str]:
        """The SQL that creates (or replaces) the user, its grants and row policies."""
        user = f"`{self.user}`"
        digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
        out = [
            f"CREATE USER OR REPLACE {user} IDENTIFIED WITH sha256_hash BY '{digest}' "
            "SETTINGS readonly = 2",
            *(f"GRANT SELECT ON {self.database}.{t} TO {user}" for t in GRANTED),
        ]
        for table, cond in self.row_filters().items():
            out.append(f"CREATE ROW POLICY OR REPLACE {user} ON {self.database}.{table} "
                       f"AS PERMISSIVE FOR SELECT USING {cond} TO {user}")
        return out

    def users_xml(self, password: str, name: str | None = None) -> str:
        """The same user as a ``<users>`` entry of users.xml (``name``: another user name,
        e.g. ``default`` for the embedded engine's only user)."""
        digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
        grants = "".join(
            f"<query>GRANT SELECT ON {self.database}.{t}</query>" for t in GRANTED)
        filters = "".join(f"<{t}><filter>{escape(c)}</filter></{t}>"
                          for t, c in self.row_filters().items())
        who = name or self.user
        return (f"<{who}><password_sha256_hex>{digest}</password_sha256_hex>"
                "<networks><ip>::/0</ip></networks><profile>c2m_factory</profile>"
                f"<quota>default</quota><grants>{grants}</grants>"
                f"<databases><{self.database}>{filters}</{self.database}></databases></{who}>")


#: the users.xml profile the users_xml entries name: read-only, settings still changeable
USERS_XML_PROFILE = "<c2m_factory><readonly>2</readonly></c2m_factory>"
