"""All settings of c2m-pulse in one pydantic-settings model (environment prefix ``C2M_``).

Importing, building and printing it (``c2m config``) reads the environment, the time-zone
database (to validate ``C2M_TIMEZONE``) and the data directory's path (resolved for the
effective ClickHouse URL), writes nothing, and imports neither the
engine with its compiled lanes nor any ClickHouse, Kafka or Faust module
(``tests/unit/test_settings.py`` runs ``c2m config`` with those made unimportable).
What other parts derive from it lives with them (``streams.clickhouse.retention.
settings_ttls``), or is plain data (``engine_config()``: ``streams.core.config``);
``kafka_client_config()`` reads the TLS files only when called, where a client is made.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.core.alerting.evaluator import AlertConfig
from streams.core.alerting.restock import RestockConfig
from streams.core.alerting.surge import SurgeConfig
from streams.core.calendar import MarketCalendar, load_zone
from streams.core.config import EngineConfig
from streams.core.pricebands import DEFAULT_EDGES, PriceBands
from streams.core.promotions import PromotionCalendar
from streams.core.windows import DEFAULT_WINDOW_SECONDS
from streams.errors import ConfigError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class Settings(BaseSettings):
    """Effective configuration. ``c2m config`` prints it with secrets masked."""

    model_config = SettingsConfigDict(env_prefix="C2M_", extra="ignore", validate_default=True,
                                      allow_inf_nan=False)

    app_id: str = Field("c2m-pulse", description="Faust app id and Kafka consumer group")
    data_dir: Path = Field(Path(".c2m"), description="Embedded ClickHouse data and logs")

    # Kafka
    kafka_bootstrap: str | None = Field(
        None, description="host:port[,host:port]; unset = start the embedded Tansu broker"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "lz4", description="Compression of what c2m-pulse produces (dead letters, alerts, "
        "c2m.sink, the simulator); every codec is read whatever this says"
    )
    topic_partitions: int = Field(4, ge=1, le=1024, description="Partitions of created topics")
    rebalance_timeout_seconds: float = Field(
        5.0, gt=0, description="Consumer group rebalance timeout (small for Tansu)"
    )
    session_timeout_seconds: float = Field(
        10.0, gt=0, le=90, description="Consumer group session timeout"
    )

    # ClickHouse
    clickhouse_url: str | None = Field(
        None, description="chdb:///path or http(s)://host:port; unset = chdb under data_dir"
    )
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")
    clickhouse_database: str = "c2m"
    clickhouse_fault_file: Path | None = Field(
        None, description="Chaos drills only: while this file exists ClickHouse calls fail"
    )

    # Where flushes go (docs/ARCHITECTURE.md, "Scale-out")
    sink: Literal["clickhouse", "kafka"] = Field(
        "clickhouse",
        description="clickhouse = write directly; kafka = produce to c2m.sink for `c2m writer`",
    )
    writer_host: str = Field("127.0.0.1", description="`c2m writer` web server (restores)")
    writer_port: int = Field(6067, ge=0, le=65535)
    writer_batch_max_messages: int = Field(
        100, ge=1, description="c2m.sink messages the writer merges into one ClickHouse write"
    )

    # Servers (loopback by default)
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    web_require_token: bool | None = Field(
        None, description="Factory data on the web server needs a per-factory token (unset: "
        "when C2M_WEB_HOST is not loopback); without one a caller gets the market-level views"
    )
    web_tokens_file: Path | None = Field(
        None, description="Hashed web tokens (c2m token create); unset = "
        "$C2M_DATA_DIR/web-tokens.json"
    )
    web_tokens: str | None = Field(
        None, description="More hashed web tokens, as the JSON of a token file"
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535)

    # Engine
    timezone: str = Field(
        "Asia/Shanghai",
        description="The market's time zone (IANA name): daily windows, briefs and views "
        "follow its local days; UTC = days from 00:00 UTC. Fixed for a database",
    )
    promotion_days: str = Field(
        "",
        description="Known promotion days, local dates: '2026-11-11*4,2026-06-16..2026-06-18' "
        "(*F: the expected traffic factor; without it the lift is learnt from past promotion "
        "days). The brief's forecast lifts them; the surge rule does not call them surges",
    )
    window_seconds: tuple[int, ...] = DEFAULT_WINDOW_SECONDS
    allowed_lateness_seconds: int = Field(600, ge=0)
    correction_horizon_hours: float = Field(48.0, gt=0)
    dedup_horizon_hours: float = Field(48.0, gt=0)
    live_retention_hours: float = Field(
        168.0, ge=0, description="Hourly/daily windows kept in memory for rolling sums"
    )
    max_future_seconds: int = Field(300, ge=0)
    max_past_days: int = Field(
        365, ge=1, description="ts this far before the record time is dead-lettered (stale_ts)"
    )
    idle_partition_seconds: int = Field(
        900, ge=0, description="Event-time lag behind the newest partition that makes one idle"
    )
    max_message_bytes: int = Field(1_048_576, ge=1024)
    price_band_edges: tuple[float, ...] = DEFAULT_EDGES

    # Flushing and batching
    flush_interval_seconds: float = Field(1.0, gt=0)
    flush_max_pending_events: int = Field(
        200_000, ge=1,
        description="Back-pressure: fetching waits for the flush in flight once this many "
        "events are unflushed (being written plus pending); also a cut is due at this many",
    )
    flush_eager_events: int = Field(
        50_000, ge=1,
        description="With no flush running, cut one before the interval once this many events "
        "are pending (under load the ClickHouse writer then never waits for the timer)",
    )
    flush_publish_max_lag_seconds: float = Field(
        5.0, ge=0,
        description="While a backlog is worked off, flushes are written back to back and "
        "their serving rows, checkpoints and Kafka commits made for several at once, at "
        "most this long after the oldest of them (0: every flush at once)",
    )
    batch_max_events: int = Field(10_000, ge=1)
    lag_interval_seconds: float = Field(
        5.0, gt=0, description="How often consumer lag is asked of the broker (metrics)"
    )

    # Alerts (docs/ALERTS.md)
    alerts_enabled: bool = Field(True, description="Evaluate restock and demand-surge alerts")
    ingest_enabled: bool = Field(
        True, description="Consume the demand topics (false: an alerts-only process)"
    )
    alert_interval_seconds: float = Field(5.0, gt=0)
    market_refresh_seconds: float = Field(
        30.0, gt=0, description="How often the daily windows' and the rolling horizons' "
        "market fold is refreshed (when a checkpoint moved; streams.market_refresh)"
    )
    alert_idle_wall_seconds: float = Field(
        60.0, ge=0, description="A partition without new checkpoints this long may be idle"
    )
    alert_service_level: float = Field(0.95, gt=0.5, lt=1.0)
    alert_history_days: int = Field(14, ge=1, le=90)
    alert_review_days: int = Field(7, ge=0, le=90)
    alert_transit_lead_multiple: float = Field(
        2.0, ge=1.0, le=10.0,
        description="Restock shipments count as in transit for this many lead times",
    )
    alert_cooldown_hours: int = Field(24, ge=0)
    surge_min_orders: int = Field(12, ge=1)
    surge_ratio: float = Field(2.5, gt=1.0)

    # Tenants (docs/SECURITY.md)
    min_shops_per_signal: int = Field(
        3, ge=1, le=1000, description="k: a market number (factory.demand-signals, the web "
        "view's demand, the market views and dashboards) is published only from at least this "
        "many distinct shops; below it a cell is folded into its parent or withheld"
    )
    factory_topic_partitions: int = Field(
        1, ge=1, le=1024, description="Partitions of each factory.<factory>.restock-alerts "
        "topic (created on its first alert)"
    )
    alert_topic_retention_days: int = Field(
        30, ge=1, description="retention.ms of the alert topics (per-factory, "
        "factory.demand-signals and the shared one), in days"
    )
    shared_restock_topic: bool = Field(
        False, description="Also publish every restock alert to the shared "
        "factory.restock-alerts (single-factory deployments, or while subscribers move to "
        "their factory.<factory>.restock-alerts): every reader of it sees every factory"
    )

    # Retention in ClickHouse (streams/clickhouse/retention.py); 0 days = kept
    retention_days: dict[int, int] = Field(
        default_factory=lambda: {300: 35, 3600: 400},
        description="Days each window size is kept in demand_state and visitor_cells "
        "(by window start); sizes not listed are kept",
    )
    retention_visitor_days: int = Field(
        35, ge=0, description="Days visitor rows stay in visitor_cells (by window start; "
        "0: kept); unique visitors per cell stay in demand_cells with the windows"
    )
    retention_sku_days: int = Field(
        800, ge=0, description="Days of hourly SKU counters kept in sku_state (0: kept)"
    )
    retention_checkpoint_days: int = Field(
        7, ge=1, description="Days superseded checkpoints are kept (the latest of every "
        "partition is always kept); pruned hourly"
    )
    retention_resolved_alert_days: int = Field(
        7, ge=0, description="Days a resolved alert stays in c2m.alerts after the hour that "
        "resolved it (event time; 0: kept); c2m.alert_history keeps every version"
    )
    retention_late_days: int = Field(
        30, ge=0, description="Days late events (with payload) stay in late_events after "
        "they were recorded (0: kept); the dead-letter topic keeps 30 days too"
    )

    log_level: Literal["debug", "info", "warning", "error"] = "warning"

    @field_validator("clickhouse_database")
    @classmethod
    def _ident(cls, value: str) -> str:
        if not _IDENT.fullmatch(value):
            raise ValueError("clickhouse_database must be a plain identifier")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        load_zone(value)  # raises UnknownTimeZone (a ValueError) with the expected format
        return value

    @field_validator("promotion_days")
    @classmethod
    def _promotions(cls, value: str) -> str:
        PromotionCalendar.parse(value)  # PromotionSyntaxError (a ValueError) names the entry
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
                     "clickhouse_fault_file", "web_tokens_file", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: Any) -> Any:
        # an empty variable means "not set", not the current directory (Path("") is ".")
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # unset or empty: the embedded broker
        for server in value.split(","):
            host, colon, port = server.strip().rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server.strip()!r} is not host:port (a port 1-65535)")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _clickhouse_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # unset or empty: chDB under C2M_DATA_DIR
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            # not the parser's text: it can quote a piece of the password
            raise ValueError("not a URL: check the host and the port, and percent-encode "
                             "/ ? # @ in a password") from None
        if parts.scheme not in ("chdb", "http", "https"):
            raise ValueError(f"unsupported scheme {parts.scheme!r}: use chdb:///path or "
                             "http(s)://host:port")
        if parts.scheme != "chdb" and not parts.hostname:
            raise ValueError("no host: use http(s)://host:port")
        return value

    @field_validator("price_band_edges")
    @classmethod
    def _bands(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        PriceBands(value)  # ValueError: empty, not from 0, not strictly increasing
        return value

    @field_validator("window_seconds")
    @classmethod
    def _windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(w <= 0 or (86_400 % w and w % 86_400) for w in value):
            raise ValueError("window sizes must be positive and divide or be multiples of a day")
        if not {300, 3600, 86_400} <= set(value):
            raise ValueError("window sizes must include 300, 3600 and 86400 (the rolling "
                             "view, the web view and the dashboards read them)")
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _sasl(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and not self.kafka_sasl_mechanism:
            raise ValueError("SASL security protocols need C2M_KAFKA_SASL_MECHANISM")
        return self

    @model_validator(mode="after")
    def _retention(self) -> Settings:
        problems = self.retention_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def retention_problems(self) -> list[str]:
        """Retention rules shorter than what c2m-pulse reads back: a restore reads the
        windows within the correction horizon (hourly and longer: also the live retention
        for rolling sums), the alert rules read hourly windows for their history and SKU
        hours for up to ``alert_transit_lead_multiple`` x 365 days (the longest lead time
        the contract allows). One day of margin on top."""
        problems = []
        for size, days in sorted(self.retention_days.items()):
            if size <= 0 or days < 0:
                problems.append(f"retention_days: {size}: {days} must be a window size (s) "
                                "and days >= 0")
                continue
            if days == 0:
                continue
            need_h = self.correction_horizon_hours
            why = "the correction horizon"
            if size >= 3600 and self.live_retention_hours > need_h:
                need_h, why = self.live_retention_hours, "the live retention"
            if size == 3600 and self.alert_history_days * 24 > need_h:
                need_h, why = self.alert_history_days * 24.0, "the alert history"
            need = math.ceil((need_h * 3600 + size) / 86_400) + 1
            if days < need:
                problems.append(f"retention_days: windows of {size} s kept {days} days, but "
                                f"{why} needs {need} (C2M_RETENTION_DAYS)")
        if 0 < self.retention_resolved_alert_days * 24 < self.alert_cooldown_hours:
            problems.append(f"retention_resolved_alert_days: resolved alerts kept "
                            f"{self.retention_resolved_alert_days} days, but the alert "
                            f"cooldown ({self.alert_cooldown_hours} h) needs them longer "
                            "(C2M_RETENTION_RESOLVED_ALERT_DAYS)")
        if self.retention_visitor_days:
            need = math.ceil((self.correction_horizon_hours * 3600 + max(self.window_seconds))
                             / 86_400) + 1
            if self.retention_visitor_days < need:
                problems.append(f"retention_visitor_days: visitor rows kept "
                                f"{self.retention_visitor_days} days, but the correction "
                                f"horizon needs {need} (C2M_RETENTION_VISITOR_DAYS)")
        if self.retention_sku_days:
            need = max(self.alert_history_days,
                       math.ceil(self.alert_transit_lead_multiple * 365)) + 1
            if self.retention_sku_days < need:
                problems.append(f"retention_sku_days: SKU hours kept {self.retention_sku_days} "
                                f"days, but restock alerts read up to {need} "
                                "(C2M_RETENTION_SKU_DAYS)")
        return problems

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "clickhouse_url" and value else value

    # ---------------------------------------------------------------- derived
    def alert_config(self) -> AlertConfig:
        return AlertConfig(
            restock=RestockConfig(
                service_level=self.alert_service_level,
                history_days=self.alert_history_days,
                review_days=self.alert_review_days,
                transit_lead_multiple=self.alert_transit_lead_multiple,
            ),
            surge=SurgeConfig(min_orders=self.surge_min_orders, ratio=self.surge_ratio),
            cooldown_hours=self.alert_cooldown_hours,
            min_shops=self.min_shops_per_signal,
        )

    @property
    def effective_clickhouse_url(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'chdb').resolve()}"

    @property
    def effective_web_tokens_file(self) -> Path:
        return self.web_tokens_file or self.data_dir / "web-tokens.json"

    @property
    def tokens_required(self) -> bool:
        """Do web callers need a token for factory data (docs/SECURITY.md)?"""
        if self.web_require_token is not None:
            return self.web_require_token
        return not is_loopback_host(self.web_host)

    @property
    def writer_url(self) -> str:
        return f"http://{self.writer_host}:{self.writer_port}"

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            window_seconds=self.window_seconds,
            allowed_lateness_ms=self.allowed_lateness_seconds * 1000,
            correction_horizon_ms=int(self.correction_horizon_hours * 3_600_000),
            dedup_horizon_ms=int(self.dedup_horizon_hours * 3_600_000),
            max_future_ms=self.max_future_seconds * 1000,
            max_past_ms=self.max_past_days * 86_400_000,
            max_message_bytes=self.max_message_bytes,
            live_retention_ms=int(self.live_retention_hours * 3_600_000),
            timezone=self.timezone,
        )

    def calendar(self) -> MarketCalendar:
        """Window boundaries in the market's time zone (as the engine has them)."""
        return MarketCalendar(self.timezone, self.window_seconds)

    def promotions(self) -> PromotionCalendar:
        """The known promotion days (``C2M_PROMOTION_DAYS``)."""
        return PromotionCalendar.parse(self.promotion_days)

    def view_settings(self) -> dict[str, int]:
        """What the SQL views and materialized views read from ``c2m.pipeline_settings``."""
        return {
            "idle_partition_ms": self.idle_partition_seconds * 1000,
            # the SKU days' fold holds only while no worker's horizon is longer than its own
            "correction_horizon_ms": math.ceil(self.correction_horizon_hours * 3_600_000),
            "min_shops": self.min_shops_per_signal,
            **{f"window_seconds.{w}": w for w in self.window_seconds},
        }

    def kafka_client_config(self) -> dict[str, Any]:
        """Security options for aiokafka producers/consumers (secrets unwrapped here only)."""
        cfg: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            try:
                cfg["ssl_context"] = create_ssl_context(
                    cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None,
                    certfile=str(self.kafka_ssl_certfile) if self.kafka_ssl_certfile else None,
                    keyfile=str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                files = ", ".join(
                    f"C2M_KAFKA_SSL_{n.upper()}={p}" for n, p in (
                        ("cafile", self.kafka_ssl_cafile), ("certfile", self.kafka_ssl_certfile),
                        ("keyfile", self.kafka_ssl_keyfile)) if p)
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ConfigError(f"cannot load the Kafka TLS files ({files or 'none set'}): "
                                  f"{why}") from None
        if self.kafka_security_protocol.startswith("SASL"):
            cfg["sasl_mechanism"] = self.kafka_sasl_mechanism
            cfg["sasl_plain_username"] = self.kafka_sasl_username
            cfg["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return cfg

    def kafka_producer_config(self) -> dict[str, Any]:
        """``kafka_client_config`` plus the compression of c2m-pulse's own producers."""
        compression = None if self.kafka_compression == "none" else self.kafka_compression
        return {**self.kafka_client_config(), "compression_type": compression}

    def masked(self) -> dict[str, Any]:
        """Settings for display: SecretStr masked, passwords in URLs removed."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********" if value.get_secret_value() else ""
            elif name == "clickhouse_url" and value:
                value = mask_url(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        out["effective_clickhouse_url"] = mask_url(self.effective_clickhouse_url)
        return out


def is_loopback_host(host: str) -> bool:
    """A bind address only this machine reaches (``localhost``, 127.0.0.0/8, ``::1``)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[] ")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def mask_url(url: str) -> str:
    """Remove any password from a URL's userinfo (also from one that does not parse)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        # user:password@ up to the last @ (a password may hold / ? # unencoded)
        return re.sub(r"(//[^/@:?#]*):.*@", r"\1:**********@", url, count=1)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:**********@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
