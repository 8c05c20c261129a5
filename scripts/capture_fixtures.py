#!/usr/bin/env python3
"""Captures real Debezium payloads from the running stack into tests/fixtures/.

For each topic prefix given, reads mysql.shop-like topics from the start and
keeps the last record of each (table, op) pair, plus a tombstone. Used once to
make the decoder fixtures; run it again after changing connector settings:
  .cache venv python scripts/capture_fixtures.py mysql:json-string fxp:json-schema-precise
"""
import json
import os
import sys

from confluent_kafka import Consumer, TopicPartition

brokers = os.environ.get("CDCVIEW_BROKERS", "127.0.0.1:9092")
out_root = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")

for spec in sys.argv[1:]:
    prefix, variant = spec.split(":")
    out = os.path.join(out_root, variant)
    os.makedirs(out, exist_ok=True)
    for table in ["users", "addresses", "orders", "order_items"]:
        topic = f"{prefix}.shop.{table}"
        c = Consumer({"bootstrap.servers": brokers, "group.id": "fixtures", "enable.auto.commit": False})
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, low)])
        kept = {}
        seen = 0
        while seen < high - low:
            m = c.poll(5)
            if m is None:
                break
            seen += 1
            if m.value() is None:
                kept["tombstone"] = (m.key(), b"")
                continue
            op = json.loads(m.value()).get("payload", json.loads(m.value())).get("op")
            kept[op] = (m.key(), m.value())
        c.close()
        for op, (key, value) in kept.items():
            name = f"{table}.{op}"
            with open(os.path.join(out, name + ".json"), "wb") as f:
                f.write(value)
            with open(os.path.join(out, name + ".key"), "wb") as f:
                f.write(key or b"")
        print(f"{topic}: {sorted(kept)}")
