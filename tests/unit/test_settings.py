"""Settings: env prefix, secrets masked everywhere they could be shown, security mapping."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from streams.app import faust_config
from streams.cli import main
from streams.settings import Settings, mask_url

CANARY = "canary-Secret-9f3b"


def test_env_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2M_APP_ID", "pulse-test")
    monkeypatch.setenv("C2M_WINDOW_SECONDS", "[3600, 300]")
    s = Settings()
    assert s.app_id == "pulse-test"
    assert s.window_seconds == (300, 3600)
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


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(clickhouse_database="c2m; DROP TABLE x")
    with pytest.raises(ValidationError):
        Settings(window_seconds=(0,))
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
