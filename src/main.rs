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
    /// Print a SHA-512 crypt hash of a password read on stdin, for `[[smtp.users]]`.
    HashPassword,
    /// Manage subscribers in the registry.
    Subscriber {
        #[command(subcommand)]
        op: SubscriberOp,
    },
}

#[derive(Subcommand)]
enum SubscriberOp {
    /// Add a subscriber, or replace the one with this MSISDN.
    Add {
        /// Phone number (digits, optional leading +).
        #[arg(long)]
        msisdn: String,
        /// IMSI (15 digits, optional IMSI prefix).
        #[arg(long)]
        imsi: Option<String>,
        /// E-mail address that receives this subscriber's texts.
        #[arg(long)]
        email: Option<String>,
        /// Add it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Remove a subscriber.
    Remove {
        /// Phone number.
        #[arg(long)]
        msisdn: String,
    },
    /// List subscribers.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one subscriber (by MSISDN or IMSI) with its registrations.
    Show {
        /// MSISDN or IMSI.
        who: String,
    },
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
        Cmd::Subscriber { op } => subscriber(&config, op),
        Cmd::HashPassword => hash_password(),
    }
}

fn serve(config: Config) -> ExitCode {
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
        sender_number: None,
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

fn subscriber(config: &Config, op: SubscriberOp) -> ExitCode {
    use smsmta::registry::{self, Db, Subscriber};
    let db = match Db::open(&config.registry_path(), config.openbts_path().as_deref()) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("smsmta: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    let fail = |e: registry::RegistryError| {
        eprintln!("smsmta: {e}");
        match e {
            registry::RegistryError::Invalid(_) => ExitCode::from(EX_DATAERR),
            _ => ExitCode::from(EX_TEMPFAIL),
        }
    };
    match op {
        SubscriberOp::Add {
            msisdn,
            imsi,
            email,
            disabled,
        } => {
            let msisdn = match registry::normalize_msisdn(&msisdn) {
                Ok(m) => m,
                Err(e) => return fail(e),
            };
            let imsi = match imsi.map(|i| registry::normalize_imsi(&i)).transpose() {
                Ok(i) => i,
                Err(e) => return fail(e),
            };
            if let Some(e) = &email
                && let Err(err) = smsmta::spool::inject::check_address(e)
            {
                eprintln!("smsmta: e-mail {e:?}: {err}");
                return ExitCode::from(EX_DATAERR);
            }
            let s = Subscriber {
                msisdn,
                imsi,
                email,
                enabled: !disabled,
            };
            match db.upsert(&s) {
                Ok(()) => {
                    eprintln!("smsmta: subscriber {} saved", s.msisdn);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        SubscriberOp::Remove { msisdn } => {
            let msisdn = msisdn.trim_start_matches('+');
            match db.remove(msisdn) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => {
                    eprintln!("smsmta: no subscriber {msisdn}");
                    ExitCode::from(EX_NOINPUT)
                }
                Err(e) => fail(e),
            }
        }
        SubscriberOp::List { json } => match db.subscribers() {
            Ok(list) => {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&list).unwrap_or_default()
                    );
                } else {
                    println!("{:<16} {:<16} {:<8} E-mail", "MSISDN", "IMSI", "Enabled");
                    for s in &list {
                        println!(
                            "{:<16} {:<16} {:<8} {}",
                            s.msisdn,
                            s.imsi.as_deref().unwrap_or("-"),
                            if s.enabled { "yes" } else { "no" },
                            s.email.as_deref().unwrap_or("-")
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        SubscriberOp::Show { who } => {
            let found = if who.to_ascii_uppercase().starts_with("IMSI")
                || who.trim_start_matches('+').len() == 15
            {
                registry::normalize_imsi(&who).and_then(|i| db.by_imsi(&i))
            } else {
                db.by_msisdn(who.trim_start_matches('+'))
            };
            match found {
                Ok(Some(s)) => {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                    let now = smsmta::clock::now_unix();
                    let mut aors = vec![s.msisdn.clone()];
                    if let Some(i) = &s.imsi {
                        aors.push(format!("IMSI{i}"));
                    }
                    for aor in aors {
                        if let Ok(bindings) = db.bindings(&aor, now) {
                            for b in bindings {
                                println!(
                                    "registered {aor}: {} (expires in {}s)",
                                    b.contact,
                                    b.expires.saturating_sub(now)
                                );
                            }
                        }
                    }
                    ExitCode::SUCCESS
                }
                Ok(None) => {
                    eprintln!("smsmta: no subscriber {who}");
                    ExitCode::from(EX_NOINPUT)
                }
                Err(e) => fail(e),
            }
        }
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return ExitCode::from(EX_USAGE);
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("smsmta: give the password on stdin");
        return ExitCode::from(EX_USAGE);
    }
    match sha_crypt::Sha512Params::new(100_000)
        .ok()
        .and_then(|p| sha_crypt::sha512_simple(password, &p).ok())
    {
        Some(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        None => ExitCode::from(EX_SOFTWARE),
    }
}
