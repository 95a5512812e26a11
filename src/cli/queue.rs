//! `smsmta queue ...`: list, show, stats, hold, release, delete and flush queued messages
//! (like mailq, postcat, qshape, postsuper and postqueue).

use super::*;

#[derive(Subcommand)]
pub(super) enum QueueOp {
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
    /// Count what waits, by destination and age, for every queue (like qshape).
    Stats {
        /// Print JSON instead of the tables.
        #[arg(long)]
        json: bool,
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
pub(super) struct Targets {
    /// Queue IDs.
    ids: Vec<String>,
    /// Every message the operation applies to.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

/// One administrative operation on one message.
pub(super) type AdminOp = fn(&Spool, QueueId) -> Result<(), SpoolError>;

pub(super) fn queue(config: &Config, op: QueueOp) -> ExitCode {
    let spool = match open_spool(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (targets, op_name, f, queues): (Targets, &str, AdminOp, &[spool::Queue]) = match op {
        QueueOp::List { json } => return list(&spool, json),
        QueueOp::Show { id } => return show(&spool, &id),
        QueueOp::Stats { json } => return stats(&spool, &config.domains, json),
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
    let ids = match target_ids(&spool, &targets, queues) {
        Ok(ids) => ids,
        Err(code) => return code,
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

/// `queue list`: like mailq, or JSON.
fn list(spool: &Spool, json: bool) -> ExitCode {
    match admin::list(spool) {
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
    }
}

/// `queue stats`: like qshape, or JSON (`{"buckets_minutes": [...], "queues": [...]}`).
fn stats(spool: &Spool, domains: &[String], json: bool) -> ExitCode {
    match admin::list(spool) {
        Ok(entries) => {
            let shapes = spool::shape::shape(&entries, crate::clock::now_unix(), domains);
            if json {
                let v = serde_json::json!({
                    "buckets_minutes": spool::shape::BUCKETS,
                    "queues": shapes,
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", spool::shape::format(&shapes));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("smsmta: {e}");
            exit_for(&e)
        }
    }
}

/// `queue show ID`: like postcat -q.
fn show(spool: &Spool, id: &str) -> ExitCode {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(code) => return code,
    };
    match admin::show(spool, id) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("smsmta: {e}");
            exit_for(&e)
        }
    }
}

/// The messages an operation names: `--all` in `queues`, or the IDs given.
fn target_ids(
    spool: &Spool,
    targets: &Targets,
    queues: &[spool::Queue],
) -> Result<Vec<QueueId>, ExitCode> {
    if targets.all {
        return admin::all_ids(spool, queues).map_err(|e| {
            eprintln!("smsmta: {e}");
            exit_for(&e)
        });
    }
    if targets.ids.is_empty() {
        eprintln!("smsmta: give queue IDs or --all");
        return Err(ExitCode::from(EX_USAGE));
    }
    targets.ids.iter().map(|s| parse_id(s)).collect()
}

pub(super) fn parse_id(s: &str) -> Result<QueueId, ExitCode> {
    QueueId::parse(s).map_err(|e| {
        eprintln!("smsmta: {s:?}: {e}");
        ExitCode::from(EX_USAGE)
    })
}
