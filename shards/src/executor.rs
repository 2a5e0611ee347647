//! Starting pinned shards: one glommio executor per core.
//!
//! Rules:
//! 1. Shards are pinned to CPUs the process may run on: glommio's
//!    `CpuSet::online()` ignores the affinity mask, so the CPU list comes from
//!    `sched_getaffinity`.
//! 2. glommio registers `io_memory` bytes of locked memory per executor. The
//!    memlock limit on these machines is 8 MiB, below glommio's 10 MiB default,
//!    so we raise the soft limit to the hard one and size `io_memory` to fit;
//!    the chosen figure is logged.
//! 3. `start` returns only when every shard has opened its database, so a
//!    node never serves with a shard missing.

use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use glommio::{LocalExecutorBuilder, Placement};

use crate::command::Command;
use crate::limits::{CONTROL_COMMANDS_MAX, LIFECYCLE_COMMANDS_MAX};
use crate::mesh::{build_mesh, Doorbell};
use crate::router::ApiSink;
use crate::shard::{Shard, ShardSetup, ShardTuning};
use crate::storage::StorageConfig;

pub use crate::limits::{GLOMMIO_IO_MEMORY_BYTES_DEFAULT, GLOMMIO_IO_MEMORY_BYTES_MIN};

/// The CPUs this process may run on (rule 1).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bitmask owned by this frame; the kernel writes
    // at most `size_of::<cpu_set_t>()` bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Raises the memlock soft limit and picks `io_memory` per executor (rule 2).
pub fn io_memory_per_shard(shards: usize) -> usize {
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    let soft = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) != 0 {
            return GLOMMIO_IO_MEMORY_BYTES_MIN;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    // Leave a quarter for the io_uring rings themselves.
    let share = (soft / 4 * 3) / shards.max(1);
    let chosen = share.clamp(GLOMMIO_IO_MEMORY_BYTES_MIN, GLOMMIO_IO_MEMORY_BYTES_DEFAULT);
    if share < GLOMMIO_IO_MEMORY_BYTES_MIN {
        tracing::warn!(
            memlock_bytes = soft,
            shards,
            "memlock limit too low for registered io buffers; glommio will use unregistered buffers (raise `ulimit -l`)"
        );
    } else {
        tracing::info!(memlock_bytes = soft, io_memory_bytes = chosen, "glommio io_memory per shard");
    }
    chosen
}

/// How to start the shards.
pub struct ShardsConfig {
    /// CPU of each shard, by shard index.
    pub cpus: Vec<usize>,
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub boot_epoch: u64,
    pub tuning: ShardTuning,
    /// Links to other nodes (`--listen`), or `None` outside a cluster.
    pub link: Option<crate::link::LinkSetup>,
    /// The free-space floor for state writes (`DiskFloor::unchecked()` in
    /// tests and benchmarks).
    pub disk: Arc<crate::storage::DiskFloor>,
    /// Each shard's span output, by shard index, when traces are exported.
    pub spans: Option<Vec<crate::trace::SpanOutput>>,
    /// The node restores its agents first and then sends each shard
    /// [`Command::Serve`]; until then their timers wait. `false`: they fire
    /// from the start (benchmarks, tests without a restore).
    pub restoring: bool,
}

/// The node's handle on one running shard.
pub struct ShardHandle {
    pub index: usize,
    sender: ShardSender,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

/// Queues commands for one shard, from any thread.
#[derive(Clone)]
pub struct ShardSender {
    control: Sender<Command>,
    /// Deploys, undeploys and stops: the control plane alone sends here,
    /// one operation at a time, so it can know there is room on every
    /// shard before it sends to any (all or nothing).
    lifecycle: Sender<Command>,
    bell: Arc<Doorbell>,
}

impl ShardSender {
    /// A sender whose commands nobody runs but the returned receivers
    /// (control, lifecycle): for tests of the control plane without shards.
    pub fn detached(capacity: usize) -> (ShardSender, Receiver<Command>, Receiver<Command>) {
        let (control, control_rx) = bounded(capacity);
        let (lifecycle, lifecycle_rx) = bounded(capacity);
        let bell = Doorbell::new().expect("a socket pair").0;
        (ShardSender { control, lifecycle, bell }, control_rx, lifecycle_rx)
    }

    /// Queues a command and wakes the shard. A full queue hands it back.
    #[allow(clippy::result_large_err, reason = "the command itself comes back, to be retried; it moves once")]
    pub fn send(&self, command: Command) -> Result<(), Command> {
        Self::push(&self.control, &self.bell, command)
    }

    /// Queues a lifecycle command (deploy, undeploy, stop).
    #[allow(clippy::result_large_err, reason = "the command itself comes back, to be retried")]
    pub fn send_lifecycle(&self, command: Command) -> Result<(), Command> {
        Self::push(&self.lifecycle, &self.bell, command)
    }

    /// Has the shard gone `after` without finishing a tick, while not
    /// parked? (its doorbell's pulse)
    pub fn stalled(&self, after: std::time::Duration) -> bool {
        self.bell.stalled(after)
    }

    /// Room for `n` more lifecycle commands?
    pub fn lifecycle_room(&self, n: usize) -> bool {
        self.lifecycle.len() + n <= self.lifecycle.capacity().unwrap_or(usize::MAX)
    }

    #[allow(clippy::result_large_err, reason = "the command itself comes back, to be retried")]
    fn push(queue: &Sender<Command>, bell: &Doorbell, command: Command) -> Result<(), Command> {
        match queue.try_send(command) {
            Ok(()) => {
                bell.ring_if_parked();
                Ok(())
            }
            Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => Err(c),
        }
    }
}

impl ShardHandle {
    /// Queues a command and wakes the shard. A full queue hands it back.
    #[allow(clippy::result_large_err, reason = "the command itself comes back, to be retried")]
    pub fn send(&self, command: Command) -> Result<(), Command> {
        self.sender.send(command)
    }

    pub fn sender(&self) -> ShardSender {
        self.sender.clone()
    }

    /// Waits for the shard's thread to end (after a `Stop`).
    pub fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts one pinned shard per entry of `config.cpus` (rule 3).
pub fn start(config: ShardsConfig, api: ApiSink) -> Result<Vec<ShardHandle>, String> {
    let n = config.cpus.len();
    assert!(n > 0 && n <= crate::limits::SHARDS_MAX, "1 to SHARDS_MAX shards");
    let io_memory = io_memory_per_shard(n);
    let mut bells = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let (bell, reader) = Doorbell::new().map_err(|e| format!("cannot make a doorbell: {e}"))?;
        bells.push(bell);
        readers.push(reader);
    }
    let (ready_tx, ready_rx) = bounded::<(usize, Result<(), String>)>(n);
    let mut handles = Vec::with_capacity(n);
    for ((index, mesh), reader) in build_mesh(&bells).into_iter().enumerate().zip(readers) {
        let (control_tx, control_rx) = bounded(CONTROL_COMMANDS_MAX);
        let (lifecycle_tx, lifecycle_rx) = bounded(LIFECYCLE_COMMANDS_MAX);
        let setup = ShardSetup {
            index,
            data_dir: config.data_dir.clone(),
            storage: config.storage.clone(),
            mesh,
            control: control_rx,
            lifecycle: lifecycle_rx,
            bell: bells[index].clone(),
            api: api.clone(),
            boot_epoch: config.boot_epoch,
            tuning: config.tuning,
            link: config.link.clone(),
            disk: config.disk.clone(),
            spans: config.spans.as_ref().map(|s| s[index].clone()),
            restoring: config.restoring,
        };
        let ready = ready_tx.clone();
        let reader_fd = reader.into_raw_fd();
        let thread = LocalExecutorBuilder::new(Placement::Fixed(config.cpus[index]))
            .name(&format!("shard-{index}"))
            .io_memory(io_memory)
            .spawn(move || async move {
                // SAFETY: `reader_fd` came from `into_raw_fd` above and is owned
                // by nothing else.
                let doorbell = unsafe { glommio::net::UnixStream::from_raw_fd(reader_fd) };
                match Shard::open(setup) {
                    Ok(shard) => {
                        let _ = ready.send((index, Ok(())));
                        shard.run(doorbell).await;
                    }
                    Err(e) => {
                        let _ = ready.send((index, Err(e)));
                    }
                }
            })
            .map_err(|e| format!("cannot start shard {index} on cpu {}: {e}", config.cpus[index]))?;
        handles.push(ShardHandle {
            index,
            sender: ShardSender { control: control_tx, lifecycle: lifecycle_tx, bell: bells[index].clone() },
            thread: Some(thread),
        });
    }
    drop(ready_tx);
    for _ in 0..n {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((index, Err(e))) => return Err(format!("shard {index}: {e}")),
            Err(_) => return Err("a shard thread died while starting".into()),
        }
    }
    Ok(handles)
}
