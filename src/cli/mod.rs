//! The `smsmta` command: `serve`, `check-config`, `queue ...`, `inject`.
//!
//! Thin: parses arguments, loads the configuration (the embedded default when `--config` is
//! not given), sets up logging, and calls the library. Exit codes follow sysexits(3) as
//! sendmail(1) does: 0 ok, 64 usage, 65 bad data, 69 not found, 75 temporary failure (try
//! again), 78 configuration error.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::spool::{self, Origin, OriginKind, QueueId, Spool, SpoolError, admin};

mod bts;
mod inject;
mod queue;
mod subscriber;

use bts::*;
use inject::*;
use queue::*;
use subscriber::*;

const EX_USAGE: u8 = 64;

const EX_DATAERR: u8 = 65;

const EX_NOINPUT: u8 = 66;

const EX_SOFTWARE: u8 = 70;

const EX_TEMPFAIL: u8 = 75;

const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "smsmta",
    version,
    about = "Store-and-forward SMS server: SIP MESSAGE <-> SMTP"
)]
struct Cli {
    /// Configuration file (default: the embedded config/smsmta.toml).
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server until SIGINT or SIGTERM.
    Serve,
    /// Validate the configuration and print the effective values.
    CheckConfig,
    /// Inspect and manage the queue (like mailq, postcat, postsuper, postqueue).
    Queue {
        #[command(subcommand)]
        op: QueueOp,
    },
    /// Read an RFC 5322 message on stdin and queue it (like sendmail(1)); exits 0 only once
    /// the message is durable.
    Inject(InjectArgs),
    /// Print a SHA-512 crypt hash of a password read on stdin, for `[[smtp.users]]`.
    HashPassword,
    /// Play a BTS with handsets on loopback: answer MESSAGE, print each text received
    /// (`--absent IMSI` answers 480); `bts send` texts as a handset.
    Bts(BtsArgs),
    /// Manage subscribers in the registry.
    Subscriber {
        #[command(subcommand)]
        op: SubscriberOp,
    },
}

/// Parses the command line and runs the command it names.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(p) => Config::load(p),
        None => Config::embedded(),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("smsmta: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    crate::telemetry::init(&config.log.level, config.log.format);
    match cli.cmd {
        Cmd::Serve => serve(config, cli.config),
        Cmd::CheckConfig => {
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Cmd::Queue { op } => queue(&config, op),
        Cmd::Inject(args) => inject(&config, args),
        Cmd::Subscriber { op } => subscriber(&config, op),
        Cmd::HashPassword => hash_password(),
        Cmd::Bts(args) => bts(&config, args),
    }
}

fn serve(config: Config, file: Option<std::path::PathBuf>) -> ExitCode {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime_threads(cpus))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smsmta: cannot start the runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    // The signal handlers go in before start-up, inside the runtime they register with.
    match rt.block_on(async {
        let stop = crate::app::shutdown_signal();
        crate::app::serve(config, file, stop).await
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smsmta: {e}");
            ExitCode::from(EX_TEMPFAIL)
        }
    }
}

fn open_spool(config: &Config) -> Result<Spool, ExitCode> {
    Spool::open(&config.spool_dir, config.spool.max_message_size.0).map_err(|e| {
        eprintln!("smsmta: {e}");
        ExitCode::from(EX_TEMPFAIL)
    })
}

fn exit_for(e: &SpoolError) -> ExitCode {
    match e {
        SpoolError::NotFound(_) => ExitCode::from(EX_NOINPUT),
        SpoolError::TooLarge { .. } | SpoolError::WrongQueue { .. } => ExitCode::from(EX_DATAERR),
        e if e.is_temporary() => ExitCode::from(EX_TEMPFAIL),
        _ => ExitCode::from(EX_SOFTWARE),
    }
}
