//! The `smsmta` binary: everything is in [`smsmta::cli`].

use std::process::ExitCode;

/// mimalloc rather than the system allocator: every text allocates many small buffers (mail,
/// queue file, PDUs, log lines) across threads; measured in docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    smsmta::cli::run()
}
