"""Settings: env prefix, secrets masked everywhere they could be shown, security mapping."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from streams.app import faust_config
from streams.cli import main
from streams.clickhouse.retention import settings_ttls
from streams.settings import Settings, mask_url

CANARY = "canary-Secret-9f3b"


def test_env_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2M_APP_ID", "pulse-test")
    monkeypatch.setenv("C2M_WINDOW_SECONDS", "[86400, 3600, 300, 7200]")
    s = Settings()
    assert s.app_id == "pulse-test"
    assert s.window_seconds == (300, 3600, 7200, 86400)
    assert s.timezone == "Asia/Shanghai"
    assert s.web_host == "127.0.0.1" and s.metrics_host == "127.0.0.1"
    assert s.effective_clickhouse_url.startswith("chdb://")


def test_secrets_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2M_CLICKHOUSE_PASSWORD", CANARY)
    monkeypatch.setenv("C2M_KAFKA_SASL_PASSWORD", CANARY)
    monkeypatch.setenv("C2M_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("C2M_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("C2M_CLICKHOUSE_URL", f"http://user:{CANARY}@db.internal:8123")
    s = Settings()
    assert CANARY not in repr(s) and CANARY not in str(s)
    assert CANARY not in json.dumps(s.masked(), default=str)
    out = CliRunner().invoke(main, ["config"])
    assert out.exit_code == 0, out.output
    assert CANARY not in out.output and "**********" in out.output
    # the secret is still available to the client that needs it
    assert s.kafka_client_config()["sasl_plain_password"] == CANARY


def test_mask_url() -> None:
    assert mask_url("http://u:p@h:8123/x") == "http://u:**********@h:8123/x"
    assert mask_url("chdb:///tmp/x") == "chdb:///tmp/x"
    # URLs that do not parse (a port out of range, a broken IPv6 host) are masked too
    assert mask_url("http://u:p@h:99999") == "http://u:**********@h:99999"
    assert mask_url("http://u:p@[::1") == "http://u:**********@[::1"
    # a password with an unencoded / or # (the URL parser reads a port from it)
    assert mask_url("http://u:s3cr/et@h:8123") == "http://u:**********@h:8123"
    assert mask_url("http://u:s3cr#et@h:8123") == "http://u:**********@h:8123"


def test_empty_variables_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty path is not the current directory (it made every ClickHouse call fail as
    a chaos drill's fault file), an empty bootstrap or URL is the embedded default."""
    for name in ("C2M_CLICKHOUSE_FAULT_FILE", "C2M_KAFKA_SSL_CAFILE", "C2M_WEB_TOKENS_FILE",
                 "C2M_KAFKA_BOOTSTRAP", "C2M_CLICKHOUSE_URL"):
        monkeypatch.setenv(name, "")
    s = Settings()
    assert s.clickhouse_fault_file is None and s.kafka_ssl_cafile is None
    assert s.web_tokens_file is None and s.kafka_bootstrap is None
    assert s.effective_clickhouse_url.startswith("chdb://")


def test_values_a_type_check_lets_through_are_refused() -> None:
    for bad in ({"correction_horizon_hours": float("inf")},
                {"flush_interval_seconds": float("nan")},
                {"price_band_edges": (0, 10, 5)}, {"price_band_edges": ()},
                {"kafka_bootstrap": "abc"}, {"kafka_bootstrap": "h:0"},
                {"clickhouse_url": "ftp://x"}, {"clickhouse_url": "http://[::1"},
                {"clickhouse_url": "http://:8123"}):
        with pytest.raises(ValidationError):
            Settings(**bad)
    assert Settings(kafka_bootstrap="[::1]:9092,b:9093").kafka_bootstrap == "[::1]:9092,b:9093"


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(clickhouse_database="c2m; DROP TABLE x")
    with pytest.raises(ValidationError):
        Settings(window_seconds=(0,))
    with pytest.raises(ValidationError, match="must include 300, 3600 and 86400"):
        Settings(window_seconds=(300, 3600))
    with pytest.raises(ValidationError):
        Settings(kafka_security_protocol="SASL_SSL")  # no mechanism


def test_faust_config_mapping() -> None:
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                 kafka_sasl_username="shop", kafka_sasl_password=CANARY, web_port=7000)
    cfg = faust_config(s, "k1:9092,k2:9092")
    assert cfg["broker"] == "kafka://k1:9092,k2:9092"
    creds = cfg["broker_credentials"]
    assert creds.username == "shop" and creds.password == CANARY
    assert cfg["web_bind"] == "127.0.0.1" and cfg["web_port"] == 7000
    assert faust_config(Settings(), "k:1")["broker_credentials"] is None


def test_retention_from_env_and_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.retention_days == {300: 35, 3600: 400} and s.retention_sku_days == 800
    windows = ("window_start + toIntervalDay(35) WHERE window_seconds = 300, "
               "window_start + toIntervalDay(400) WHERE window_seconds = 3600")
    assert settings_ttls(s) == {
        "demand_state": windows,
        "demand_cells": windows,
        "market_cells": windows,
        "visitor_cells": "window_start + toIntervalDay(35)",
        "shop_cells": "window_start + toIntervalDay(35)",
        "sku_state": "hour_start + toIntervalDay(800)",
        "sku_hours": "hour_start + toIntervalDay(800)",
        "sku_days": "day_start + toIntervalDay(800)",
        "lost_sales": "hour_start + toIntervalDay(800)",
        "late_events": "toDateTime(recorded_at) + toIntervalDay(30)",
    }
    monkeypatch.setenv("C2M_RETENTION_DAYS", '{"86400": 3650, "300": 0, "3600": 90}')
    monkeypatch.setenv("C2M_RETENTION_SKU_DAYS", "0")
    monkeypatch.setenv("C2M_RETENTION_LATE_DAYS", "0")
    monkeypatch.setenv("C2M_RETENTION_VISITOR_DAYS", "0")
    s = Settings()
    assert s.retention_days == {86400: 3650, 300: 0, 3600: 90}
    # sorted by size; 0 days = no rule (kept)
    windows = ("window_start + toIntervalDay(90) WHERE window_seconds = 3600, "
               "window_start + toIntervalDay(3650) WHERE window_seconds = 86400")
    assert settings_ttls(s) == {
        "demand_state": windows,
        "demand_cells": windows,
        "market_cells": windows,
        "visitor_cells": "",
        "shop_cells": "",
        "sku_state": "",
        "sku_hours": "",
        "sku_days": "",
        "lost_sales": "",
        "late_events": "",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # 48 h correction horizon + the window + a day of margin
        ({"C2M_RETENTION_DAYS": '{"300": 3}'},
         "300 s kept 3 days, but the correction horizon needs 4"),
        # hourly windows feed the alert rules' 14-day history
        ({"C2M_RETENTION_DAYS": '{"3600": 15}'},
         "3600 s kept 15 days, but the alert history needs 16"),
        # daily windows: the 7-day live retention (rolling sums after a restore)
        ({"C2M_RETENTION_DAYS": '{"86400": 8}'},
         "86400 s kept 8 days, but the live retention needs 9"),
        ({"C2M_RETENTION_DAYS": '{"300": -1}'}, "days >= 0"),
        # visitor rows: refreshes of windows inside the correction horizon read them
        ({"C2M_RETENTION_VISITOR_DAYS": "3"},
         "visitor rows kept 3 days, but the correction horizon needs 4"),
        # restock: shipments in transit for up to 2 x 365 days (the longest lead time)
        ({"C2M_RETENTION_SKU_DAYS": "730"},
         "SKU hours kept 730 days, but restock alerts read up to 731"),
        ({"C2M_RETENTION_SKU_DAYS": "1000", "C2M_ALERT_TRANSIT_LEAD_MULTIPLE": "3"},
         "read up to 1096"),
        # a restart's book reads the resolved alerts still cooling down
        ({"C2M_RETENTION_RESOLVED_ALERT_DAYS": "1", "C2M_ALERT_COOLDOWN_HOURS": "25"},
         r"resolved alerts kept 1 days, but the alert cooldown \(25 h\)"),
    ],
)
def test_retention_shorter_than_what_is_read_back_is_rejected(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_retention_at_the_limits_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2M_RETENTION_DAYS", '{"300": 4, "3600": 16, "86400": 9}')
    monkeypatch.setenv("C2M_RETENTION_SKU_DAYS", "731")
    monkeypatch.setenv("C2M_RETENTION_VISITOR_DAYS", "4")
    monkeypatch.setenv("C2M_RETENTION_RESOLVED_ALERT_DAYS", "1")  # the 24 h cooldown
    assert Settings().retention_problems() == []
    monkeypatch.setenv("C2M_RETENTION_RESOLVED_ALERT_DAYS", "0")  # kept
    monkeypatch.setenv("C2M_ALERT_COOLDOWN_HOURS", "1000")
    assert Settings().retention_problems() == []


def test_settings_and_c2m_config_need_neither_the_compiled_lanes_nor_clickhouse() -> None:
    """``streams.settings`` is pure (issue 21): ``c2m config`` runs in a process where the
    engine, its compiled lanes, ClickHouse, Kafka and Faust cannot be imported at all."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('streams.core._lanes', 'streams.core.engine', 'streams.clickhouse',\n"
        "             'clickhouse_connect', 'chdb', 'aiokafka', 'kafka', 'faust'):\n"
        "    sys.modules[name] = None  # any import of them raises ImportError\n"
        "from click.testing import CliRunner\n"
        "from streams.cli import main\n"
        "from streams.settings import Settings\n"
        "assert Settings().engine_config().window_seconds == (300, 3600, 86400)\n"
        "r = CliRunner().invoke(main, ['config'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(r.output)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["app_id"] == "c2m-pulse"


def test_the_readme_lists_each_setting_once_and_only_settings() -> None:
    """README's configuration table: every variable once (C2M_LOG_LEVEL was listed twice,
    once without what debug does), each a setting, with the setting's default where the
    row names a single variable and a literal default."""
    import re
    from collections import Counter
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [ln.split("|")[1:-1] for ln in table.splitlines() if ln.startswith("| `C2M_")]
    names = [n for row in rows for n in re.findall(r"`(C2M_[A-Z0-9_]+)`", row[0])]
    assert len(names) > 40
    assert [n for n, c in Counter(names).items() if c > 1] == []
    fields = Settings.model_fields
    assert [n for n in names if n.removeprefix("C2M_").lower() not in fields] == []
    for variable, default, _meaning in rows:
        found = re.fullmatch(r" `(C2M_[A-Z0-9_]+)` ", variable)
        literal = re.fullmatch(r" `([a-z]+)` ", default)
        if found and literal:  # e.g. C2M_LOG_LEVEL | `warning`
            field = found[1].removeprefix("C2M_").lower()
            assert str(fields[field].default).lower() == literal[1], variable
