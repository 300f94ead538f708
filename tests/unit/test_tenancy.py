"""The factory id -> topic name mapping: legal, deterministic, collision-free, and one
factory's ACL prefix never covers another factory's topic."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import tenancy

KAFKA_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128
).filter(lambda s: all(not 127 <= ord(c) < 160 for c in s))


def test_examples_are_readable_and_documented() -> None:
    assert tenancy.restock_topic("F001") == "factory.F001.restock-alerts"
    assert tenancy.prefix("F001") == "factory.F001."
    assert tenancy.component("f.1") == "f_2E1"
    assert tenancy.component("a_b") == "a_5Fb"
    assert tenancy.component("义乌袜厂") == "_E4_B9_89_E4_B9_8C_E8_A2_9C_E5_8E_82"
    assert tenancy.component("F 1/2") == "F_201_2F2"
    assert tenancy.consumer_group("F001") == "factory.F001.tail"
    assert tenancy.clickhouse_user("F001") == "c2m_factory_F001"


@given(ids)
@settings(max_examples=400)
def test_every_id_gives_a_legal_topic_and_decodes(factory_id: str) -> None:
    topic = tenancy.restock_topic(factory_id)
    assert KAFKA_NAME.fullmatch(topic), topic
    assert len(topic) <= tenancy.MAX_TOPIC
    c = tenancy.component(factory_id)
    assert "." not in c and c
    assert tenancy.restock_topic_component(topic) == c
    assert tenancy.restock_topic(factory_id) == topic  # deterministic
    decoded = tenancy.factory_of(c)
    if "__" in c:
        assert decoded is None and len(c) == tenancy.KEEP + 2 + 32 - (tenancy.KEEP - c.index("__"))
    else:
        assert decoded == factory_id


@given(ids, ids)
@settings(max_examples=400)
def test_distinct_ids_never_share_a_topic_or_a_prefix(a: str, b: str) -> None:
    if a == b:
        return
    assert tenancy.restock_topic(a) != tenancy.restock_topic(b)
    # one factory's prefixed ACL never matches another factory's topic or group
    assert not tenancy.restock_topic(b).startswith(tenancy.prefix(a))
    assert not tenancy.consumer_group(b).startswith(tenancy.prefix(a))


def test_near_misses_do_not_collide() -> None:
    # the escape character itself, dots, case, a prefix of another id, long ids that
    # share their first 100 characters
    group = ["F1", "F10", "F1.", "F1_", "F_2E", "F.", "f1", "F_46", "_46", "F", "F1-",
             "x" * 128, "x" * 127 + "y", "袜" * 40, "袜" * 39 + "鞋", "袜" * 34 + "a" * 6]
    topics = [tenancy.restock_topic(g) for g in group]
    assert len(set(topics)) == len(group)
    for a in group:
        for b in group:
            if a != b:
                assert not tenancy.restock_topic(b).startswith(tenancy.prefix(a)), (a, b)
    # the shared topics are no factory's
    for g in group:
        for shared in (tenancy.SHARED_RESTOCK_TOPIC, "factory.demand-signals"):
            assert not shared.startswith(tenancy.prefix(g))
    assert tenancy.restock_topic("restock-alerts") == "factory.restock-alerts.restock-alerts"
    assert not tenancy.SHARED_RESTOCK_TOPIC.startswith(tenancy.prefix("restock-alerts"))


def test_long_ids_are_shortened_with_a_hash_without_cutting_an_escape() -> None:
    for fid in ("袜" * 128, "a" * 128, "a" * 63 + "袜" * 20, "a" * 62 + "袜" * 20):
        c = tenancy.component(fid)
        assert "__" in c and len(c) <= tenancy.KEEP + 34
        head = c.split("__")[0]
        assert re.fullmatch(r"(?:[A-Za-z0-9-]|_[0-9A-F]{2})*", head), head


@pytest.mark.parametrize("bad", ["", "a\nb", "x" * 129, "\x00", "a\x85"])
def test_ids_the_contract_refuses_are_refused(bad: str) -> None:
    with pytest.raises(tenancy.BadFactoryId):
        tenancy.component(bad)


def test_other_topics_are_not_factory_topics() -> None:
    for t in ("factory.restock-alerts", "factory.demand-signals", "shop.orders",
              "factory.a.b.restock-alerts", "factory..restock-alerts"):
        assert tenancy.restock_topic_component(t) is None
    assert tenancy.factory_of("a__b") is None
    assert tenancy.factory_of("a_ZZ") is None
    assert tenancy.factory_of("_FF") is None  # not UTF-8


def test_kafka_acls_command_grants_one_prefix_and_nothing_else() -> None:
    import os
    import shlex
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "streams.cli", "kafka", "acls", "--factory",
                          "义乌 袜厂"], capture_output=True, text=True, timeout=60, check=True,
                         env={**os.environ}).stdout
    acls = [shlex.split(ln) for ln in out.splitlines() if ln.startswith("kafka-acls.sh")]
    assert len(acls) == 2
    want = tenancy.prefix("义乌 袜厂")
    for args in acls:
        assert args[args.index("--allow-principal") + 1] == "User:factory-" + tenancy.component(
            "义乌 袜厂")
        assert want in args and args[-2:] == ["--resource-pattern-type", "prefixed"]
        assert {args[i + 1] for i, a in enumerate(args) if a == "--operation"} == {
            "Read", "Describe"}
    bad = subprocess.run([sys.executable, "-m", "streams.cli", "kafka", "acls", "--factory", ""],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr  # a usage mistake
