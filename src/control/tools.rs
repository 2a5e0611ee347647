//! The control plane's side of tools: grants at deploy and upgrade, calls
//! handed to the tools runtime, and answers handed back to the shards.
//!
//! Rules:
//! 1. A grant names only tools the node has (`unknown_tool`, 400), each
//!    once. It is sent to every shard before the deploy that needs it
//!    (`Command::Grant`, over the lifecycle queues), kept in the catalog,
//!    and changed by an upgrade that names `?tools=` (an upgrade without
//!    it keeps the grant).
//! 2. A call that reaches the control plane is handed to the tools runtime;
//!    one it cannot take (no runtime, a full queue) is answered `refused`
//!    all the same: every call has its one answer (`tools` rule 1).
//! 3. An answer goes to the shard its receiver is placed on; a full mailbox
//!    or control queue is "no room" (the runtime tries again), an agent
//!    that is not here any more is "gone".

use std::sync::Arc;

use caxton_shards::runtime_outbox::Held;
use caxton_shards::{Command, Message};

use super::{Control, ControlError};
use crate::tools::{CallFailure, Delivery, ToolFailure, Tools};

impl Control {
    /// Gives the control plane its tools runtime (once, at start).
    pub fn set_tools(&self, tools: Arc<Tools>) {
        assert!(self.tools.set(tools).is_ok(), "the tools runtime is set once");
    }

    pub fn tools(&self) -> Option<&Arc<Tools>> {
        self.tools.get()
    }

    /// Rule 1: a grant as asked, checked against the node's tools.
    pub fn check_grant(&self, asked: &[String]) -> Result<Vec<String>, ControlError> {
        let mut grant: Vec<String> = Vec::with_capacity(asked.len());
        for t in asked {
            if !self.tools().is_some_and(|tools| tools.has(t)) {
                let have: Vec<String> = self.tools().map_or(Vec::new(), |tools| tools.all().map(|e| e.spec.name.clone()).collect());
                return Err(ControlError::bad_request(
                    "unknown_tool",
                    format!(
                        "this node has no tool named {t:?} (it has: {}); tools are the operator's, in the config file's [tools.NAME] sections",
                        if have.is_empty() { "none".into() } else { have.join(", ") }
                    ),
                ));
            }
            if !grant.contains(t) {
                grant.push(t.clone());
            }
        }
        Ok(grant)
    }

    /// Rule 1: sends `name`'s grant to every shard and waits for each. Call
    /// with the lifecycle lock held.
    pub(super) async fn grant_everywhere(&self, name: &Arc<str>, tools: &[String]) -> Result<(), ControlError> {
        let tools: Arc<[Box<str>]> = tools.iter().map(|t| t.as_str().into()).collect();
        let waits = self.lifecycle_to(&self.all_shards(), |reply| Command::Grant { name: name.clone(), tools: tools.clone(), reply })?;
        for (shard, rx) in waits {
            self.answer(shard, rx).await?;
        }
        Ok(())
    }

    /// Rule 1: an upgrade's new grant, kept and sent everywhere.
    pub(super) async fn change_grant(&self, name: &str, tools: Vec<String>) -> Result<(), ControlError> {
        let _lifecycle = self.lifecycle_lock().await?;
        self.catalog.lock().unwrap().set_tools(name, &tools).map_err(|e| ControlError::internal(format!("catalog write failed: {e}")))?;
        self.grant_everywhere(&Arc::from(name), &tools).await?;
        if let Some(r) = self.agents.write().unwrap().get_mut(name) {
            r.tools = tools;
        }
        Ok(())
    }

    /// Rule 2: a message to `@tool/NAME` out of the shards.
    pub(super) fn submit_tool_call(self: &Arc<Self>, held: Held) {
        let refused = match self.tools() {
            None => held,
            Some(tools) => match tools.submit(held) {
                Ok(()) => return,
                Err(held) => held,
            },
        };
        let failure = CallFailure::new(ToolFailure::Refused, "the node's tool queue is full".into());
        // Answered like any refused call: handed over until a shard takes it.
        tokio::spawn(crate::tools::dispatch::finish(self.clone(), refused, Err(failure), None));
    }

    fn next_answer_id(&self) -> u64 {
        self.api_ids.lock().unwrap().next_id()
    }
}

#[async_trait::async_trait]
impl crate::tools::Deliver for Control {
    /// Rule 3.
    async fn deliver(&self, answer: Message) -> Delivery {
        let receiver = std::str::from_utf8(answer.receiver()).unwrap_or("").to_string();
        let Some(instances) = self.local_instances(&receiver) else {
            return Delivery::Gone(format!("no agent {receiver:?} here"));
        };
        let shard = self.local_shard(&receiver, instances, answer.conversation_id(), answer.sender());
        match self.inject(shard, vec![answer]).await {
            Ok(refused) => match refused.into_iter().next() {
                None => Delivery::Taken,
                Some((caxton_shards::router::RouteError::Busy, m)) => Delivery::NoRoom(m),
                Some((e, _)) => Delivery::Gone(format!("{e:?}")),
            },
            Err(mut handed_back) => Delivery::NoRoom(handed_back.pop().expect("the batch of one")),
        }
    }

    fn next_message_id(&self) -> u64 {
        self.next_answer_id()
    }
}
