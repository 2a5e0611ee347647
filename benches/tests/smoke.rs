//! The benchmarks' small mode, so they cannot rot: every figure is produced,
//! finite, and written out.

#[test]
fn the_suite_runs_in_small_mode_and_writes_every_row() {
    let out = tempfile::tempdir().unwrap();
    let run =
        std::process::Command::new(env!("CARGO_BIN_EXE_caxton-bench")).env("CAXTON_BENCH_SMALL", "1").env("CAXTON_BENCH_OUT", out.path()).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    let rows = summary["rows"].as_array().unwrap();
    assert!(rows.len() >= 30, "{} rows", rows.len());
    for row in rows {
        let ours = row["ours"].as_f64().unwrap_or(f64::NAN);
        assert!(ours.is_finite() && ours > 0.0, "{row}");
        if let Some(b) = row["baseline"].as_object() {
            assert!(b["value"].as_f64().unwrap() > 0.0, "{row}");
        }
    }
    let table = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(table.contains("cross shard, at 100k msg/s handled") && table.contains("deploy-to-ready: PUT") && table.contains("PASS"));
    assert!(table.contains("Tool calls: an agent's MCP call through the node"), "the tool rows need tests/tools/.venv (scripts/setup.sh)");
}

#[test]
fn fuel_calibration_runs_in_small_mode() {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_fuel_calibration")).env("CAXTON_BENCH_SMALL", "1").output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("runaway loop"));
}
