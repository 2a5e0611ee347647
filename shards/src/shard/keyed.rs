//! Keyed agents on a shard: giving new activations their slots,
//! passivating idle ones and the least recently used past the cap, waking
//! passive keys whose timers are due, and deleting a key.
//!
//! Rules (the router's `keyed` rules are the first four):
//! 5. A new activation's slot is made before the next message is taken
//!    from the run queue; its instance is made, and `caxton_init` run, on
//!    its first delivery (`handler`), like an instance restarted after a
//!    crash. A failure to start is a failure notice (`crashed_handler`),
//!    counted, and the activation's restart policy applies.
//! 6. Past the shard's share of `--keyed-active-max`, the end of each
//!    tick passivates the least recently used activations that hold
//!    nothing until the shard is back at its share. Within a tick the
//!    shard may go over by the activations that tick handles (at most
//!    `TICK_MESSAGES_MAX`); an activation with mail is never dropped, so
//!    when every one has mail the shard stays over until they are handled
//!    (nothing is refused, nothing lost).
//! 7. Every quarter of `--keyed-idle` (at least [`KEYED_SWEEP_MIN_MS`],
//!    at most [`KEYED_SWEEP_INTERVAL_MS`]), activations unused for
//!    `--keyed-idle` are passivated, oldest first, after the tick's commit:
//!    an idle activation goes within 1.25 times its idle time.
//! 8. The timer queue holds only live activations' timers. The earliest
//!    timer row of any keyed address is remembered; when it is due, the
//!    rows due are read (at most [`KEYED_TIMERS_DUE_PER_TICK_MAX`] a tick)
//!    and each passive key among them is activated, which queues its
//!    timers.
//! 9. An upgrade of a keyed type is tried on its live activations; a shard
//!    with none tries it on a scratch activation of address
//!    [`UPGRADE_TRIAL_KEY`], made, initialised and thrown away (its writes
//!    and sends rolled back), in a mailbox of its own that no message can
//!    reach.
//! 10. A keyed type whose keys have never set a timer on this shard (none
//!     in its database at deploy or restart, none set since) skips the
//!     timer queries of seating and passivation: two queries an activation.

use std::sync::Arc;

use crate::agent::host::InstanceAccount;
use crate::clock::now_ns;
use crate::limits::{KEYED_SWEEP_INTERVAL_MS, KEYED_SWEEP_MIN_MS, KEYED_TIMERS_DUE_PER_TICK_MAX};
use crate::router::keyed::Passivation;
use crate::router::LocalId;

use super::supervision::Supervision;
use super::{LocalAgent, RestartPolicy, Shard};

/// Activations looked at, oldest first, for one to passivate at the cap.
const CAP_SCAN_MAX: usize = 64;

/// Rule 7's interval, in ns, for an idle time of `idle_ns`.
fn sweep_interval_ns(idle_ns: u64) -> u64 {
    (idle_ns / 4).clamp(KEYED_SWEEP_MIN_MS * 1_000_000, KEYED_SWEEP_INTERVAL_MS * 1_000_000)
}

/// The key of rule 9's scratch activation. Its `caxton_init` sees this
/// key and, if a real key has this name, that key's state (read only: the
/// trial's writes are rolled back).
pub const UPGRADE_TRIAL_KEY: &str = "@upgrade-trial";

/// A keyed type deployed on this shard: what its activations are made from.
pub(super) struct KeyedType {
    pub module: crate::agent::CompiledAgent,
    pub policy: RestartPolicy,
    /// Rule 10: whether any key of it may have timer rows here.
    pub has_timers: bool,
}

impl Shard {
    /// Rule 5: slots for the activations the router made.
    pub(super) fn seat_activations(&mut self) {
        let mut made = std::mem::take(&mut self.made_buf);
        self.ctx.borrow_mut().router.keyed.take_made(&mut made);
        for id in made.drain(..) {
            let (type_name, address) = self.ctx.borrow().router.keyed.address_of(id).cloned().expect("made and live");
            let Some(keyed) = self.keyed_types.get(&type_name) else { unreachable!("a keyed type's keys are routed only while it is deployed") };
            let (module, policy, has_timers) = (keyed.module.clone(), keyed.policy, keyed.has_timers);
            let slot = id as usize;
            if self.agents.len() <= slot {
                self.agents.resize_with(slot + 1, || None);
            }
            assert!(self.agents[slot].is_none(), "the router gives a free slot");
            self.live_instances += 1;
            self.agents[slot] = Some(LocalAgent::new(address.clone(), type_name, 0, module, policy));
            if !has_timers {
                continue; // rule 10
            }
            if let Err(e) = self.queue_timers_of(id, &address, 0) {
                tracing::error!(shard = self.index, agent = %address, error = %e, "a key's timers were not queued; they fire after a restart");
            }
        }
        self.made_buf = made; // keep the allocation
    }

    /// Rule 6, at the end of a tick: passivates the least recently used
    /// activations that hold nothing until the shard is back at its cap,
    /// or until the oldest [`CAP_SCAN_MAX`] all have mail.
    pub(super) fn enforce_keyed_cap(&mut self) {
        let mut over = self.ctx.borrow().router.keyed.live().saturating_sub(self.keyed_active_max);
        while over > 0 {
            let oldest: Vec<LocalId> = self.ctx.borrow().router.keyed.oldest(CAP_SCAN_MAX).map(|(id, _)| id).collect();
            let mut passivated = 0;
            for id in oldest {
                if over > 0 && !self.in_call_of(id) && self.passivate(id, Passivation::Cap) {
                    over -= 1;
                    passivated += 1;
                }
            }
            if passivated == 0 {
                return; // every one looked at has mail: over the cap until it is handled
            }
        }
    }

    fn in_call_of(&self, id: LocalId) -> bool {
        let ctx = self.ctx.borrow();
        ctx.call.open && ctx.call.owner == id
    }

    /// Drops activation `id` if its mailbox holds and expects nothing;
    /// whether it did.
    pub(super) fn passivate(&mut self, id: LocalId, why: Passivation) -> bool {
        let mut ctx = self.ctx.borrow_mut();
        assert!(!ctx.call.open || ctx.call.owner != id, "never the instance being called");
        let Some(address) = ctx.router.passivate(id, why) else { return false };
        ctx.timers.remove_owner(id);
        // A passivated activation backing off is no one's backoff now (its
        // id may be reused).
        self.backing_off.retain(|&b| b != id);
        let agent = self.agents[id as usize].as_ref().expect("a live activation has a slot");
        let has_timers = self.keyed_types.get(&agent.type_name).is_none_or(|k| k.has_timers);
        // Rule 8: its timers are rows only now; the poll must see them.
        let timers = if has_timers { ctx.store.timers_of(&address, 0) } else { Ok(Vec::new()) }; // rule 10
        let first_due = match timers {
            Ok(timers) => timers.iter().map(|&(at, _)| at).min(),
            Err(e) => {
                tracing::error!(shard = self.index, agent = %address, error = %e, "cannot read a passivated key's timers; polling for them at once");
                Some(0)
            }
        };
        drop(ctx);
        if let Some(at) = first_due {
            self.keyed_timer_due_at(at);
        }
        let agent = self.agents[id as usize].take().expect("a live activation has a slot");
        self.live_instances -= 1;
        drop(agent); // its instance, and its memory, go now
        true
    }

    /// Rule 7: once a sweep interval, between ticks.
    pub(super) fn sweep_idle_activations(&mut self, now: u64) {
        if now < self.next_keyed_sweep_ns {
            return;
        }
        let idle_ns = self.keyed_idle.as_nanos() as u64;
        self.next_keyed_sweep_ns = now + sweep_interval_ns(idle_ns);
        loop {
            let stale: Vec<LocalId> =
                self.ctx.borrow().router.keyed.oldest(CAP_SCAN_MAX).take_while(|&(_, used)| now.saturating_sub(used) >= idle_ns).map(|(id, _)| id).collect();
            let mut passivated = 0;
            for &id in &stale {
                passivated += usize::from(self.passivate(id, Passivation::Idle));
            }
            if passivated == 0 || stale.len() < CAP_SCAN_MAX {
                return;
            }
        }
    }

    /// How long until a sweep (rule 7, with activations live) or a passive
    /// key's timer (rule 8) is due: a parked shard wakes for it.
    pub(super) fn next_keyed_work_in(&self) -> Option<std::time::Duration> {
        let sweep = (self.ctx.borrow().router.keyed.live() > 0).then(|| std::time::Duration::from_nanos(self.next_keyed_sweep_ns.saturating_sub(now_ns())));
        let timer =
            self.next_keyed_timer_us.filter(|_| self.serving).map(|at| std::time::Duration::from_micros(at.saturating_sub(crate::clock::unix_micros())));
        [sweep, timer].into_iter().flatten().min()
    }

    /// Rule 8: activates passive keys whose timers are due.
    pub(super) fn wake_keys_with_due_timers(&mut self) -> usize {
        let now = crate::clock::unix_micros();
        if self.next_keyed_timer_us.is_none_or(|at| at > now) || !self.serving {
            return 0;
        }
        let due = match self.ctx.borrow().store.keyed_timers_due(now, KEYED_TIMERS_DUE_PER_TICK_MAX) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(shard = self.index, error = %e, "cannot read the keyed timers due; retrying");
                return 0;
            }
        };
        let mut woken = 0;
        for address in &due {
            let Some((type_name, _)) = caxton_abi::split_keyed(address.as_bytes()) else { continue };
            let Some((type_name, _)) = self.keyed_types.get_key_value(std::str::from_utf8(type_name).unwrap_or("")) else { continue };
            let type_name = type_name.clone();
            let mut ctx = self.ctx.borrow_mut();
            if ctx.router.keyed.get(address.as_bytes()).is_none() {
                ctx.router.activate(&type_name, address);
                woken += 1;
            }
        }
        if woken > 0 {
            self.seat_activations();
        }
        // The rows read are queued now (those of keys live already were);
        // the next poll is at the first row after them.
        self.next_keyed_timer_us = if due.len() == KEYED_TIMERS_DUE_PER_TICK_MAX {
            Some(now)
        } else {
            self.ctx.borrow().store.keyed_timer_next_after(now).unwrap_or(Some(now + 1_000_000))
        };
        woken
    }

    /// A passive key has a timer due at `at_us`: the poll of rule 8 is
    /// due by then.
    fn keyed_timer_due_at(&mut self, at_us: u64) {
        self.next_keyed_timer_us = Some(self.next_keyed_timer_us.map_or(at_us, |at| at.min(at_us)));
    }

    /// Deletes the state and timers of `address` (a key of a keyed type
    /// placed here) and passivates it; its queued messages stay and meet a
    /// fresh activation. Whether the key had anything.
    pub(super) fn delete_key(&mut self, address: &str) -> Result<bool, String> {
        self.end_tick(); // nothing of the key is staged or uncommitted
        let live = self.ctx.borrow().router.keyed.get(address.as_bytes());
        if let Some(id) = live {
            if !self.passivate(id, Passivation::Deleted) {
                // It has mail: its next message makes a fresh instance.
                self.agents[id as usize].as_mut().expect("live").runtime = None;
                self.ctx.borrow_mut().timers.remove_owner(id);
            }
        }
        let mut ctx = self.ctx.borrow_mut();
        let had = ctx.store.delete_agent(address).map_err(|e| format!("cannot delete the key's state: {e}"))?;
        drop(ctx);
        self.end_tick();
        Ok(had > 0)
    }

    /// Rule 9: makes and initialises a scratch activation of `name` from
    /// `module`, then throws it away.
    pub(super) fn keyed_upgrade_trial(&mut self, name: &str, module: &crate::agent::CompiledAgent) -> Result<(), String> {
        let (type_name, policy) = {
            let (type_name, keyed) = self.keyed_types.get_key_value(name).expect("a keyed type here");
            (type_name.clone(), keyed.policy)
        };
        let address: Arc<str> = format!("{name}/{UPGRADE_TRIAL_KEY}").into();
        let id = self.ctx.borrow_mut().router.open_scratch_mailbox();
        let slot = id as usize;
        if self.agents.len() <= slot {
            self.agents.resize_with(slot + 1, || None);
        }
        assert!(self.agents[slot].is_none(), "the router gives a free slot");
        self.agents[slot] = Some(LocalAgent::new(address, type_name, 0, module.clone(), policy));
        self.live_instances += 1;
        let mark = self.ctx.borrow().router.staged_mark();
        let trial = self.make_instance(id, module, true);
        assert_eq!(self.ctx.borrow().router.staged_mark(), mark, "rule 9: nothing of a trial stays");
        self.agents[slot] = None;
        self.live_instances -= 1;
        self.ctx.borrow_mut().router.close_scratch_mailbox(id);
        trial.map(drop)
    }

    /// Adds keyed type `name` to this shard (rule 1).
    pub(super) fn deploy_keyed(&mut self, name: Arc<str>, module: crate::agent::CompiledAgent, policy: RestartPolicy) -> Result<(), String> {
        self.ctx.borrow_mut().router.add_keyed_type(&name)?;
        let has_timers = self.ctx.borrow().store.keyed_type_has_timers(&name).map_err(|e| format!("cannot read the keyed timers: {e}"))?;
        self.keyed_types.insert(name, KeyedType { module, policy, has_timers });
        if self.next_keyed_timer_us.is_none() {
            self.next_keyed_timer_us = self.ctx.borrow().store.keyed_timer_next_after(0).map_err(|e| format!("cannot read the keyed timers: {e}"))?;
        }
        Ok(())
    }
}

impl LocalAgent {
    pub(super) fn new(name: Arc<str>, type_name: Arc<str>, instance: u32, module: crate::agent::CompiledAgent, policy: RestartPolicy) -> LocalAgent {
        let account = InstanceAccount::new(module.limits.log);
        LocalAgent {
            name,
            type_name,
            instance,
            module,
            runtime: None,
            handled: 0,
            errors: 0,
            crashes: 0,
            timeouts: 0,
            processing: Default::default(),
            wrote_before_commit: None,
            account,
            supervision: Supervision::new(policy),
            quarantined_because: None,
        }
    }
}
