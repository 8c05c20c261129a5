//! `cdcview bench engine --state-memory`, through the real binary: the state
//! memory it reports is the engine's (below the process's peak, which also
//! counts the benchmark's own buffers) and grows with the rows it holds.

use std::process::Command;

/// The engine's state and the process's peak, in MiB, for a run at `scale`
/// times a small generated shop.
fn state_and_peak(engine: &str, scale: u64) -> (u64, u64) {
    let n = |x: u64| (x * scale).to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_cdcview"))
        // `--engine sql` reads views/shop.sql.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bench", "engine", "--engine", engine, "--users", &n(10_000), "--orders", &n(20_000), "--items", &n(50_000)])
        .args(["--events", &n(20_000), "--changes", "5000", "--state-memory"])
        .output()
        .unwrap();
    assert!(out.status.success(), "bench engine --engine {engine} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mib = |prefix: &str| -> u64 {
        let line = text.lines().find_map(|l| l.strip_prefix(prefix));
        line.and_then(|rest| rest.split_whitespace().next()?.parse().ok()).unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"))
    };
    (mib("engine state: "), mib("peak resident memory: "))
}

#[test]
fn the_state_reported_is_the_engines_and_grows_with_its_rows() {
    for engine in ["hand", "sql"] {
        let (small, peak) = state_and_peak(engine, 1);
        assert!(small > 0 && small < peak, "{engine}: state {small} MiB, peak {peak} MiB");
        // Three times the rows: the state grows by at least half (a share
        // of it does not grow with the rows: the indexes' first sizes, the
        // sources' dictionaries of shared texts, allocator pages; at half
        // these sizes that share hid the growth of the SQL engine's state).
        let (large, _) = state_and_peak(engine, 3);
        assert!(2 * large > 3 * small, "{engine}: {small} MiB, then {large} MiB with three times the rows");
    }
}
