//! How much memory this process has used at most (for `s5 predict`'s and `s5 bench`'s
//! reports), on the host and on a GPU.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// What a GPU's allocator holds, from the runtime's memory statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMemory {
    /// Bytes of live tensors (padding included).
    pub in_use_bytes: u64,
    /// Bytes reserved on the device: live tensors plus pages kept for reuse. cubecl's
    /// allocator keeps every page it took until told to clean up, so read after a step in a
    /// process that did nothing bigger, this is the step's peak.
    pub reserved_bytes: u64,
}

/// The allocator statistics of `device`; `None` where the backend keeps none.
pub fn device_memory(device: &Device) -> Option<DeviceMemory> {
    device.memory_pool_usage().map(|u| DeviceMemory {
        in_use_bytes: u.bytes_in_use + u.bytes_padding,
        reserved_bytes: u.bytes_reserved,
    })
}

/// Peak resident set size in bytes, where the OS reports it.
///
/// On Linux this is `VmHWM` of `/proc/self/status`: the high-water mark of this program's own
/// memory. (`getrusage`'s `ru_maxrss` survives `exec`, so a child started by a large parent
/// would report the parent's peak.) Elsewhere on Unix, `getrusage`.
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        && let Some(kib) = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
    {
        return Some(kib * 1024);
    }
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct we pass.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let max = u64::try_from(usage.ru_maxrss).ok()?;
        // Linux reports KiB, macOS bytes.
        if cfg!(target_os = "macos") {
            Some(max)
        } else {
            Some(max * 1024)
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}
