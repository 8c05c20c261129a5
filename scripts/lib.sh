# Shared settings and helpers of start.sh and the scripts. Every setting has a
# default and can be overridden from the environment (see README).
# shellcheck shell=bash

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
: "${CDCVIEW_STATE:=$ROOT/.state}"
: "${CDCVIEW_MYSQL_PORT:=3307}"
: "${CDCVIEW_PG_PORT:=5433}"
: "${CDCVIEW_KAFKA_PORT:=9092}"
: "${CDCVIEW_HTTP_PORT:=8001}"
: "${CDCVIEW_SEED_USERS:=20}"
: "${CDCVIEW_TOOLS:=$HOME/.cache/cdcview}"
: "${CDCVIEW_PROFILE:=release}"
: "${CDCVIEW_TOPIC_PARTITIONS:=1}"
: "${CDCVIEW_WAIT_SECS:=120}"
: "${CDCVIEW_UP_WAITS_FOR_DEBEZIUM:=no}"

export CDCVIEW_BROKERS=${CDCVIEW_BROKERS:-127.0.0.1:$CDCVIEW_KAFKA_PORT}
export CDCVIEW_MYSQL_URL=${CDCVIEW_MYSQL_URL:-mysql://cdcview:cdcview@127.0.0.1:$CDCVIEW_MYSQL_PORT/shop}
export CDCVIEW_PG_URL=${CDCVIEW_PG_URL:-postgres://cdcview:cdcview@127.0.0.1:$CDCVIEW_PG_PORT/cdcview}
export CDCVIEW_LISTEN=${CDCVIEW_LISTEN:-127.0.0.1:$CDCVIEW_HTTP_PORT}
export CDCVIEW_API=${CDCVIEW_API:-http://127.0.0.1:$CDCVIEW_HTTP_PORT}
export CDCVIEW_STATE_DIR=${CDCVIEW_STATE_DIR:-$CDCVIEW_STATE/cdcview}
# The views cdcview serves under /views: the shop's by default; add folders
# or files, comma-separated (views/examples holds revenue_by_city).
export CDCVIEW_VIEWS=${CDCVIEW_VIEWS:-$ROOT/views}

RUN_DIR=$CDCVIEW_STATE/run
LOG_DIR=$CDCVIEW_STATE/logs
MYSQL_DIR=$CDCVIEW_STATE/mysql
MYSQL_SOCK=$MYSQL_DIR/mysql.sock
PG_DIR=${CDCVIEW_PG_DATA:-$CDCVIEW_STATE/pg}
KAFKA_DIR=$CDCVIEW_STATE/kafka
DBZ_DIR=$CDCVIEW_STATE/debezium
VENV=$CDCVIEW_TOOLS/venv
TOPICS="mysql.shop.users mysql.shop.addresses mysql.shop.orders mysql.shop.order_items order_updates"
# Debezium's transaction metadata: BEGIN/END per MySQL transaction. One
# partition, so that END events keep commit order.
TX_TOPIC=mysql.transaction
export PATH="$HOME/.cargo/bin:$PATH"

say()  { printf '\033[1m==>\033[0m %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die()  { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# die_with_log PART LOG: a part did not come up; show the end of its log.
die_with_log() {
    printf '\033[31merror:\033[0m %s did not come up. Its log: %s\n' "$1" "$2" >&2
    [ -f "$2" ] && tail -n 15 "$2" | sed 's/^/    | /' >&2
    exit 1
}

# wait_for NAME LOG CMD...: retry CMD every 0.2 s up to CDCVIEW_WAIT_SECS.
wait_for() {
    local name=$1 log=$2; shift 2
    local deadline=$((SECONDS + CDCVIEW_WAIT_SECS))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die_with_log "$name" "$log"
        sleep 0.2
    done
}

pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && { echo "$d"; return; }; done
    return 1
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pid_alive() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

# start_bg NAME CMD...: run CMD detached, its output in the logs folder.
start_bg() {
    local name=$1; shift
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    setsid nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 < /dev/null &
    echo $! > "$RUN_DIR/$name.pid"
}

# stop_pid NAME: TERM, wait up to 20 s, then KILL.
stop_pid() {
    local name=$1 pid
    pid_alive "$name" || { rm -f "$RUN_DIR/$name.pid"; return 0; }
    pid=$(cat "$RUN_DIR/$name.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$RUN_DIR/$name.pid"
}

mysql_root() { mariadb --protocol=socket -S "$MYSQL_SOCK" -uroot "$@"; }
cdcview_bin() { echo "$ROOT/target/$CDCVIEW_PROFILE/cdcview"; }
