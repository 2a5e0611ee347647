//! Admission control: ADR-0017's memory formula, and the node's decision to
//! take or refuse a deploy.
//!
//! `total = base_memory + agents × (heap + stack + overhead) + message_buffer`
//!
//! Each agent instance is charged its heap (the smaller of the module's own
//! declared maximum memory and `--agent-memory-max`), the stack
//! (`--agent-stack-max`) and the per-agent overhead (`--agent-overhead`).
//! A deploy is refused when the node would exceed `--memory-budget` or hold
//! more than `--max-agents` instances.

pub use caxton_shards::limits::{AGENTS_MAX, AGENT_OVERHEAD_BYTES, BASE_MEMORY_BYTES};

/// ADR-0017's `MemoryLimits`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    pub base_memory: u64,
    pub agent_heap_size: u64,
    pub agent_stack_size: u64,
    pub per_agent_overhead: u64,
    pub message_buffer_size: u64,
}

impl MemoryLimits {
    pub fn per_agent(&self) -> u64 {
        self.agent_heap_size + self.agent_stack_size + self.per_agent_overhead
    }

    /// ADR-0017: memory a node with `agent_count` agents needs.
    pub fn calculate_required_memory(&self, agent_count: usize) -> u64 {
        self.base_memory + agent_count as u64 * self.per_agent() + self.message_buffer_size
    }

    /// ADR-0017: agents that fit in `available_memory`.
    pub fn max_agents_for_memory(&self, available_memory: u64) -> usize {
        let usable = available_memory.saturating_sub(self.base_memory + self.message_buffer_size);
        (usable / self.per_agent().max(1)) as usize
    }
}

/// The node's running total and its limits.
#[derive(Debug, Clone)]
pub struct Admission {
    pub limits: MemoryLimits,
    pub memory_budget: u64,
    pub max_agents: usize,
    /// Instances deployed, and the heap, stack and overhead charged for them.
    pub agents: usize,
    pub charged: u64,
}

/// Bytes in decimal megabytes or gigabytes, as ADR-0017 counts them.
pub fn mb(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

impl Admission {
    pub fn new(limits: MemoryLimits, memory_budget: u64, max_agents: usize) -> Admission {
        Admission { limits, memory_budget, max_agents, agents: 0, charged: 0 }
    }

    /// What one instance of a module is charged: its heap is the smaller of
    /// its declared maximum and the node's limit.
    pub fn charge_per_instance(&self, declared_memory_max: Option<u64>) -> u64 {
        let heap = declared_memory_max.map_or(self.limits.agent_heap_size, |d| d.min(self.limits.agent_heap_size));
        heap + self.limits.agent_stack_size + self.limits.per_agent_overhead
    }

    /// Takes `instances` instances charged `each`, or says why not.
    pub fn admit(&mut self, name: &str, instances: u32, each: u64) -> Result<(), String> {
        let n = instances as usize;
        if self.agents + n > self.max_agents {
            return Err(format!(
                "deploying {n} instances of {name} would make {} agent instances, over the node's --max-agents of {}; stop agents or raise --max-agents",
                self.agents + n,
                self.max_agents
            ));
        }
        let need = self.limits.calculate_required_memory(0) + self.charged + n as u64 * each;
        if need > self.memory_budget {
            return Err(format!(
                "deploying {n} instances of {name} ({} each: heap, stack and overhead) would need {} (base {} + message buffers {} + {} agent instances), over the node's --memory-budget of {}; fits {} more instances like these. Raise --memory-budget, or lower --agent-memory-max, --agent-stack-max or --agent-overhead",
                mb(each),
                mb(need),
                mb(self.limits.base_memory),
                mb(self.limits.message_buffer_size),
                self.agents + n,
                mb(self.memory_budget),
                self.memory_budget.saturating_sub(self.limits.calculate_required_memory(0) + self.charged) / each.max(1)
            ));
        }
        self.agents += n;
        self.charged += n as u64 * each;
        Ok(())
    }

    /// Gives back what `admit` took.
    pub fn release(&mut self, instances: u32, each: u64) {
        self.agents -= instances as usize;
        self.charged -= instances as u64 * each;
    }
}

/// Total memory of this machine, in bytes (`/proc/meminfo` MemTotal).
pub fn machine_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(8 << 30, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adr() -> MemoryLimits {
        MemoryLimits {
            base_memory: BASE_MEMORY_BYTES,
            agent_heap_size: 10 * 1000 * 1000,
            agent_stack_size: 1000 * 1000,
            per_agent_overhead: AGENT_OVERHEAD_BYTES,
            message_buffer_size: caxton_shards::limits::MESSAGE_BUFFER_BYTES,
        }
    }

    #[test]
    fn the_adr_formula_and_its_inverse_agree() {
        let l = adr();
        assert_eq!(l.calculate_required_memory(0), 600_000_000);
        assert_eq!(l.calculate_required_memory(10), 600_000_000 + 130_000_000);
        for budget in [600_000_000u64, 1 << 30, 24 << 30] {
            let n = l.max_agents_for_memory(budget);
            assert!(l.calculate_required_memory(n) <= budget);
            assert!(l.calculate_required_memory(n + 1) > budget);
        }
        assert_eq!(l.max_agents_for_memory(100), 0);
    }

    #[test]
    fn a_24_gib_machine_admits_about_1800_adr_agents() {
        let n = adr().max_agents_for_memory(24 << 30);
        assert!((1_800..1_990).contains(&n), "{n}");
    }

    #[test]
    fn admission_refuses_with_the_numbers_and_the_setting_to_change() {
        let mut a = Admission::new(adr(), 700_000_000, 10);
        let each = a.charge_per_instance(None);
        assert_eq!(each, 13_000_000);
        a.admit("x", 7, each).unwrap();
        let err = a.admit("y", 1, each).unwrap_err();
        assert!(err.contains("--memory-budget") && err.contains("--agent-memory-max") && err.contains("fits 0 more"), "{err}");
        // A module declaring a 1 MB maximum is charged that.
        let small = a.charge_per_instance(Some(1_000_000));
        assert_eq!(small, 4_000_000);
        a.admit("z", 1, small).unwrap();
        let err = a.admit("w", 3, small).unwrap_err();
        assert!(err.contains("--max-agents"), "{err}");
        a.release(7, each);
        assert_eq!((a.agents, a.charged), (1, small));
    }
}
