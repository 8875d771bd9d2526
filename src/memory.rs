//! How much memory this process has used at most (for `s5 predict`'s and `s5 bench`'s
//! reports).

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
