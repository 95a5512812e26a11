//! The `smsmta` binary: everything is in [`smsmta::cli`].

use std::process::ExitCode;

/// mimalloc rather than the system allocator: every text allocates many small buffers (mail,
/// queue file, PDUs, log lines) across threads; measured in docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let code = smsmta::cli::run();
    // Log lines still in memory (telemetry batches them) go out before the process ends.
    smsmta::telemetry::flush();
    code
}
