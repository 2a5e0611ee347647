//! The control plane against fake shards: all or nothing, deadlines.

use super::*;
use crate::admission::Admission;
use crate::catalog::Catalog;
use caxton_shards::agent::AgentLimits;
use caxton_shards::placement::shard_of;
use caxton_shards::{Command, InstanceReport, ShardSender};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caxton_shards::limits::LIFECYCLE_COMMANDS_MAX;
use caxton_shards::runtime_outbox::RuntimeOutbox;

/// What a fake shard did, and how it answers deploys.
struct FakeShard {
    seen: Arc<Mutex<Vec<&'static str>>>,
    stop: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Plays shard `index` of `count`: answers lifecycle commands, deploys
/// with `deploy_ok`, until the test ends.
fn fake_shard(index: usize, count: usize, lifecycle: crossbeam_channel::Receiver<Command>, deploy_ok: bool) -> FakeShard {
    slow_fake_shard(index, count, lifecycle, deploy_ok, Duration::ZERO)
}

/// A fake shard that takes `delay` to answer a deploy (a stuck one).
fn slow_fake_shard(index: usize, count: usize, lifecycle: crossbeam_channel::Receiver<Command>, deploy_ok: bool, delay: Duration) -> FakeShard {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicUsize::new(0));
    let (s, st) = (seen.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        while st.load(Ordering::Relaxed) == 0 {
            let Ok(c) = lifecycle.recv_timeout(Duration::from_millis(10)) else { continue };
            match c {
                Command::Deploy { name, instances, reply, .. } => {
                    std::thread::sleep(delay);
                    s.lock().unwrap().push("deploy");
                    let here = (0..instances).filter(|&i| shard_of(name.as_bytes(), i, count) == index);
                    reply(if deploy_ok {
                        Ok(here.map(|instance| InstanceReport { instance, shard: index, startup_us: 0 }).collect())
                    } else {
                        Err("caxton_init returned 1".into())
                    })
                }
                Command::Undeploy { reply, .. } => {
                    s.lock().unwrap().push("undeploy");
                    reply(())
                }
                Command::Stop { reply } => {
                    s.lock().unwrap().push("stop");
                    reply(())
                }
                // A deploy's grant (none here) comes first; not counted.
                Command::Grant { reply, .. } => reply(()),
                _ => {}
            }
        }
    });
    FakeShard { seen, stop, thread: Some(thread) }
}

impl FakeShard {
    /// Waits until the fake has taken `n` commands (seconds under a loaded
    /// machine, so a test never races the fake's thread).
    fn wait_seen(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.seen.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "the fake shard took {} of {n} commands", self.seen.lock().unwrap().len());
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the fake and waits for its thread: it takes nothing more.
    fn halt(mut self) {
        self.stop.store(1, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for FakeShard {
    fn drop(&mut self) {
        self.stop.store(1, Ordering::Relaxed);
    }
}

fn control(dir: &std::path::Path, senders: Vec<ShardSender>) -> Control {
    // (tests of deploys through `Arc<Control>`, as the API holds it)
    let n = senders.len();
    let (catalog, boot) = Catalog::open(dir, n).unwrap();
    let memory = crate::admission::MemoryLimits { base_memory: 0, agent_heap_size: 1, agent_stack_size: 1, per_agent_overhead: 1, message_buffer_size: 0 };
    let budget = caxton_shards::limits::MessageBudget::split(caxton_shards::limits::MESSAGE_BUFFER_BYTES).unwrap();
    Control::new(
        senders,
        Vec::new(),
        RuntimeOutbox::consuming(drop),
        budget,
        AgentLimits::default(),
        Admission::new(memory, u64::MAX, 1000),
        catalog,
        boot,
        None,
    )
}

fn module() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agents/small.wat")).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn a_deploy_one_shard_refuses_is_undone_on_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (s0, _, l0) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
    let (s1, _, l1) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
    let (ok, refusing) = (fake_shard(0, 2, l0, true), fake_shard(1, 2, l1, false));
    let c = Arc::new(control(dir.path(), vec![s0, s1]));
    let err = runtime().block_on(c.deploy("agent", 10, module(), Default::default(), &[])).err().unwrap();
    assert_eq!(err.code, "init_failed", "{}", err.message);
    assert_eq!(*ok.seen.lock().unwrap(), ["deploy", "undeploy"], "undone where it was done, and awaited");
    assert_eq!(*refusing.seen.lock().unwrap(), ["deploy"]);
    assert!(c.list().is_empty());
    assert!(c.catalog.lock().unwrap().agents().unwrap().is_empty(), "the catalog forgot it");
}

#[test]
fn a_shard_that_takes_no_commands_gets_nothing_and_the_caller_503() {
    let dir = tempfile::tempdir().unwrap();
    let (s0, _, l0) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
    let (s1, _, l1) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
    let zero = fake_shard(0, 2, l0, true);
    // Shard 1 is stuck: its lifecycle queue is full.
    for _ in 0..LIFECYCLE_COMMANDS_MAX {
        assert!(s1.send_lifecycle(Command::Stop { reply: Box::new(|_| {}) }).is_ok());
    }
    let c = Arc::new(control(dir.path(), vec![s0, s1.clone()]));
    let rt = runtime();
    let err = rt.block_on(c.deploy("agent", 2, module(), Default::default(), &[])).err().unwrap();
    assert_eq!((err.kind, err.message.contains("shard 1")), (ErrorKind::Unavailable, true), "{}", err.message);
    assert!(zero.seen.lock().unwrap().is_empty(), "nothing sent to any shard");
    assert!(c.list().is_empty() && c.catalog.lock().unwrap().agents().unwrap().is_empty());
    // Unstuck, the same deploy goes through; stuck again, an undeploy
    // changes nothing either.
    let one = fake_shard(1, 2, l1.clone(), true); // (l1 kept: the queue stays open)
    one.wait_seen(LIFECYCLE_COMMANDS_MAX); // it has drained the stuck queue
    assert!(rt.block_on(c.deploy("agent", 2, module(), Default::default(), &[])).is_ok());
    one.halt();
    while s1.lifecycle_room(1) {
        assert!(s1.send_lifecycle(Command::Stop { reply: Box::new(|_| {}) }).is_ok());
    }
    let before = zero.seen.lock().unwrap().len();
    assert_eq!(rt.block_on(c.undeploy("agent")).unwrap_err().kind, ErrorKind::Unavailable);
    assert_eq!(zero.seen.lock().unwrap().len(), before, "shard 0 kept the agent: all or nothing");
    assert_eq!(c.list().len(), 1, "still deployed");
}

#[test]
fn a_shard_late_past_the_deadline_is_a_503_and_the_deploy_is_undone_when_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (s0, _, l0) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
    let (s1, _, l1) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
    let quick = fake_shard(0, 2, l0, true);
    let stuck = slow_fake_shard(1, 2, l1, true, Duration::from_millis(800));
    let c = Arc::new(control(dir.path(), vec![s0, s1]).with_timeout(Duration::from_millis(200)));
    let rt = runtime();
    let started = Instant::now();
    let err = rt.block_on(c.deploy("agent", 2, module(), Default::default(), &[])).err().unwrap();
    assert!(started.elapsed() < Duration::from_millis(700), "answered at the deadline, not when the shard did");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("shard 1") && err.message.contains("undone"), "{}", err.message);
    // A second lifecycle call waits for the first to settle: the late
    // shard answers, the deploy is undone on both, the name forgotten.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.list().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(c.list().is_empty(), "forgotten once settled");
    assert_eq!(*quick.seen.lock().unwrap(), ["deploy", "undeploy"]);
    assert_eq!(*stuck.seen.lock().unwrap(), ["deploy", "undeploy"]);
    assert!(c.catalog.lock().unwrap().agents().unwrap().is_empty());
}

#[test]
fn a_late_shard_in_the_middle_undoes_the_deploy_on_every_shard_once() {
    // The background task must undo the deploy on each shard that took
    // it, by that shard's index: shards after the late one too.
    let dir = tempfile::tempdir().unwrap();
    let (s0, _, l0) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
    let (s1, _, l1) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
    let (s2, _, l2) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
    let first = fake_shard(0, 3, l0, true);
    let stuck = slow_fake_shard(1, 3, l1, true, Duration::from_millis(600));
    let last = fake_shard(2, 3, l2, true);
    let c = Arc::new(control(dir.path(), vec![s0, s1, s2]).with_timeout(Duration::from_millis(150)));
    let rt = runtime();
    let err = rt.block_on(c.deploy("agent", 3, module(), Default::default(), &[])).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("shard 1"), "{}", err.message);
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.list().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(c.list().is_empty(), "forgotten once settled");
    for (i, shard) in [&first, &stuck, &last].iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while shard.seen.lock().unwrap().len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(*shard.seen.lock().unwrap(), ["deploy", "undeploy"], "shard {i}");
    }
}
