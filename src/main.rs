//! The `smsmta` binary: everything is in [`smsmta::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    smsmta::cli::run()
}
