//! A helper process a test starts (an MCP server, a fake peer): killed and
//! reaped when the guard drops, so a failing assertion leaks no process.

/// A child process killed and waited for on drop.
pub struct ChildGuard(std::process::Child);

impl ChildGuard {
    /// Spawns `command`, panicking with its program's name if it cannot.
    pub fn spawn(command: &mut std::process::Command) -> ChildGuard {
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
        ChildGuard(child)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
