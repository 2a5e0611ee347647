//! A scenario's verdict: criteria, the table, `summary.json`, the HDR
//! interval log and the two plots.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2Serializer;
use plotters::prelude::*;
use serde_json::{json, Value};

use crate::run::{Outcome, WINDOW};
use crate::scenario::{Criteria, Schedule};

pub struct Check {
    pub name: String,
    pub target: String,
    pub achieved: String,
    pub pass: bool,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Memory growth: the median of the last fifth of the samples over the
/// median of the first fifth (after a 3 s warm-up).
pub fn memory_growth(samples: &[(f64, f64)]) -> Option<f64> {
    memory_ends(samples).map(|(first, last)| (last - first) / first)
}

/// The medians of the first and last fifths of the samples (after warm-up).
pub fn memory_ends(samples: &[(f64, f64)]) -> Option<(f64, f64)> {
    let s: Vec<f64> = samples.iter().filter(|(t, _)| *t >= 3.0).map(|(_, r)| *r).collect();
    if s.len() < 5 {
        return None;
    }
    let fifth = (s.len() / 5).max(1);
    let med = |xs: &[f64]| {
        let mut v = xs.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    Some((med(&s[..fifth]), med(&s[s.len() - fifth..])))
}

/// Time from each burst's end until windowed p99 stays within `p99`.
pub fn recovery(outcome: &Outcome, schedule: &Schedule, p99: Duration) -> Option<Duration> {
    let mut worst: Option<Duration> = None;
    for (i, (_, end)) in schedule.bursts.iter().enumerate() {
        let next_burst = schedule.bursts.get(i + 1).map_or(schedule.length(), |b| b.0);
        let first = (end.as_nanos() / WINDOW.as_nanos()) as usize;
        let last = ((next_burst.as_nanos() / WINDOW.as_nanos()) as usize).min(outcome.windows.len());
        let ok = |w: &crate::run::Window| w.latency.is_empty() || w.latency.value_at_quantile(0.99) <= p99.as_nanos() as u64;
        // The first window from which every later one (until the next burst) is within p99.
        let mut from = last;
        for w in (first..last).rev() {
            if ok(&outcome.windows[w]) {
                from = w;
            } else {
                break;
            }
        }
        let took = (WINDOW * from as u32).saturating_sub(*end);
        let took = if from >= last { next_burst.saturating_sub(*end) } else { took };
        worst = Some(worst.map_or(took, |w| w.max(took)));
    }
    worst
}

pub fn checks(o: &Outcome, c: &Criteria, schedule: &Schedule) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(p99) = c.p99_latency {
        let got = o.latency.value_at_quantile(0.99);
        out.push(Check {
            name: "p99 latency".into(),
            target: format!("≤ {:.1} ms", p99.as_secs_f64() * 1e3),
            achieved: format!("{:.2} ms", ms(got)),
            pass: got <= p99.as_nanos() as u64,
        });
    }
    let failed = o.errors + o.lost + o.duplicated;
    let rate = failed as f64 / o.sent.max(1) as f64;
    if let Some(max) = c.error_rate {
        out.push(Check {
            name: "error rate".into(),
            target: format!("< {:.3}%", max * 100.0),
            achieved: format!("{:.4}% ({failed} of {})", rate * 100.0, o.sent),
            pass: rate < max,
        });
    }
    if let Some(max) = c.wrong_answers {
        out.push(Check {
            name: "wrong answers".into(),
            target: format!("≤ {max}"),
            achieved: match o.first_errors.first() {
                Some(first) => format!("{} (first: {first})", o.errors),
                None => format!("{}", o.errors),
            },
            pass: o.errors <= max,
        });
    }
    if let Some(max) = c.memory_growth {
        let g = memory_growth(&o.memory);
        out.push(Check {
            name: "memory growth".into(),
            target: format!("< {:.0}%", max * 100.0),
            achieved: g.map_or("too few samples".into(), |g| format!("{:+.1}%", g * 100.0)),
            pass: g.is_some_and(|g| g < max),
        });
    }
    if let Some(max) = c.message_loss {
        out.push(Check {
            name: "message loss".into(),
            target: format!("{max}"),
            achieved: format!("{} lost, {} duplicated", o.lost, o.duplicated),
            pass: o.lost + o.duplicated <= max,
        });
    }
    if let (Some(max), Some(p99)) = (c.recovery_time, c.recovered_p99) {
        let r = recovery(o, schedule, p99);
        out.push(Check {
            name: "recovery time".into(),
            target: format!("< {:.1} s (p99 ≤ {:.0} ms)", max.as_secs_f64(), p99.as_secs_f64() * 1e3),
            achieved: r.map_or("no burst".into(), |r| format!("{:.2} s", r.as_secs_f64())),
            pass: r.is_some_and(|r| r < max),
        });
    }
    out
}

/// `unit` names what is sent and answered ("msg", or "rounds").
pub fn table(name: &str, o: &Outcome, target_rate: f64, checks: &[Check], settings: &str, unit: &str) -> String {
    let l = &o.latency;
    let q = |x: f64| if l.is_empty() { 0.0 } else { ms(l.value_at_quantile(x)) };
    let send_s = o.windows.iter().filter(|w| w.sent > 0).count() as f64 * WINDOW.as_secs_f64();
    let mut s = format!("\n== {name} ==\nnode: {settings}\n");
    let peak = o.windows.iter().map(|w| w.answered).max().unwrap_or(0) as f64 / WINDOW.as_secs_f64();
    s += &format!(
        "rate      target {:.0} {unit}/s; sent {:.0} {unit}/s and answered {:.0} {unit}/s on average, answered {:.0} {unit}/s in the busiest 250 ms\n",
        target_rate,
        o.sent as f64 / send_s.max(1e-9),
        o.answered as f64 / send_s.max(1e-9),
        peak
    );
    s += &format!(
        "latency   p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (from scheduled send)\n",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        if l.is_empty() { 0.0 } else { ms(l.max()) }
    );
    s += &format!("{unit:<9} sent {}  answered {}  errors {}  lost {}  duplicated {}\n", o.sent, o.answered, o.errors, o.lost, o.duplicated);
    if let Some((first, last)) = memory_ends(&o.memory) {
        s += &format!(
            "memory    {:.1} MiB → {:.1} MiB resident ({:+.1}%; medians of the first and last fifth of the run)\n",
            first / 1048576.0,
            last / 1048576.0,
            (last - first) / first * 100.0
        );
    }
    s += &format!("generator {:.1} CPU-seconds in {:.1} s, on the same cores as the node's shards\n", o.generator_cpu_s, o.elapsed.as_secs_f64());
    for c in checks {
        s += &format!("  {:<5} {:<14} target {:<28} achieved {}\n", if c.pass { "PASS" } else { "FAIL" }, c.name, c.target, c.achieved);
    }
    s
}

pub fn summary(name: &str, o: &Outcome, target_rate: f64, checks: &[Check], settings: &str, mode: &str, agents: usize) -> Value {
    let q = |x: f64| if o.latency.is_empty() { 0.0 } else { ms(o.latency.value_at_quantile(x)) };
    json!({
        "scenario": name, "mode": mode, "agents": agents, "node_settings": settings,
        "target_rate": target_rate,
        "sent": o.sent, "answered": o.answered, "errors": o.errors, "lost": o.lost, "duplicated": o.duplicated,
        "latency_ms": { "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999), "max": if o.latency.is_empty() { 0.0 } else { ms(o.latency.max()) } },
        "memory_growth": memory_growth(&o.memory),
        "memory_samples": o.memory,
        "generator_cpu_seconds": o.generator_cpu_s,
        "windows": o.windows.iter().map(|w| json!({"sent": w.sent, "answered": w.answered, "p99_ms": if w.latency.is_empty() { Value::Null } else { json!(ms(w.latency.value_at_quantile(0.99))) }})).collect::<Vec<_>>(),
        "criteria": checks.iter().map(|c| json!({"name": c.name, "target": c.target, "achieved": c.achieved, "pass": c.pass})).collect::<Vec<_>>(),
        "pass": checks.iter().all(|c| c.pass),
    })
}

pub fn hdr_log(path: &Path, o: &Outcome) -> Result<(), String> {
    let mut file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut serializer = V2Serializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("caxton load test: latency from scheduled send, nanoseconds, one histogram per window")
        .with_max_value_divisor(1e6)
        .begin_log_with(&mut file, &mut serializer)
        .map_err(|e| e.to_string())?;
    for (i, w) in o.windows.iter().enumerate() {
        if !w.latency.is_empty() {
            log.write_histogram(&w.latency, WINDOW * i as u32, WINDOW, Tag::new("latency")).map_err(|e| format!("{e:?}"))?;
        }
    }
    Ok(())
}

pub fn plots(dir: &Path, name: &str, o: &Outcome, p99_target: Option<Duration>) -> Result<(), Box<dyn std::error::Error>> {
    // Latency by percentile, on a "nines" axis.
    let path = dir.join("latency_percentiles.svg");
    let root = SVGBackend::new(&path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let nines: Vec<(f64, f64)> = (0..=500)
        .map(|i| i as f64 / 100.0)
        .map(|x| (x, 1.0 - 10f64.powf(-x)))
        .filter(|(_, q)| *q < 1.0)
        .map(|(x, q)| (x, if o.latency.is_empty() { 0.0 } else { ms(o.latency.value_at_quantile(q)) }))
        .collect();
    let ymax = nines.iter().map(|p| p.1).fold(p99_target.map_or(1.0, |t| t.as_secs_f64() * 1e3 * 1.2), f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{name}: latency by percentile (from scheduled send)"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..5f64, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{}%", 100.0 - 100.0 * 10f64.powf(-*x)))
        .x_labels(6)
        .draw()?;
    chart.draw_series(LineSeries::new(nines, &BLUE))?.label("latency").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if let Some(t) = p99_target {
        let t = t.as_secs_f64() * 1e3;
        chart
            .draw_series(LineSeries::new(vec![(0.0, t), (5.0, t)], &RED))?
            .label("p99 criterion")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw()?;
    root.present()?;

    // Rates and windowed p99 over time.
    let path = dir.join("rate_over_time.svg");
    let root = SVGBackend::new(&path, (900, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(380);
    let per_s = 1.0 / WINDOW.as_secs_f64();
    let last = o.windows.iter().rposition(|w| w.sent > 0 || w.answered > 0).unwrap_or(0) + 1;
    let t = |i: usize| i as f64 * WINDOW.as_secs_f64();
    let rmax = o.windows[..last].iter().map(|w| w.sent.max(w.answered) as f64 * per_s).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("{name}: rate over time"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..t(last), 0f64..rmax)?;
    chart.configure_mesh().x_desc("time (s)").y_desc("msg/s").draw()?;
    chart
        .draw_series(LineSeries::new(o.windows[..last].iter().enumerate().map(|(i, w)| (t(i), w.sent as f64 * per_s)), &BLUE))?
        .label("sent (by scheduled time)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(o.windows[..last].iter().enumerate().map(|(i, w)| (t(i), w.answered as f64 * per_s)), &GREEN))?
        .label("answered (by scheduled time)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw()?;
    let p99s: Vec<(f64, f64)> =
        o.windows[..last].iter().enumerate().filter(|(_, w)| !w.latency.is_empty()).map(|(i, w)| (t(i), ms(w.latency.value_at_quantile(0.99)))).collect();
    let pmax = p99s.iter().map(|p| p.1).fold(p99_target.map_or(1.0, |d| d.as_secs_f64() * 1e3 * 1.2), f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&bottom).margin(12).x_label_area_size(35).y_label_area_size(70).build_cartesian_2d(0f64..t(last), 0f64..pmax)?;
    chart.configure_mesh().x_desc("time (s)").y_desc("p99 per window (ms)").draw()?;
    chart
        .draw_series(LineSeries::new(p99s, &MAGENTA))?
        .label("p99 of each 250 ms window")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    if let Some(d) = p99_target {
        let d = d.as_secs_f64() * 1e3;
        chart
            .draw_series(LineSeries::new(vec![(0.0, d), (t(last), d)], &RED))?
            .label("p99 criterion")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
