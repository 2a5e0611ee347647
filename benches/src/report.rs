//! The result table: ours, a baseline from the same run and the ratio, the
//! ADR-0017 target (pass/fail) and the project's stricter goal.

use std::fmt::Write;

use serde_json::{json, Value};

#[derive(Clone, Copy, Debug)]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Clone, Debug)]
pub struct Row {
    pub group: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub better: Better,
    /// Median over runs.
    pub ours: f64,
    pub baseline: Option<(String, f64)>,
    pub adr: Option<f64>,
    pub goal: Option<f64>,
}

impl Row {
    fn meets(&self, target: f64) -> bool {
        match self.better {
            Better::Lower => self.ours <= target,
            Better::Higher => self.ours >= target,
        }
    }

    pub fn adr_pass(&self) -> Option<bool> {
        self.adr.map(|t| self.meets(t))
    }

    pub fn goal_met(&self) -> Option<bool> {
        self.goal.map(|t| self.meets(t))
    }

    pub fn ratio(&self) -> Option<f64> {
        self.baseline.as_ref().map(|(_, b)| self.ours / b)
    }
}

fn fmt(v: f64) -> String {
    if v >= 100_000.0 {
        format!("{:.0}", v).as_bytes().rchunks(3).rev().map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(",")
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn bound(better: Better, v: f64) -> String {
    match better {
        Better::Lower => format!("≤ {}", fmt(v)),
        Better::Higher => format!("≥ {}", fmt(v)),
    }
}

fn yes_no(v: Option<bool>, yes: &str, no: &str) -> String {
    v.map_or("—".to_string(), |b| if b { yes.to_string() } else { no.to_string() })
}

/// The table in Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut group = "";
    for r in rows {
        if r.group != group {
            group = r.group;
            let _ = writeln!(out, "\n### {group}\n");
            let _ = writeln!(out, "| measurement | unit | ours | baseline (same run) | ratio | ADR-0017 | pass | our goal | met |");
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        }
        let baseline = r.baseline.as_ref().map_or("—".into(), |(n, v)| format!("{}: {}", n, fmt(*v)));
        let ratio = r.ratio().map_or("—".into(), |x| format!("{x:.2}×"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.unit,
            fmt(r.ours),
            baseline,
            ratio,
            r.adr.map_or("—".into(), |t| bound(r.better, t)),
            yes_no(r.adr_pass(), "PASS", "FAIL"),
            r.goal.map_or("—".into(), |t| bound(r.better, t)),
            yes_no(r.goal_met(), "yes", "no"),
        );
    }
    out
}

pub fn json(rows: &[Row], machine: &Value) -> Value {
    json!({
        "machine": machine,
        "rows": rows.iter().map(|r| json!({
            "group": r.group, "name": r.name, "unit": r.unit, "ours": r.ours,
            "baseline": r.baseline.as_ref().map(|(n, v)| json!({"name": n, "value": v})),
            "ratio": r.ratio(), "adr_target": r.adr, "adr_pass": r.adr_pass(), "goal": r.goal, "goal_met": r.goal_met(),
        })).collect::<Vec<_>>(),
    })
}
