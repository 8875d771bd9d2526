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
    cli::main()
}
