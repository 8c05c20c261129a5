#!/usr/bin/env bash
# The test command: starts the local stack (installing what is missing),
# runs every test including the end-to-end ones, and stops the stack again
# if this script started it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The stack runs the debug build here: the test build reuses its compiled
# dependencies, where a release build would compile everything a second time.
export CDCVIEW_PROFILE=${CDCVIEW_PROFILE:-debug}
# Frequent state snapshots, so the crash test's kills land between snapshots
# and a restart exercises both halves: the snapshot and the topics after it.
export CDCVIEW_SNAPSHOT_EVERY_SECS=${CDCVIEW_SNAPSHOT_EVERY_SECS:-1}
# The end-to-end tests also check a view the SQL engine maintains.
export CDCVIEW_VIEWS=${CDCVIEW_VIEWS:-$ROOT/views,$ROOT/views/examples}
# The tests commit changes at once and time how fast they arrive.
export CDCVIEW_UP_WAITS_FOR_DEBEZIUM=yes
. "$ROOT/scripts/lib.sh"

was_running=no
pid_alive cdcview && was_running=yes
"$ROOT/start.sh" up
if [ "$was_running" = no ] && [ "${CDCVIEW_KEEP_STACK:-no}" != yes ]; then
    trap '"$ROOT/start.sh" stop' EXIT
fi

command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
cd "$ROOT"
# Formatting and lints first; a failure fails the run, after the tests.
say "checking formatting (cargo fmt --all --check) and lints (cargo clippy --workspace --all-targets -D warnings)"
lint=0
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --all --check || lint=$?
cargo clippy --locked --workspace --all-targets -- -D warnings || lint=$?
say "running the tests (unit, oracle, end to end)"
# End-to-end tests are #[ignore]d for plain `cargo test`; here the stack runs.
# The fault tests restart parts of the stack, so they run alone, first;
# then everything else; then the backlog test.
# The fault tests append one line each to this report, printed at the end.
report="$ROOT/target/tmp/fault-report.txt"
rm -f "$report"
status=0
cargo nextest run --locked --workspace --run-ignored all --no-fail-fast --test-threads 1 -E 'test(restart)' "$@" || status=$?
# The reference's order_summary, posted while running, makes every change
# cost the pipeline more: it runs alone, after the others.
alone='test(=the_references_order_summary_posted_unchanged_equals_mysql)'
cargo nextest run --locked --workspace --run-ignored all --no-fail-fast -E "not test(restart) and not test(backlog) and not $alone" "$@" || status=$?
cargo nextest run --locked --workspace --run-ignored all --no-fail-fast -E "$alone" "$@" || status=$?
# Last, alone: the backlog test grows the shop by some 16,000 users.
cargo nextest run --locked --workspace --run-ignored all --no-fail-fast -E 'test(backlog)' "$@" || status=$?
if [ -s "$report" ]; then
    say "faults: how long until the view and the PostgreSQL table were exact again"
    sed 's/^/    /' "$report"
fi
if [ "$lint" != 0 ]; then
    printf '\033[31merror:\033[0m cargo fmt --check or cargo clippy failed (see above)\n' >&2
    [ "$status" != 0 ] || status=$lint
fi
exit "$status"
