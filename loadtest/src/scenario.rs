//! The scenario file and the send schedule it implies.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub scenarios: BTreeMap<String, Scenario>,
    pub smoke_agents: usize,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What is sent: `hop` (ADR-0017's four; the default),
    /// `contract_net` (the fifth; `agents` are then the bidders) or
    /// `conversations` (hops, and conversations held open: `hold`,
    /// `hold_every`).
    #[serde(default)]
    pub workload: WorkloadKind,
    /// hop: the agent (`agents/<agent>.wat`): `hop` (default), `hop_state`
    /// (writes state on every message), `hop_relay` (for two nodes).
    #[serde(default)]
    pub agent: Option<String>,
    /// Nodes: 1 (default), or 2 in a cluster, agents split between them.
    #[serde(default)]
    pub nodes: Option<usize>,
    pub agents: usize,
    /// contract_net: rounds started a second, managers running them,
    /// bidders invited to each, and each round's deadline for proposals.
    #[serde(default)]
    pub rounds_per_second: Option<f64>,
    #[serde(default)]
    pub managers: Option<usize>,
    #[serde(default)]
    pub bidders_per_round: Option<usize>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub round_deadline: Option<Duration>,
    #[serde(default)]
    pub messages_per_second: Option<f64>,
    /// conversations: how long each held conversation stays open, and
    /// which requests hold one (every `hold_every`-th).
    #[serde(default, deserialize_with = "duration_opt")]
    pub hold: Option<Duration>,
    #[serde(default)]
    pub hold_every: Option<u64>,
    /// keyed_zipf: distinct keys of the one keyed agent, and the exponent
    /// of their Zipf distribution.
    #[serde(default)]
    pub keys: Option<u64>,
    #[serde(default)]
    pub zipf_s: Option<f64>,
    #[serde(default)]
    pub baseline_mps: Option<f64>,
    #[serde(default)]
    pub burst_mps: Option<f64>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub burst_duration: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub burst_every: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub duration: Duration,
    #[serde(deserialize_with = "duration")]
    pub quick: Duration,
    #[serde(deserialize_with = "duration")]
    pub smoke: Duration,
    pub success_criteria: Criteria,
}

#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    #[default]
    Hop,
    ContractNet,
    Conversations,
    KeyedZipf,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    /// Most answers that may be wrong (a wrong winner, a failure).
    #[serde(default)]
    pub wrong_answers: Option<u64>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub p99_latency: Option<Duration>,
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub memory_growth: Option<f64>,
    #[serde(default)]
    pub message_loss: Option<u64>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub recovery_time: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    pub recovered_p99: Option<Duration>,
}

/// Parses `10ms`, `60s`, `15m`, `1h`, `24h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("{text:?} is not a duration"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in duration {text:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn duration_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?.map(|s| parse_duration(&s)).transpose().map_err(serde::de::Error::custom)
}

pub fn load(path: &std::path::Path) -> Result<File, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A piecewise-constant send rate: (start, end, messages per second).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub segments: Vec<(Duration, Duration, f64)>,
    /// Each burst's start and end (for recovery times).
    pub bursts: Vec<(Duration, Duration)>,
}

impl Schedule {
    /// The schedule of `s` over `length`: a constant rate, or bursts on a
    /// baseline (at least one, placed after a quarter of the run).
    pub fn of(s: &Scenario, length: Duration) -> Schedule {
        if let (Some(base), Some(burst), Some(burst_len)) = (s.baseline_mps, s.burst_mps, s.burst_duration) {
            let burst_len = burst_len.min(length / 4);
            let every = s.burst_every.unwrap_or(length).max(burst_len * 2);
            let mut segments = Vec::new();
            let mut bursts = Vec::new();
            let mut t = (length / 4).min(every / 2);
            segments.push((Duration::ZERO, t, base));
            while t + burst_len + length / 4 <= length || bursts.is_empty() {
                segments.push((t, t + burst_len, burst));
                bursts.push((t, t + burst_len));
                let next = (t + every).min(length);
                segments.push((t + burst_len, next, base));
                t = next;
                if t >= length {
                    break;
                }
            }
            if t < length {
                segments.push((t, length, base));
            }
            Schedule { segments, bursts }
        } else {
            let rate = s.messages_per_second.or(s.rounds_per_second).expect("a rate");
            Schedule { segments: vec![(Duration::ZERO, length, rate)], bursts: Vec::new() }
        }
    }

    pub fn length(&self) -> Duration {
        self.segments.last().map_or(Duration::ZERO, |s| s.1)
    }

    /// Messages due by `t` since the start.
    pub fn due(&self, t: Duration) -> u64 {
        self.segments.iter().map(|&(a, b, r)| (t.min(b).saturating_sub(a)).as_secs_f64() * r).sum::<f64>() as u64
    }

    /// When message `k` (from 0) is scheduled.
    pub fn time_of(&self, k: u64) -> Duration {
        let mut before = 0.0;
        for &(a, b, r) in &self.segments {
            let here = (b - a).as_secs_f64() * r;
            if (k as f64) < before + here {
                return a + Duration::from_secs_f64((k as f64 - before) / r);
            }
            before += here;
        }
        self.length()
    }

    pub fn rate_at(&self, t: Duration) -> f64 {
        self.segments.iter().find(|s| t >= s.0 && t < s.1).map_or(0.0, |s| s.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_scenarios_parse_with_the_adr_numbers() {
        let f = load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios.yaml")).unwrap();
        let peak = &f.scenarios["peak_load"];
        assert_eq!((peak.agents, peak.messages_per_second), (10_000, Some(100_000.0)));
        assert_eq!(peak.duration, Duration::from_secs(15 * 60));
        assert_eq!(f.scenarios["sustained_load"].success_criteria.memory_growth, Some(0.10));
        assert_eq!(f.scenarios["steady_state"].success_criteria.p99_latency, Some(Duration::from_millis(10)));
        assert_eq!(f.scenarios.len(), 9, "ADR-0017's four, contract_net, steady_state with state and over two nodes, active conversations, keyed_zipf");
        let k = &f.scenarios["keyed_zipf"];
        assert_eq!(
            (k.workload, k.keys, k.zipf_s, k.messages_per_second),
            (WorkloadKind::KeyedZipf, Some(1_000_000), Some(1.0), Some(50_000.0)),
            "issue 27's numbers"
        );
        assert_eq!(f.scenarios["steady_state_two_nodes"].nodes, Some(2));
        assert_eq!(f.scenarios["steady_state_stateful"].agent.as_deref(), Some("hop_state"));
        let cn = &f.scenarios["contract_net"];
        assert_eq!((cn.workload, cn.rounds_per_second, cn.bidders_per_round), (WorkloadKind::ContractNet, Some(1000.0), Some(10)));
        // ADR-0017's 50,000 active conversations: opened a second × held.
        let ac = &f.scenarios["active_conversations"];
        let opened_per_s = ac.messages_per_second.unwrap() / ac.hold_every.unwrap() as f64;
        assert_eq!((ac.workload, opened_per_s * ac.hold.unwrap().as_secs_f64()), (WorkloadKind::Conversations, 50_000.0));
    }

    #[test]
    fn a_schedule_counts_and_places_messages_consistently() {
        let f = load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios.yaml")).unwrap();
        let burst = Schedule::of(&f.scenarios["burst_traffic"], Duration::from_secs(40));
        assert_eq!(burst.bursts, vec![(Duration::from_secs(10), Duration::from_secs(20))]);
        assert_eq!(burst.due(Duration::from_secs(40)), 10_000 + 1_000_000 + 20_000);
        assert_eq!(burst.rate_at(Duration::from_secs(15)), 100_000.0);
        for k in [0u64, 9_999, 10_000, 500_000, 1_029_999] {
            let t = burst.time_of(k);
            assert!(burst.due(t) <= k && burst.due(t + Duration::from_micros(20)) >= k, "{k} at {t:?}");
        }
        let steady = Schedule::of(&f.scenarios["steady_state"], Duration::from_secs(60));
        assert_eq!(steady.due(Duration::from_secs(60)), 600_000);
        assert!(steady.bursts.is_empty());
    }
}
