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

use smsmta::config::Config;
use smsmta::spool::{self, Origin, OriginKind, QueueId, Spool, SpoolError, admin};

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
}

#[derive(Subcommand)]
enum QueueOp {
    /// List every queued message with its recipients and their state.
    List {
        /// Print JSON instead of the mailq layout.
        #[arg(long)]
        json: bool,
    },
    /// Print a message's envelope and content.
    Show {
        /// Queue ID.
        id: String,
    },
    /// Put messages on hold (from incoming or deferred).
    Hold(Targets),
    /// Release held messages into the deferred queue.
    Release(Targets),
    /// Delete messages.
    Delete(Targets),
    /// Make deferred messages due now.
    Flush(Targets),
}

#[derive(Args)]
struct Targets {
    /// Queue IDs.
    ids: Vec<String>,
    /// Every message the operation applies to.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

#[derive(Args)]
struct InjectArgs {
    /// Envelope sender (reverse-path); "" for the null sender. Default: <user>@localhost.
    #[arg(long, short = 'f')]
    from: Option<String>,
    /// Envelope recipients.
    #[arg(long, num_args = 1..)]
    to: Vec<String>,
    /// Also take recipients from the To, Cc and Bcc headers (and drop Bcc).
    #[arg(short = 't')]
    from_headers: bool,
}

fn main() -> ExitCode {
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
    smsmta::telemetry::init(&config.log.level);
    match cli.cmd {
        Cmd::Serve => serve(config),
        Cmd::CheckConfig => {
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Cmd::Queue { op } => queue(&config, op),
        Cmd::Inject(args) => inject(&config, args),
    }
}

fn serve(config: Config) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smsmta: cannot start the runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    match rt.block_on(smsmta::app::serve(config, smsmta::app::shutdown_signal())) {
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

/// One administrative operation on one message.
type AdminOp = fn(&Spool, QueueId) -> Result<(), SpoolError>;

fn queue(config: &Config, op: QueueOp) -> ExitCode {
    let spool = match open_spool(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (targets, op_name, f, queues): (Targets, &str, AdminOp, &[spool::Queue]) = match op {
        QueueOp::List { json } => {
            return match admin::list(&spool) {
                Ok(entries) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&entries).unwrap_or_default()
                        );
                    } else {
                        print!("{}", admin::format_list(&entries));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("smsmta: {e}");
                    exit_for(&e)
                }
            };
        }
        QueueOp::Show { id } => {
            let id = match parse_id(&id) {
                Ok(id) => id,
                Err(code) => return code,
            };
            return match admin::show(&spool, id) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("smsmta: {e}");
                    exit_for(&e)
                }
            };
        }
        QueueOp::Hold(t) => (
            t,
            "held",
            admin::hold,
            &[spool::Queue::Incoming, spool::Queue::Deferred],
        ),
        QueueOp::Release(t) => (t, "released", admin::release, &[spool::Queue::Hold]),
        QueueOp::Delete(t) => (t, "deleted", admin::delete, &spool::Queue::MESSAGE_QUEUES),
        QueueOp::Flush(t) => (t, "flushed", admin::flush, &[spool::Queue::Deferred]),
    };
    let ids: Vec<QueueId> = if targets.all {
        match admin::all_ids(&spool, queues) {
            Ok(ids) => ids,
            Err(e) => {
                eprintln!("smsmta: {e}");
                return exit_for(&e);
            }
        }
    } else {
        if targets.ids.is_empty() {
            eprintln!("smsmta: give queue IDs or --all");
            return ExitCode::from(EX_USAGE);
        }
        let mut ids = Vec::new();
        for s in &targets.ids {
            match parse_id(s) {
                Ok(id) => ids.push(id),
                Err(code) => return code,
            }
        }
        ids
    };
    let mut code = ExitCode::SUCCESS;
    let mut done = 0;
    for id in ids {
        match f(&spool, id) {
            Ok(()) => done += 1,
            Err(e) => {
                eprintln!("smsmta: {e}");
                code = exit_for(&e);
            }
        }
    }
    eprintln!("smsmta: {done} message(s) {op_name}");
    code
}

fn parse_id(s: &str) -> Result<QueueId, ExitCode> {
    QueueId::parse(s).map_err(|e| {
        eprintln!("smsmta: {s:?}: {e}");
        ExitCode::from(EX_USAGE)
    })
}

fn inject(config: &Config, args: InjectArgs) -> ExitCode {
    let spool = match open_spool(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let limit = spool.max_message_size();
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(limit + 1)
        .read_to_end(&mut raw)
    {
        eprintln!("smsmta: reading stdin: {e}");
        return ExitCode::from(EX_TEMPFAIL);
    }
    if raw.len() as u64 > limit {
        eprintln!("smsmta: message exceeds the limit of {limit} bytes");
        return ExitCode::from(EX_DATAERR);
    }
    let mut message = smsmta::spool::inject::to_crlf(&raw);
    let mut rcpts = args.to.clone();
    if args.from_headers {
        match smsmta::spool::inject::header_recipients(&message) {
            Ok(found) => rcpts.extend(found),
            Err(e) => {
                eprintln!("smsmta: {e}");
                return ExitCode::from(EX_DATAERR);
            }
        }
        message = smsmta::spool::inject::strip_bcc(&message);
    }
    rcpts.retain(|r| !r.trim().is_empty());
    rcpts.dedup();
    if rcpts.is_empty() {
        eprintln!("smsmta: no recipients (use --to ADDR or -t)");
        return ExitCode::from(EX_USAGE);
    }
    for r in &rcpts {
        if let Err(e) = smsmta::spool::inject::check_address(r) {
            eprintln!("smsmta: recipient {r:?}: {e}");
            return ExitCode::from(EX_DATAERR);
        }
    }
    let sender = args.from.unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!("{user}@localhost")
    });
    if !sender.is_empty()
        && let Err(e) = smsmta::spool::inject::check_address(&sender)
    {
        eprintln!("smsmta: sender {sender:?}: {e}");
        return ExitCode::from(EX_DATAERR);
    }
    let origin = Origin {
        kind: OriginKind::Local,
        peer: format!("inject uid={}", smsmta::spool::inject::uid_hint()),
    };
    let file = spool.new_message(
        &sender,
        &rcpts,
        message,
        origin,
        smsmta::app::DEFAULT_LIFETIME_SECS,
    );
    match spool.commit_direct(&file) {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("smsmta: {e}");
            exit_for(&e)
        }
    }
}
