use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    // Like other Unix tools, stop quietly when the reader of stdout goes away (`s5 ... | head`)
    // instead of panicking on the broken pipe: Rust ignores SIGPIPE by default.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; only restores the default action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_buffers();
    quiet_device_select();
    cli::main()
}

/// glibc serves every allocation above its (adaptive) mmap threshold with a fresh mapping and
/// unmaps it on free, so each augmented sample's multi-megabyte buffers were page-faulted in
/// anew: a third of a 512-px sample's CPU time (`s5 bench data`, "normalise"). With a fixed
/// 64 MiB threshold and freed memory kept up to 256 MiB, the loader reuses its buffers.
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Mesa's Vulkan device-select layer probes Wayland while wgpu lists adapters and, without a
/// usable `XDG_RUNTIME_DIR` (headless servers, containers, CI), prints "error:
/// XDG_RUNTIME_DIR is invalid or not set" several times per command although nothing is
/// wrong. s5 picks its adapter itself, so in exactly that case it turns the layer off for its
/// own process (`NODEVICE_SELECT=1`), unless the user set `NODEVICE_SELECT` either way.
fn quiet_device_select() {
    if !cfg!(target_os = "linux") || std::env::var_os("NODEVICE_SELECT").is_some() {
        return;
    }
    let runtime_dir_ok = std::env::var_os("XDG_RUNTIME_DIR")
        .is_some_and(|dir| !dir.is_empty() && std::path::Path::new(&dir).is_dir());
    if !runtime_dir_ok {
        // SAFETY: called from `main` before any thread exists, so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}
