//! `caxton top`: a live view of a running node, redrawn every second from
//! `GET /v1/stats`: one row per shard, or with `--agents` one row per agent
//! (all its instances together), sorted by messages a second, errors or
//! processing p99. Rates are the difference of two samples; latencies are
//! cumulative since the start (per agent: its slowest instance's, from a
//! compact histogram, within 25%). `--output json` prints each frame as one
//! line of JSON, rates included.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{Client, Failure};

/// The agents' order in the per-agent view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    /// Most messages a second first.
    Messages,
    /// Most errors and crashes first (since the start).
    Errors,
    /// Slowest processing p99 first.
    P99,
}

/// What a frame shows.
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub agents: bool,
    pub sort: SortBy,
    pub limit: usize,
    pub json: bool,
}

/// The rows of `now[list]`, each with `messages_per_s`: its
/// `messages_handled` since the row of `before` with the same `key` (0 on a
/// first frame, or for a row `before` did not have).
fn with_rates(now: &Value, before: Option<(&Value, Duration)>, list: &str, key: &str) -> Vec<Value> {
    let rate = |row: &Value| {
        let Some((b, dt)) = before else { return 0.0 };
        let prev = b[list].as_array().into_iter().flatten().find(|r| r[key] == row[key]).and_then(|r| r["messages_handled"].as_f64());
        prev.map_or(0.0, |p| (row["messages_handled"].as_f64().unwrap_or(0.0) - p).max(0.0) / dt.as_secs_f64().max(1e-3))
    };
    now[list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let mut row = row.clone();
            row["messages_per_s"] = json!(rate(&row));
            row
        })
        .collect()
}

/// The frame's rows, rates added, agents sorted and cut to the limit.
fn frame(now: &Value, before: Option<(&Value, Duration)>, view: View) -> Value {
    let mut out = json!({ "resident_bytes": now["resident_bytes"], "shards": with_rates(now, before, "shards", "shard") });
    if view.agents {
        let mut agents = with_rates(now, before, "agents", "name");
        let f = |a: &Value, k: &str| a[k].as_f64().unwrap_or(0.0);
        let key = |a: &Value| match view.sort {
            SortBy::Messages => f(a, "messages_per_s"),
            SortBy::Errors => f(a, "errors") + f(a, "crashes"),
            SortBy::P99 => f(a, "processing_p99_us"),
        };
        agents.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a["name"].as_str().cmp(&b["name"].as_str())));
        agents.truncate(view.limit);
        out["agents"] = json!(agents);
    }
    out
}

/// A duration given in µs, in the unit that suits it (`850µs`, `12.3ms`,
/// `1.20s`), so that columns read at a glance.
pub fn duration(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.1}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

fn render(frame: &Value, view: View) -> String {
    let mut out = String::new();
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    out.push_str(&format!("caxton top — resident {:.1} MiB\n", mib(f(frame, "resident_bytes"))));
    if view.agents {
        let agents = frame["agents"].as_array().cloned().unwrap_or_default();
        // The name column is as wide as the longest name: columns stay aligned.
        let w = agents.iter().map(|a| a["name"].as_str().unwrap_or("?").chars().count()).max().unwrap_or(0).max("agent".len());
        out.push_str(&format!(
            "{:<w$} {:>4} {:>10} {:>9} {:>8} {:>11} {:>11} {:>8}\n",
            "agent", "inst", "msg/s", "errors", "crashes", "proc p50", "proc p99", "queued"
        ));
        for a in &agents {
            out.push_str(&format!(
                "{:<w$} {:>4} {:>10.0} {:>9} {:>8} {:>11} {:>11} {:>8}\n",
                // Numbers, not JSON values: a `Value` ignores the width.
                a["name"].as_str().unwrap_or("?"),
                a["instances"].as_u64().unwrap_or(0),
                f(a, "messages_per_s"),
                a["errors"].as_u64().unwrap_or(0),
                a["crashes"].as_u64().unwrap_or(0),
                duration(f(a, "processing_p50_us")),
                duration(f(a, "processing_p99_us")),
                a["queued_messages"].as_u64().unwrap_or(0)
            ));
        }
        return out;
    }
    out.push_str(&format!(
        "{:>5} {:>10} {:>11} {:>11} {:>11} {:>11} {:>8} {:>7} {:>10}\n",
        "shard", "msg/s", "route p50", "route p99", "proc p50", "proc p99", "queued", "agents", "mem MiB"
    ));
    for s in frame["shards"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:>5} {:>10.0} {:>11} {:>11} {:>11} {:>11} {:>8} {:>7} {:>10.1}\n",
            s["shard"].as_u64().unwrap_or(0),
            f(s, "messages_per_s"),
            duration(f(s, "routing_p50_us")),
            duration(f(s, "routing_p99_us")),
            duration(f(s, "processing_p50_us")),
            duration(f(s, "processing_p99_us")),
            s["queued_messages"].as_u64().unwrap_or(0),
            s["instances"].as_u64().unwrap_or(0),
            mib(f(s, "agent_memory_bytes"))
        ));
    }
    out
}

/// Runs until interrupted; with `frames`, stops after that many refreshes
/// (each after a second, so that rates are known).
pub fn run(client: &Client, frames: Option<u64>, view: View) -> Result<(), Failure> {
    let mut previous: Option<(Value, Instant)> = None;
    let mut shown = 0;
    loop {
        let now = client.stats(view.agents)?;
        let at = Instant::now();
        if previous.is_some() || frames.is_none() {
            let f = frame(&now, previous.as_ref().map(|(v, t)| (v, at - *t)), view);
            if view.json {
                println!("{f}");
            } else {
                if frames.is_none() {
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", render(&f, view));
            }
            shown += 1;
            if frames.is_some_and(|f| shown >= f) {
                return Ok(());
            }
        }
        previous = Some((now, at));
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(handled: &[(&str, u64, u64, f64)]) -> Value {
        json!({
            "resident_bytes": 1,
            "shards": [{ "shard": 0, "messages_handled": handled.iter().map(|h| h.1).sum::<u64>() }],
            "agents": handled.iter().map(|(n, m, e, p99)| json!({ "name": n, "instances": 1, "messages_handled": m, "errors": e, "crashes": 0, "processing_p99_us": p99 })).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn agents_sort_by_rate_errors_or_p99_and_are_cut_to_the_limit() {
        let before = stats(&[("a", 0, 0, 1.0), ("b", 0, 0, 1.0), ("c", 0, 0, 1.0)]);
        let now = stats(&[("a", 10, 5, 900.0), ("b", 300, 0, 2.0), ("c", 20, 1, 50.0)]);
        let names = |sort, limit| {
            let f = frame(&now, Some((&before, Duration::from_secs(2))), View { agents: true, sort, limit, json: true });
            f["agents"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names(SortBy::Messages, 10), ["b", "c", "a"]);
        assert_eq!(names(SortBy::Errors, 10), ["a", "c", "b"]);
        assert_eq!(names(SortBy::P99, 2), ["a", "c"]);
        let f = frame(&now, Some((&before, Duration::from_secs(2))), View { agents: true, sort: SortBy::Messages, limit: 1, json: true });
        assert_eq!(f["agents"][0]["messages_per_s"], json!(150.0), "300 messages in 2 s");
        assert_eq!(f["shards"][0]["messages_per_s"], json!(165.0));
        assert!(render(&f, View { agents: true, sort: SortBy::Messages, limit: 1, json: false }).contains("b "));
    }

    #[test]
    fn durations_take_the_unit_that_suits_them() {
        assert_eq!(duration(850.0), "850.0µs");
        assert_eq!(duration(12_345.0), "12.35ms");
        assert_eq!(duration(1_200_000.0), "1.20s");
    }

    #[test]
    fn columns_stay_aligned_whatever_the_names_and_units() {
        let now = stats(&[("a-rather-long-agent-name-of-forty-chars", 10, 0, 12_345.0), ("b", 3, 0, 5.0)]);
        let f = frame(&now, None, View { agents: true, sort: SortBy::Messages, limit: 5, json: true });
        let table = render(&f, View { agents: true, sort: SortBy::Messages, limit: 5, json: false });
        let rows: Vec<&str> = table.lines().skip(1).collect();
        let widths: Vec<usize> = rows.iter().map(|r| r.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "every row as wide as the header:\n{table}");
        // The p99 column ends at the same place in every row.
        let end = |row: &str, cell: &str| row.find(cell).map(|i| row[..i].chars().count() + cell.chars().count());
        assert_eq!(end(rows[0], "proc p99"), end(rows[1], "12.35ms").or(end(rows[2], "12.35ms")), "{table}");
    }

    #[test]
    fn a_first_frame_has_no_rates_and_a_new_agent_starts_from_zero() {
        let now = stats(&[("a", 10, 0, 1.0)]);
        let f = frame(&now, None, View { agents: true, sort: SortBy::Messages, limit: 5, json: true });
        assert_eq!(f["agents"][0]["messages_per_s"], json!(0.0));
        let before = stats(&[]);
        let f = frame(&now, Some((&before, Duration::from_secs(1))), View { agents: true, sort: SortBy::Messages, limit: 5, json: true });
        assert_eq!(f["agents"][0]["messages_per_s"], json!(0.0), "no earlier sample of it");
    }
}
