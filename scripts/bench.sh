#!/usr/bin/env bash
# Runs the benchmarks behind BENCHMARKS.md against the real stack, and writes
# the raw results and a freshness plot to $CDCVIEW_BENCH_OUT.
#
# Usage: scripts/bench.sh [PART...]
#   PARTs: engine freshness throughput reads recovery footprint (default: all, in that order)
#   The engine part runs on generated data: alone, it starts no stack.
# Environment: CDCVIEW_BENCH_USERS (100000: users seeded, about 2 orders each),
#   CDCVIEW_BENCH_SECONDS (60: length of each freshness and throughput run),
#   CDCVIEW_BENCH_OUT (.state/bench), CDCVIEW_BENCH_READ_RATES and
#   CDCVIEW_BENCH_PAGE_RATES (request rates of the fixed-rate read runs), CDCVIEW_BENCH_RUNS (3: interleaved runs of
#   each engine in the differential-dataflow comparison), CDCVIEW_BENCH_REPLAY (no; yes also times
#   a restart without the snapshot, about 2 more minutes), plus the settings
#   of start.sh.
set -euo pipefail
# Seeding 100k users puts 700k changes through Debezium: give start.sh time
# (set before lib.sh, which defaults it to 120).
export CDCVIEW_WAIT_SECS=${CDCVIEW_WAIT_SECS:-900}
# The benchmarks commit at once after the start.
export CDCVIEW_UP_WAITS_FOR_DEBEZIUM=yes
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

: "${CDCVIEW_BENCH_USERS:=100000}"
: "${CDCVIEW_BENCH_SECONDS:=60}"
: "${CDCVIEW_BENCH_OUT:=$CDCVIEW_STATE/bench}"
export CDCVIEW_PROFILE=release CDCVIEW_SEED_USERS=$CDCVIEW_BENCH_USERS
BIN=$ROOT/target/release/cdcview
OUT=$CDCVIEW_BENCH_OUT
mkdir -p "$OUT"

install_bench_tools() {
    command -v wrk >/dev/null || {
        say "installing wrk from Debian (apt-get)"
        [ "$(id -u)" = 0 ] || die "need root to apt-get install wrk; install it yourself and rerun"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    }
    "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null || {
        say "installing matplotlib into $VENV (for the freshness plot)"
        "$VENV/bin/pip" install -q 'matplotlib==3.9.2'
    }
}

status_field() { curl -fsS "$CDCVIEW_API/status" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
sql() { mysql_root -N shop -e "$1"; }
cdcview_pid() { cat "$RUN_DIR/cdcview.pid"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$(cdcview_pid)/status"; }

part_engine() {
    say "engine alone (cdcview bench engine)"
    "$BIN" bench engine | tee "$OUT/engine.txt"
    say "cdcview's engine and differential-dataflow on the same changes, interleaved (benches/differential)"
    # Not --locked: its lock file follows cdcview's dependencies, which change more often.
    cargo build --release --quiet --manifest-path "$ROOT/benches/differential/Cargo.toml" --target-dir "$ROOT/target/differential"
    local twin=$ROOT/target/differential/release/cdcview-differential runs=${CDCVIEW_BENCH_RUNS:-3} mix
    for mix in steady churn; do
        : > "$OUT/engine-vs-differential-$mix.txt"
        for _ in $(seq "$runs"); do
            for engine in cdcview differential; do
                "$twin" --engine "$engine" --mix "$mix" | tee -a "$OUT/engine-vs-differential-$mix.txt"
            done
        done
        python3 "$ROOT/scripts/engine_ratio.py" "$OUT/engine-vs-differential-$mix.txt" | tee -a "$OUT/engine.txt"
    done
    say "the SQL-defined order_details_mv (views/shop.sql) beside the hand-written engine, interleaved"
    for mix in steady churn; do
        : > "$OUT/engine-sql-$mix.txt"
        for _ in $(seq "$runs"); do
            for engine in hand sql; do
                echo "== $engine" >> "$OUT/engine-sql-$mix.txt"
                "$BIN" bench engine --engine "$engine" --mix "$mix" --views "$ROOT/views/shop.sql" 2>/dev/null >> "$OUT/engine-sql-$mix.txt"
            done
        done
        python3 - "$OUT/engine-sql-$mix.txt" "$mix" <<'PY' | tee -a "$OUT/engine.txt"
import re, statistics, sys
runs, engine = {"hand": [], "sql": []}, None
for line in open(sys.argv[1]):
    if line.startswith("== "):
        engine = line[3:].strip()
    elif m := re.match(r"engine: \d+ changes in [\d.]+ s = (\d+) changes/s", line):
        runs[engine].append({"wall": int(m.group(1))})
    elif m := re.match(r"view deltas emitted: (\d+)", line):
        runs[engine][-1]["deltas"] = int(m.group(1))
    elif m := re.match(r"peak resident memory: (\d+) MiB", line):
        runs[engine][-1]["rss"] = int(m.group(1))
deltas = {r["deltas"] for rs in runs.values() for r in rs}
if len(deltas) != 1:
    sys.exit(f"the engines disagree on the number of view deltas: {sorted(deltas)}")
for name, rs in runs.items():
    w = [r["wall"] for r in rs]
    print(f"{sys.argv[2]} mix, {name:>4}: changes/s min/median/max {min(w):,} / {int(statistics.median(w)):,} / {max(w):,}; peak RSS {max(r['rss'] for r in rs)} MiB")
ratios = [h["wall"] / s["wall"] for h, s in zip(runs["hand"], runs["sql"])]
print(f"{sys.argv[2]} mix: hand-written / SQL, run by run: min {min(ratios):.1f}x, median {statistics.median(ratios):.1f}x, max {max(ratios):.1f}x; {deltas.pop()} view deltas each")
PY
    done
    # The peak counts the benchmark's own buffers too: the states alone, one
    # run each (freed pages go back at once, so these runs are slower).
    say "the engines' state alone (--state-memory)"
    for mix in steady churn; do
        local hand sql
        hand=$("$BIN" bench engine --engine hand --mix "$mix" --state-memory 2>/dev/null | sed -n 's/^engine state: \([0-9]*\) MiB.*/\1/p')
        sql=$("$BIN" bench engine --engine sql --mix "$mix" --state-memory --views "$ROOT/views/shop.sql" 2>/dev/null | sed -n 's/^engine state: \([0-9]*\) MiB.*/\1/p')
        echo "$mix mix, state alone: hand-written $hand MiB, SQL $sql MiB ($(python3 -c "print(f'{$sql / $hand:.2f}')")x)" | tee -a "$OUT/engine.txt"
    done
}

part_freshness() {
    local rate
    for rate in 100 1000; do
        say "freshness at $rate tx/s for ${CDCVIEW_BENCH_SECONDS} s"
        "$BIN" bench freshness --rate "$rate" --duration "$CDCVIEW_BENCH_SECONDS" --csv "$OUT/freshness-$rate.csv" | tee "$OUT/freshness-$rate.txt"
    done
    "$VENV/bin/python" "$ROOT/scripts/plot_freshness.py" "$OUT/freshness.png" "$OUT"/freshness-100.csv "$OUT"/freshness-1000.csv
    cp "$OUT/freshness.png" "$ROOT/benches/freshness.png"
    info "plot: $OUT/freshness.png (copied to benches/freshness.png)"
}

# A bulk load through the whole pipeline, sampled every second: the rate at
# which Debezium and the broker deliver changes, and cdcview's lag behind them.
part_throughput() {
    local users target samples=$OUT/throughput.csv
    users=$(sql "SELECT COUNT(*) FROM users")
    # About 7 changes per user (user, address, 2 orders, 3 items).
    target=$((users + CDCVIEW_BENCH_SECONDS * 10000 / 7))
    say "throughput: seeding up to $target users while sampling /status every second"
    echo "second,produced,consumed,lag,rss_kib" > "$samples"
    "$BIN" seed --users "$target" > "$OUT/throughput-seed.txt" &
    local seeder=$! t=0 want
    want=$(sql "SELECT COUNT(*) FROM orders o JOIN users u USING (user_id)")
    while :; do
        sleep 1; t=$((t + 1))
        curl -fsS "$CDCVIEW_API/status" | python3 -c "
import json,sys
d=json.load(sys.stdin); p=d['source']['partitions']
print('$t,%d,%d,%d,$(rss_kib)' % (sum(x['end_offset'] for x in p), sum(x['consumed_offset'] for x in p), sum(x['lag'] for x in p)))" >> "$samples"
        if ! kill -0 "$seeder" 2>/dev/null; then
            want=$(sql "SELECT COUNT(*) FROM orders o JOIN users u USING (user_id)")
            [ "$(status_field "d['view']['rows']")" = "$want" ] && break
        fi
        [ $t -lt 1800 ] || die "the view did not catch up within 30 minutes"
    done
    wait "$seeder"
    python3 - "$samples" <<'PY' | tee "$OUT/throughput.txt"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
first = next(r for r in rows if int(r['produced']) > int(rows[0]['produced']))
last = rows[-1]
secs = int(last['second']) - int(first['second']) + 1
changes = int(last['consumed']) - int(rows[0]['consumed'])
print(f"throughput: {changes} changes in {secs} s = {changes / secs:.0f} changes/s through MySQL -> Debezium -> Kafka -> cdcview")
print(f"cdcview lag behind the broker: max {max(int(r['lag']) for r in rows)} records, mean {sum(int(r['lag']) for r in rows) / len(rows):.0f}")
PY
}

# wrk_run NAME PATH_EXPR: 10 s of wrk with a Lua-generated path per request.
wrk_run() {
    local name=$1 expr=$2 script=$OUT/wrk-$1.lua
    cat > "$script" <<LUA
math.randomseed(42)
local lo, hi = $ORDER_LO, $ORDER_HI
request = function() return wrk.format("GET", $expr) end
LUA
    wrk -t1 -c8 -d10s --latency -s "$script" "$CDCVIEW_API" > "$OUT/wrk-$name.txt"
    printf '%-34s %10s req/s  p50 %8s  p99 %8s  non-2xx %s\n' "$name" \
        "$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk-$name.txt")" \
        "$(awk '$1 == "50%" {print $2}' "$OUT/wrk-$name.txt")" \
        "$(awk '$1 == "99%" {print $2}' "$OUT/wrk-$name.txt")" \
        "$(awk '/Non-2xx/ {print $5}' "$OUT/wrk-$name.txt" | grep . || echo 0)"
}

part_reads() {
    read -r ORDER_LO ORDER_HI < <(sql "SELECT MIN(order_id), MAX(order_id) FROM orders")
    say "reads: wrk -t1 -c8 -d10s, random orders in [$ORDER_LO, $ORDER_HI], $(status_field "d['view']['rows']") rows in the view"
    {
        wrk_run mv-point '"/order_details_mv/" .. math.random(lo, hi)'
        wrk_run mv-page-100 '"/order_details_mv?limit=100&after=" .. math.random(lo, hi)'
        wrk_run naive-point '"/order_details?limit=1&after=" .. (math.random(lo, hi) - 1)'
        wrk_run naive-page-100 '"/order_details?limit=100&after=" .. math.random(lo, hi)'
    } | tee "$OUT/reads.txt"
    # Open loop at fixed rates: the latency a client sees at a given load,
    # idle and while 1,000 tx/s flow through the pipeline.
    local rates=${CDCVIEW_BENCH_READ_RATES:-1000,2000,5000,10000,20000} page_rates=${CDCVIEW_BENCH_PAGE_RATES:-500,1000,2000,5000}
    local n_rates busy_secs
    n_rates=$(tr ',' '\n' <<<"$rates" | wc -l)
    busy_secs=$((n_rates * 12 + 15))
    say "reads at fixed rates (cdcview bench reads, 10 s per rate): idle, then with 1,000 tx/s written"
    {
        echo "point reads, pipeline idle:"
        "$BIN" bench reads --rates "$rates" --duration 10
        echo "GET /healthz (reads no view: the machine's floor), pipeline idle:"
        "$BIN" bench reads --kind health --rates "$rates" --duration 10
        echo "100-row pages, pipeline idle:"
        "$BIN" bench reads --kind page --rates "$page_rates" --duration 10
        echo "point reads while cdcview bench freshness writes 1,000 tx/s for $busy_secs s:"
        "$BIN" bench freshness --rate 1000 --duration "$busy_secs" > "$OUT/reads-busy-freshness.txt" 2>&1 &
        local writer=$!
        sleep 5
        "$BIN" bench reads --rates "$rates" --duration 10
        wait "$writer" || echo "(the writer failed: see $OUT/reads-busy-freshness.txt)"
        grep -E '^(freshness|p50)' "$OUT/reads-busy-freshness.txt" | sed 's/^/    writer: /'
    } 2>&1 | tee "$OUT/reads-rates.txt"
}

# restart_timed HOW: stop cdcview (gracefully, or with SIGKILL), optionally
# without its snapshot, start it, and time start -> /readyz 200, and start ->
# an order committed in MySQL right after the start visible in the view (a
# view that is ready but held back, say by a transaction waiting for its
# timeout, shows in the second figure).
restart_timed() {
    local how=$1 t0 t1 t2 order
    case $how in
        graceful|replay) stop_pid cdcview ;;
        kill) kill -KILL "$(cdcview_pid)"; rm -f "$RUN_DIR/cdcview.pid" ;;
    esac
    [ "$how" = replay ] && mv "$CDCVIEW_STATE_DIR/engine.snapshot" "$CDCVIEW_STATE_DIR/engine.snapshot.aside"
    t0=$(date +%s.%N)
    start_bg cdcview "$BIN" serve
    order=$(sql "INSERT INTO orders (user_id, total) SELECT MIN(user_id), 1.00 FROM users; SELECT LAST_INSERT_ID()")
    until curl -fsS "$CDCVIEW_API/readyz" >/dev/null 2>&1; do sleep 0.05; done
    t1=$(date +%s.%N)
    until curl -fsS "$CDCVIEW_API/order_details_mv/$order" >/dev/null 2>&1; do sleep 0.05; done
    t2=$(date +%s.%N)
    [ "$how" = replay ] && rm -f "$CDCVIEW_STATE_DIR/engine.snapshot.aside"
    python3 -c "print(f'recovery ($how): start -> /readyz 200 in {$t1 - $t0:.2f} s, -> an order committed after the start visible in {$t2 - $t0:.2f} s, with $(status_field "d['view']['rows']") rows')"
}

part_recovery() {
    say "recovery: restarting cdcview with $(status_field "d['view']['rows']") view rows"
    {
        restart_timed graceful
        # A kill lands up to CDCVIEW_SNAPSHOT_EVERY_SECS after the last snapshot:
        # write for a while first, so the restart also replays a tail.
        "$BIN" bench freshness --rate 200 --duration 10 >/dev/null
        restart_timed kill
        # Replaying every topic takes minutes; CDCVIEW_BENCH_REPLAY=yes times it.
        [ "${CDCVIEW_BENCH_REPLAY:-no}" != yes ] || restart_timed replay
    } | tee "$OUT/recovery.txt"
    say "recovery with 1M orders: the snapshot's save and restore, engine alone"
    rm -rf "$OUT/snapshot-1m"
    "$BIN" bench engine --users 500000 --orders 1000000 --items 2500000 --events 1000000 --changes 0 \
        --snapshot-dir "$OUT/snapshot-1m" --keep-snapshot | grep -E "snapshot|rows" | tee -a "$OUT/recovery.txt"
    serve_on_1m_snapshot | tee -a "$OUT/recovery.txt"
    serve_1m_with_sink_and_backlog | tee -a "$OUT/recovery.txt"
    rm -rf "$OUT/snapshot-1m"
}

# Times a restart of `cdcview serve` holding 1M orders with the sink on and a
# backlog after its snapshot. On the 1M-order snapshot, with topics and a
# PostgreSQL database of its own (cdcview_bench1m), a first start writes the
# 1M rows into the table and is stopped gracefully once the sink has caught
# up; then CDCVIEW_BENCH_BACKLOG (10,000) status events for those orders go to
# its status topic; then the restart is timed to /readyz 200 and until the
# backlog is applied and written to PostgreSQL (lag 0, nothing pending).
serve_1m_with_sink_and_backlog() {
    local prefix=recovery1ms port=$((CDCVIEW_HTTP_PORT + 18)) db=cdcview_bench1m backlog=${CDCVIEW_BENCH_BACKLOG:-10000} t pid t0 t1 t2
    for t in users addresses orders order_items order_updates transaction; do
        tansu topic create "$prefix.$t" --broker "tcp://127.0.0.1:$CDCVIEW_KAFKA_PORT" --partitions 1 >/dev/null 2>&1 || true
    done
    psql -X -q -h 127.0.0.1 -p "$CDCVIEW_PG_PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db OWNER cdcview" >/dev/null
    "$ROOT/start.sh" stop-part cdcview >/dev/null
    serve_1m() {
        env CDCVIEW_PG_URL="postgres://cdcview:cdcview@127.0.0.1:$CDCVIEW_PG_PORT/$db" CDCVIEW_LISTEN="127.0.0.1:$port" CDCVIEW_STATE_DIR="$OUT/snapshot-1m" \
            CDCVIEW_TOPIC_PREFIX="$prefix" CDCVIEW_STATUS_TOPIC="$prefix.order_updates" CDCVIEW_TRANSACTION_TOPIC="$prefix.transaction" \
            "$BIN" serve >>"$OUT/serve-1m-sink.log" 2>&1 &
        pid=$!
    }
    # Caught up: ready, every partition read to its end, the sink holding nothing.
    caught_up() {
        curl -sf "http://127.0.0.1:$port/status" | python3 -c "
import json, sys
d = json.load(sys.stdin)
ok = d['ready'] and all(p['lag'] == 0 for p in d['source']['partitions']) and d['sink']['pending_rows'] == 0 and d['sink']['state'] == 'ok'
sys.exit(0 if ok else 1)" 2>/dev/null
    }
    wait_until() {
        until "$@"; do
            kill -0 "$pid" 2>/dev/null || die_with_log "cdcview on the 1M snapshot, sink on" "$OUT/serve-1m-sink.log"
            sleep 0.05
        done
    }
    serve_1m
    wait_until caught_up
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    "$BIN" push-events 1 1000001 --rate 1000000 --count "$backlog" --seed 7 --topic "$prefix.order_updates" >/dev/null
    t0=$(date +%s.%N)
    serve_1m
    wait_until curl -sf "http://127.0.0.1:$port/readyz" -o /dev/null
    t1=$(date +%s.%N)
    wait_until caught_up
    t2=$(date +%s.%N)
    python3 -c "print(f'recovery (cdcview serve, 1M orders, sink on, $backlog status events after the snapshot): start -> /readyz 200 in {$t1 - $t0:.2f} s, -> backlog applied and written to PostgreSQL in {$t2 - $t0:.2f} s')"
    curl -sf "http://127.0.0.1:$port/status" | python3 -c "import json, sys; d = json.load(sys.stdin); print('    sink after the restart:', d['sink'])"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    psql -X -q -h 127.0.0.1 -p "$CDCVIEW_PG_PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null
    "$ROOT/start.sh" start-part cdcview >/dev/null
}

# Times `cdcview serve` from start to /readyz 200 on the 1M-order snapshot
# just written: a second cdcview on its own port, sink off, reading empty
# topics of its own (the snapshot covers no offsets, and replaying the
# stack's topics on top would time the replay instead of the restore).
serve_on_1m_snapshot() {
    local prefix=recovery1m port=$((CDCVIEW_HTTP_PORT + 17)) t pid t0 t1 rows
    for t in users addresses orders order_items order_updates transaction; do
        tansu topic create "$prefix.$t" --broker "tcp://127.0.0.1:$CDCVIEW_KAFKA_PORT" --partitions 1 >/dev/null 2>&1 || true
    done
    # As in a real restart, this is the only cdcview: the stack's own one
    # (polling the broker every few ms) is stopped meanwhile.
    "$ROOT/start.sh" stop-part cdcview >/dev/null
    t0=$(date +%s.%N)
    env -u CDCVIEW_PG_URL CDCVIEW_LISTEN="127.0.0.1:$port" CDCVIEW_STATE_DIR="$OUT/snapshot-1m" \
        CDCVIEW_TOPIC_PREFIX="$prefix" CDCVIEW_STATUS_TOPIC="$prefix.order_updates" CDCVIEW_TRANSACTION_TOPIC="$prefix.transaction" \
        "$BIN" serve >"$OUT/serve-1m.log" 2>&1 &
    pid=$!
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || die_with_log "cdcview on the 1M snapshot" "$OUT/serve-1m.log"
        sleep 0.05
    done
    t1=$(date +%s.%N)
    rows=$(curl -s "http://127.0.0.1:$port/status" | python3 -c "import json, sys; print(json.load(sys.stdin)['view']['rows'])")
    python3 -c "print(f'recovery (cdcview serve on the 1M-order snapshot): start -> /readyz 200 in {$t1 - $t0:.2f} s with $rows rows')"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    "$ROOT/start.sh" start-part cdcview >/dev/null
}

part_footprint() {
    local rows rss
    rows=$(status_field "d['view']['rows']")
    rss=$(rss_kib)
    python3 -c "print(f'footprint: {$rss / 1024:.0f} MiB resident with $rows view rows = {$rss / 1024 * 100000 / $rows:.0f} MiB per 100k orders (all five input tables kept)')" | tee "$OUT/footprint.txt"
}

# True unless every part is the engine alone, which runs on generated data.
needs_stack() {
    local p
    for p in "$@"; do [ "$p" = engine ] || return 0; done
    return 1
}

main() {
    local parts=("$@")
    [ ${#parts[@]} -gt 0 ] && [ "${parts[0]}" != all ] || parts=(engine freshness throughput reads recovery footprint)
    for p in "${parts[@]}"; do
        declare -F "part_$p" >/dev/null || die "unknown part '$p' (parts: engine freshness throughput reads recovery footprint)"
    done
    if needs_stack "${parts[@]}"; then
        install_bench_tools
        # Measure the release build: a cdcview started by the tests runs the debug one.
        if pid_alive cdcview && [ "$(readlink "/proc/$(cdcview_pid)/exe")" != "$BIN" ]; then
            info "restarting cdcview on the release build"
            stop_pid cdcview
        fi
        "$ROOT/start.sh" up
        pid_alive cdcview || die "cdcview is not running"
    else
        say "building cdcview (release); the engine part needs no stack"
        (cd "$ROOT" && cargo build --release --locked --bin cdcview)
    fi
    local t0=$SECONDS
    {
        echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(rustc --version)"
        for p in "${parts[@]}"; do "part_$p"; done
    } 2>&1 | tee "$OUT/summary.txt"
    say "done in $((SECONDS - t0)) s; results in $OUT"
}

main "$@"
