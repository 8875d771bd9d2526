//! One writer per run directory: every command that writes a run holds its `lock` file.
//!
//! The lock file is created whole or not at all (written under a temporary name, then
//! hard-linked to `lock`, which fails if it exists) and holds the writer's pid, host and start
//! time. A second writer gets [`RunError::Locked`] naming the holder. A lock left by a
//! process that no longer runs on this host (a crash, `kill -9`) is stale and is taken over;
//! the caller is told so it can warn. A lock from another host is never taken over: its
//! process cannot be checked from here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RunError};
use crate::layout::RunDir;

/// Who holds a run's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub since_unix_s: u64,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} on {}", self.pid, self.host)
    }
}

impl LockHolder {
    /// This process.
    pub fn me() -> Self {
        Self {
            pid: std::process::id(),
            host: host_name(),
            since_unix_s: now_unix_s(),
        }
    }

    /// The error a second writer gets.
    fn locked(self, path: PathBuf) -> RunError {
        RunError::Locked {
            path,
            pid: self.pid,
            host: self.host,
            running_s: now_unix_s().saturating_sub(self.since_unix_s),
        }
    }

    /// Whether this holder's process is known to be gone: same host, no such process.
    fn is_stale(&self) -> bool {
        self.host == host_name() && !process_alive(self.pid)
    }
}

/// A held lock; dropping it releases the run.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    holder: LockHolder,
}

impl RunLock {
    /// Takes `run`'s lock (creating the run folder if needed). Returns the lock and, when a
    /// stale lock was taken over, its former holder.
    pub fn acquire(run: &RunDir) -> Result<(Self, Option<LockHolder>)> {
        Self::acquire_at(&run.lock())
    }

    /// Takes the lock file at `path` (its folder created if needed): for a part of a run that
    /// processes write side by side, such as one curation shard each.
    pub fn acquire_at(path: &Path) -> Result<(Self, Option<LockHolder>)> {
        let root = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(root).map_err(RunError::io(root))?;
        let path = path.to_path_buf();
        let me = LockHolder::me();
        let mut taken_over = None;
        // Two rounds: the second after removing a stale lock.
        for _ in 0..2 {
            if create_whole(&path, &me)? {
                return Ok((Self { path, holder: me }, taken_over));
            }
            let Some(holder) = read_holder(&path)? else {
                continue; // released between our attempt and the read
            };
            if !holder.is_stale() {
                return Err(holder.locked(path));
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(RunError::io(&path)(source)),
            }
            taken_over = Some(holder);
        }
        let holder = read_holder(&path)?.unwrap_or_else(LockHolder::me);
        Err(holder.locked(path))
    }

    /// Takes the lock file at `path`, waiting (polling every 50 ms) while a live process
    /// holds it, up to `patience`: for short sections that writers take in turn, such as
    /// rebuilding a curation report. After `patience` the holder is named as by
    /// [`RunLock::acquire_at`].
    pub fn acquire_waiting(
        path: &Path,
        patience: std::time::Duration,
    ) -> Result<(Self, Option<LockHolder>)> {
        let started = std::time::Instant::now();
        loop {
            match Self::acquire_at(path) {
                Err(RunError::Locked { .. }) if started.elapsed() < patience => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only our own lock: never one a later writer took over after we were presumed gone.
        if read_holder(&self.path).ok().flatten().as_ref() == Some(&self.holder) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Creates `path` holding `holder`, whole; `false` if it already exists.
fn create_whole(path: &Path, holder: &LockHolder) -> Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".lock-")
        .tempfile_in(dir)
        .map_err(RunError::io(dir))?;
    let text = serde_json::to_vec_pretty(holder).expect("a lock holder serialises");
    std::fs::write(tmp.path(), text).map_err(RunError::io(tmp.path()))?;
    crate::fsutil::make_readable(tmp.path()).map_err(RunError::io(tmp.path()))?;
    match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(RunError::io(path)(source)),
    }
}

/// The holder recorded in a lock file; `None` if there is none.
pub fn read_holder(path: &Path) -> Result<Option<LockHolder>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| RunError::Format {
                path: path.to_path_buf(),
                what: "run lock",
                reason: format!("{e}; delete it if no s5 process writes this run"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RunError::io(path)(source)),
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This machine's name.
pub fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
        // or truncates, and we stop at the first NUL either way.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return String::from_utf8_lossy(&buf[..end]).into_owned();
        }
    }
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

/// Whether a process with this pid exists on this machine (assumed so where it cannot be
/// checked).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks whether the process exists; nothing is sent.
        if unsafe { libc::kill(pid, 0) } == 0 {
            // A zombie has ended; its parent has not collected it (an MPI rank whose
            // launcher is gone, in a container whose first process reaps nothing).
            return !is_zombie(pid);
        }
        std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Whether `pid` has ended and waits to be collected by its parent (Linux: state `Z` or `X`
/// in `/proc/<pid>/stat`; elsewhere never known).
#[cfg(unix)]
fn is_zombie(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (command) state ...`: the command may hold spaces and parentheses.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}
