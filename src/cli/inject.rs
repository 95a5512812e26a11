//! `smsmta inject`: queue an RFC 5322 message read on stdin (like sendmail(1)); exits 0 only
//! once the message is durable.

use super::*;

#[derive(Args)]
pub(super) struct InjectArgs {
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

pub(super) fn inject(config: &Config, args: InjectArgs) -> ExitCode {
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
    let mut message = crate::spool::inject::to_crlf(&raw);
    let mut rcpts = args.to.clone();
    if args.from_headers {
        match crate::spool::inject::header_recipients(&message) {
            Ok(found) => rcpts.extend(found),
            Err(e) => {
                eprintln!("smsmta: {e}");
                return ExitCode::from(EX_DATAERR);
            }
        }
        message = crate::spool::inject::strip_bcc(&message);
    }
    rcpts.retain(|r| !r.trim().is_empty());
    rcpts.dedup();
    if rcpts.is_empty() {
        eprintln!("smsmta: no recipients (use --to ADDR or -t)");
        return ExitCode::from(EX_USAGE);
    }
    for r in &rcpts {
        if let Err(e) = crate::spool::inject::check_address(r) {
            eprintln!("smsmta: recipient {r:?}: {e}");
            return ExitCode::from(EX_DATAERR);
        }
    }
    let sender = args.from.unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!("{user}@localhost")
    });
    if !sender.is_empty()
        && let Err(e) = crate::spool::inject::check_address(&sender)
    {
        eprintln!("smsmta: sender {sender:?}: {e}");
        return ExitCode::from(EX_DATAERR);
    }
    let origin = Origin {
        kind: OriginKind::Local,
        peer: format!("inject uid={}", crate::spool::inject::uid_hint()),
        sender_number: None,
    };
    let file = spool.new_message(
        &sender,
        &rcpts,
        message,
        origin,
        crate::app::DEFAULT_LIFETIME_SECS,
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
