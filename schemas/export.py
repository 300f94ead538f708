"""Export the contracts as JSON Schema files: ``python -m schemas.export [--check]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.alerts import TOPIC_DEMAND_SIGNALS, TOPIC_RESTOCK_ALERTS, AlertMessage
from schemas.contract import ADAPTERS, CONTRACT_VERSION, TOPIC_DEAD_LETTER
from schemas.deadletter import DeadLetter

JSON_DIR = Path(__file__).parent / "json"


def documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, for every topic with a contract."""
    adapters: dict[str, TypeAdapter[Any]] = dict(ADAPTERS)
    adapters[TOPIC_DEAD_LETTER] = TypeAdapter(DeadLetter)
    adapters[TOPIC_RESTOCK_ALERTS] = TypeAdapter(AlertMessage)
    adapters[TOPIC_DEMAND_SIGNALS] = TypeAdapter(AlertMessage)
    docs: dict[str, dict[str, Any]] = {}
    for topic, adapter in adapters.items():
        schema = adapter.json_schema(mode="validation")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"c2m-pulse/{topic}.v{CONTRACT_VERSION}.json",
            "x-topic": topic,
            **schema,
        }
        docs[f"{topic}.v{CONTRACT_VERSION}.json"] = schema
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if files differ from models")
    args = parser.parse_args(argv)
    stale = []
    JSON_DIR.mkdir(exist_ok=True)
    for name, doc in documents().items():
        path = JSON_DIR / name
        text = render(doc)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale JSON Schemas (run python -m schemas.export):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
