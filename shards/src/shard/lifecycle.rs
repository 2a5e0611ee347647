//! A shard's part in an agent's lifecycle beyond deploy and undeploy:
//! upgrades in two phases, crashes under a restart policy, restarts that
//! lift a quarantine, and what a stopping shard holds.
//!
//! Rules:
//! 1. An upgrade's first phase ([`Shard::upgrade_prepare`]) makes every
//!    local instance from the new module and runs its whole start (start
//!    function, `caxton_abi_version`, inbox, `_initialize`, `caxton_init`)
//!    inside a call bracket that is always rolled back, sends and timers
//!    included: nothing changes, whatever it does. The control plane commits only
//!    when every shard said yes.
//! 2. The second phase ([`Shard::upgrade_commit`]) runs between two ticks:
//!    each instance is made anew from the new module and initialised for
//!    real. Its mailbox, state and timers stay, so the messages already
//!    queued are handled by the new version.
//! 3. A crash goes to the instance's policy (`supervision`): recreated at
//!    once, held for a backoff, or quarantined (its messages failed back).
//! 4. A stopping shard fails back what it still holds (`node_down`
//!    notices), sends those notices, commits and checkpoints its WAL.

use crate::agent::CompiledAgent;
use crate::clock::now_ns;
use crate::envelope::Message;
use crate::router::LocalId;

use super::supervision::{AfterCrash, Standing};
use super::Shard;

/// A failure notice keeps its message's header and sender, and adds
/// `@node` and a reason (at most 32 bytes): it is at most this much longer
/// than the message it answers.
const NOTICE_GROWTH_BYTES_MAX: usize = 64;

impl Shard {
    fn local_ids_of(&self, name: &str) -> Vec<LocalId> {
        // A keyed type's: its live activations.
        self.agents.iter().enumerate().filter(|(_, a)| a.as_ref().is_some_and(|a| *a.type_name == *name)).map(|(id, _)| id as LocalId).collect()
    }

    /// Rule 1. A keyed type with no live activation here is tried on a
    /// scratch activation (`keyed` rule 9), so that a module whose init
    /// fails is refused now, not at each key's next activation.
    pub(super) fn upgrade_prepare(&mut self, name: &str, module: &CompiledAgent) -> Result<(), String> {
        let ids = self.local_ids_of(name);
        if ids.is_empty() && self.keyed_types.contains_key(name) {
            return self.keyed_upgrade_trial(name, module).map_err(|e| format!("the new version of {e}"));
        }
        for id in ids {
            let mark = self.ctx.borrow().router.staged_mark();
            let trial = self.make_instance(id, module, true);
            assert_eq!(self.ctx.borrow().router.staged_mark(), mark, "rule 1: nothing of a trial stays");
            trial.map_err(|e| format!("the new version of {e}"))?;
        }
        Ok(())
    }

    /// Rule 2. A start that fails now (the state changed since the first
    /// phase) is retried on the instance's next message, as after a crash.
    pub(super) fn upgrade_commit(&mut self, name: &str, module: CompiledAgent) -> Result<(), String> {
        let mut first_error = None;
        if let Some(keyed) = self.keyed_types.get_mut(name) {
            keyed.module = module.clone(); // passive keys meet it at their next activation
        }
        for id in self.local_ids_of(name) {
            let agent = self.agents[id as usize].as_mut().expect("listed");
            agent.module = module.clone();
            agent.runtime = None;
            agent.supervision.lift();
            agent.quarantined_because = None;
            self.ctx.borrow_mut().router.release_hold(id);
            if let Err(e) = self.start_instance(id) {
                tracing::warn!(shard = self.index, agent = name, error = %e, "the upgraded instance failed to start; retrying on its next message");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Lifts backoffs and quarantines of `name` here (`supervision` rule
    /// 3); the instances are made on their next message.
    pub(super) fn restart(&mut self, name: &str) -> usize {
        let mut lifted = 0;
        for id in self.local_ids_of(name) {
            let agent = self.agents[id as usize].as_mut().expect("listed");
            if agent.supervision.standing != Standing::Running {
                lifted += 1;
            }
            agent.supervision.lift();
            agent.quarantined_because = None;
            self.ctx.borrow_mut().router.release_hold(id);
        }
        lifted
    }

    /// Quarantines instance `id` at once (`supervision` rule 3), saying why:
    /// a restored instance that cannot start.
    pub(super) fn quarantine(&mut self, id: LocalId, why: String) {
        let agent = self.agents[id as usize].as_mut().expect("live slot");
        agent.runtime = None;
        agent.supervision.standing = Standing::Quarantined;
        agent.quarantined_because = Some(why.into());
        self.totals.quarantines += 1;
    }

    /// Rule 3: what the policy of instance `id` says after a crash.
    pub(super) fn crashed(&mut self, id: LocalId) {
        let now = now_ns();
        let agent = self.agents[id as usize].as_mut().expect("live slot");
        agent.runtime = None;
        match agent.supervision.crashed(now) {
            AfterCrash::RestartNow => {
                agent.supervision.restarts += 1;
                self.totals.restarts += 1;
                if let Err(e) = self.start_instance(id) {
                    tracing::warn!(shard = self.index, error = %e, "recreating a crashed instance failed; retrying on its next message");
                }
            }
            AfterCrash::BackOff { for_ms } => {
                tracing::warn!(shard = self.index, agent = %agent.name, instance = agent.instance, crashes_in_a_row = agent.supervision.in_a_row, backoff_ms = for_ms, "instance crashing repeatedly: backing off");
                self.ctx.borrow_mut().router.hold(id);
                self.backing_off.push(id);
            }
            AfterCrash::Quarantine => {
                agent.quarantined_because = Some(format!("{} crashes in a row", agent.supervision.in_a_row).into());
                tracing::error!(shard = self.index, agent = %agent.name, instance = agent.instance, crashes_in_a_row = agent.supervision.in_a_row, "instance quarantined: its messages are failed back until `caxton agent restart`");
                self.totals.quarantines += 1;
            }
        }
    }

    /// Instances whose backoff is over are made anew and run again.
    pub(super) fn end_backoffs(&mut self) -> usize {
        if self.backing_off.is_empty() {
            return 0;
        }
        let now = now_ns();
        let mut ended = 0;
        let mut i = 0;
        while i < self.backing_off.len() {
            let id = self.backing_off[i];
            let standing = self.agents.get(id as usize).and_then(|a| a.as_ref()).map(|a| a.supervision);
            match standing {
                Some(s) if s.backoff_over(now) => {}
                Some(s) if matches!(s.standing, Standing::BackingOff { .. }) => {
                    i += 1;
                    continue;
                }
                _ => {
                    self.backing_off.swap_remove(i); // lifted, undeployed, or quarantined
                    continue;
                }
            }
            self.backing_off.swap_remove(i);
            let agent = self.agents[id as usize].as_mut().expect("checked");
            agent.supervision.standing = Standing::Running;
            agent.supervision.restarts += 1;
            self.totals.restarts += 1;
            self.ctx.borrow_mut().router.release_hold(id);
            if let Err(e) = self.start_instance(id) {
                tracing::warn!(shard = self.index, error = %e, "restarting an instance after its backoff failed; retrying on its next message");
            }
            ended += 1;
        }
        ended
    }

    /// How long until the next backoff ends, if one is running.
    pub(super) fn next_backoff_in(&self) -> Option<std::time::Duration> {
        let now = now_ns();
        self.backing_off
            .iter()
            .filter_map(|&id| match self.agents.get(id as usize)?.as_ref()?.supervision.standing {
                Standing::BackingOff { until_ns } => Some(until_ns.saturating_sub(now)),
                _ => Some(0),
            })
            .min()
            .map(std::time::Duration::from_nanos)
    }

    /// Messages the shard holds anywhere (a draining node waits for none).
    pub(super) fn pending(&self) -> usize {
        let ctx = self.ctx.borrow();
        ctx.router.queued_messages()
            + ctx.router.remote.queued()
            + ctx.router.remote.inbound_len().0
            + ctx.router.notices.len()
            + self.held.iter().flatten().count()
            + usize::from(ctx.router.has_staged())
            + usize::from(ctx.router.has_peer_backlog())
            + self.inbound.iter().flatten().filter(|rx| !rx.is_empty()).count()
    }

    /// Rule 4, first step: takes out everything still held (mailboxes, link
    /// queues, messages from peer shards not yet routed).
    pub(super) fn take_everything_held(&mut self) -> std::collections::VecDeque<Message> {
        self.end_tick();
        let mut lost: std::collections::VecDeque<Message> = self.ctx.borrow_mut().router.take_everything().into();
        for held in &mut self.held {
            lost.extend(held.drain(..));
        }
        if !lost.is_empty() {
            tracing::warn!(shard = self.index, failed = lost.len(), "stopping: messages still held past the drain are failed back (node_down)");
        }
        lost
    }

    /// Rule 4, second step: fails back as many of `lost` as the notice queue
    /// has room for, and sends the notices whose routes have room (a wire
    /// client or a link takes them as it reads). With `last_try`, the rest
    /// is failed back anyway (notices past the queue's bound are dropped
    /// and counted) and notices still waiting are dropped and counted.
    /// Returns whether nothing is left to do.
    pub(super) fn fail_back_some(&mut self, lost: &mut std::collections::VecDeque<Message>, last_try: bool) -> bool {
        loop {
            let mut ctx = self.ctx.borrow_mut();
            while let Some(m) = lost.front() {
                if !last_try && !ctx.router.notices.has_room_for(m.len() + NOTICE_GROWTH_BYTES_MAX) {
                    break;
                }
                let m = lost.pop_front().expect("checked");
                ctx.router.dead_letter(crate::router::DeadLetter::Stopped, &m);
            }
            drop(ctx);
            if self.send_notices() == 0 {
                break;
            }
        }
        let mut ctx = self.ctx.borrow_mut();
        if last_try {
            let dropped = ctx.router.notices.len();
            while ctx.router.notices.pop().is_some() {
                ctx.router.notices.undeliverable();
            }
            if dropped > 0 {
                tracing::warn!(shard = self.index, dropped, "stopping: failure notices nobody took in time were dropped");
            }
        }
        lost.is_empty() && ctx.router.notices.is_empty()
    }

    /// Rule 4, last step: the tick commits and the WAL is checkpointed.
    pub(super) fn close(&mut self) {
        self.end_tick();
        let mut ctx = self.ctx.borrow_mut();
        assert!(ctx.router.notices.is_empty() && ctx.router.queued_messages() == 0, "rule 4: a closing shard holds nothing");
        if let Err(e) = ctx.store.checkpoint_truncate() {
            tracing::warn!(shard = self.index, error = %e, "the last WAL checkpoint failed; the next start replays the WAL");
        }
    }
}
