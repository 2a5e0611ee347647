//! docs/LOADTEST.md, written by the load test from the runs it just made,
//! so that a report can be neither chosen nor typed by hand.
//!
//! Rules:
//! 1. Every run is in it, failed ones included, each with the host's load
//!    during it (`host_load`): a failure blamed on the host rests on a
//!    number.
//! 2. Per scenario, its runs are summed up: how many passed, and the min,
//!    median and max of their p99.
//! 3. The prose (how the load test works, the durations) is
//!    `loadtest/NOTES.md`, kept by hand; the results below it are not.
//! 4. The plots are those of each scenario's last run, copied beside the
//!    doc (`docs/loadtest/`).

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::host_load::HostLoad;

/// One run of one scenario.
pub struct RunRecord {
    pub scenario: String,
    /// 1, 2, ... within its scenario.
    pub run: usize,
    /// `report::summary`'s JSON.
    pub summary: Value,
    pub load: HostLoad,
}

fn p99(r: &RunRecord) -> f64 {
    r.summary["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN)
}

fn passed(r: &RunRecord) -> bool {
    r.summary["pass"].as_bool().unwrap_or(false)
}

/// The median of `xs` (the lower middle for an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[(xs.len() - 1) / 2]
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The verdicts of a run's criteria, as the table shows them.
fn criteria(r: &RunRecord) -> String {
    r.summary["criteria"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let verdict = if c["pass"].as_bool() == Some(true) { "PASS" } else { "**FAIL**" };
                    format!(
                        "{} {} ({}) {verdict}",
                        c["name"].as_str().unwrap_or("?"),
                        c["achieved"].as_str().unwrap_or("?"),
                        c["target"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// The p99 criterion of a scenario, if it has one.
fn p99_target(r: &RunRecord) -> String {
    r.summary["criteria"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == "p99 latency")).and_then(|c| c["target"].as_str()).unwrap_or("—").to_string()
}

/// The results part of the doc (rules 1 and 2), in Markdown.
pub fn results(runs: &[RunRecord], header: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Results of the last run\n\n{header}\n");
    let mut scenarios: Vec<&str> = Vec::new();
    for r in runs {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    s += "### Per scenario, over its runs\n\n";
    s += "| scenario | runs | passed | p99 min | p99 median | p99 max | p99 criterion | p50 median | others' CPU, median (cores) | steal, median |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|\n";
    for name in &scenarios {
        let of: Vec<&RunRecord> = runs.iter().filter(|r| r.scenario == *name).collect();
        let p99s: Vec<f64> = of.iter().map(|r| p99(r)).collect();
        let p50 = median(of.iter().map(|r| r.summary["latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN)).collect());
        let _ = writeln!(
            s,
            "| {name} | {} | {} of {} | {} | {} | {} | {} | {} | {:.2} | {:.1}% |",
            of.len(),
            of.iter().filter(|r| passed(r)).count(),
            of.len(),
            ms(p99s.iter().copied().fold(f64::INFINITY, f64::min)),
            ms(median(p99s.clone())),
            ms(p99s.iter().copied().fold(0.0, f64::max)),
            p99_target(of[0]),
            ms(p50),
            median(of.iter().map(|r| r.load.others_cores).collect()),
            median(of.iter().map(|r| r.load.steal_percent).collect()),
        );
    }
    s += "\n### Every run, failed ones kept\n\n";
    s += "The host's load during each run, from `/proc/stat` and `/proc/loadavg`: the cores the node, the generator and everything else kept busy (CPU-seconds over the run's seconds), the share of time the hypervisor stole, and the 1-minute load average at the end.\n\n";
    s += "| scenario | run | sent | lost | dup. | errors | p50 | p99 | max | criteria | node | generator | others | steal | load avg |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in runs {
        let v = &r.summary;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let l = &v["latency_ms"];
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1}% | {:.2} |",
            r.scenario,
            r.run,
            thousands(n("sent")),
            n("lost"),
            n("duplicated"),
            n("errors"),
            ms(l["p50"].as_f64().unwrap_or(f64::NAN)),
            ms(l["p99"].as_f64().unwrap_or(f64::NAN)),
            ms(l["max"].as_f64().unwrap_or(f64::NAN)),
            criteria(r),
            r.load.node_cores,
            r.load.generator_cores,
            r.load.others_cores,
            r.load.steal_percent,
            r.load.loadavg_1m,
        );
    }
    s += "\n### Plots of each scenario's last run\n";
    for name in &scenarios {
        let _ = write!(s, "\n#### {name}\n![{name} latency](loadtest/{name}-latency.svg)\n![{name} rate](loadtest/{name}-rate.svg)\n");
    }
    s
}

/// Writes the doc at `doc` (rule 3: `notes` first), copying each
/// scenario's last plots from `out/<scenario>/` (rule 4).
pub fn write(doc: &Path, notes: &str, runs: &[RunRecord], header: &str, out: &Path) -> Result<(), String> {
    let plots = doc.parent().ok_or("the doc has a folder")?.join("loadtest");
    std::fs::create_dir_all(&plots).map_err(|e| format!("{}: {e}", plots.display()))?;
    for r in runs {
        for (from, to) in [("latency_percentiles.svg", "latency"), ("rate_over_time.svg", "rate")] {
            let src = out.join(&r.scenario).join(from);
            if src.exists() {
                std::fs::copy(&src, plots.join(format!("{}-{to}.svg", r.scenario))).map_err(|e| format!("{}: {e}", src.display()))?;
            }
        }
    }
    let text = format!("{}\n{}", notes.trim_end(), results(runs, header));
    std::fs::write(doc, text).map_err(|e| format!("{}: {e}", doc.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(scenario: &str, run: usize, p99: f64, pass: bool) -> RunRecord {
        RunRecord {
            scenario: scenario.into(),
            run,
            summary: json!({
                "sent": 1000, "lost": 0, "duplicated": 0, "errors": 0, "pass": pass,
                "latency_ms": {"p50": 0.5, "p99": p99, "max": p99 * 2.0},
                "criteria": [{"name": "p99 latency", "target": "≤ 50.0 ms", "achieved": format!("{p99:.2} ms"), "pass": pass}],
            }),
            load: HostLoad { others_cores: run as f64 * 0.1, ..HostLoad::default() },
        }
    }

    #[test]
    fn every_run_is_kept_and_each_scenario_summed_up() {
        let runs = vec![run("peak_load", 1, 30.0, true), run("peak_load", 2, 70.0, false), run("peak_load", 3, 40.0, true), run("steady_state", 1, 2.0, true)];
        let md = results(&runs, "header");
        assert!(md.contains("| peak_load | 3 | 2 of 3 | 30.0 ms | 40.0 ms | 70.0 ms | ≤ 50.0 ms |"), "{md}");
        assert!(md.contains("| steady_state | 1 | 1 of 1 |"), "{md}");
        assert!(md.contains("70.00 ms (≤ 50.0 ms) **FAIL**"), "the failed run is kept: {md}");
        assert_eq!(md.matches("| peak_load | ").count(), 4, "three runs and the summary row");
        assert_eq!(thousands(4_500_000), "4,500,000");
    }
}
