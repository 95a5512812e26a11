//! `smsmta subscriber ...` and `smsmta hash-password`: manage the registry's subscribers, and
//! make the password hashes `[[smtp.users]]` takes.

use super::*;
use crate::registry::{self, Db, RegistryError, Subscriber};

#[derive(Subcommand)]
pub(super) enum SubscriberOp {
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

pub(super) fn subscriber(config: &Config, op: SubscriberOp) -> ExitCode {
    let db = match Db::open(&config.registry_path(), config.openbts_path().as_deref()) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("smsmta: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    match op {
        SubscriberOp::Add {
            msisdn,
            imsi,
            email,
            disabled,
        } => add(&db, &msisdn, imsi, email, disabled),
        SubscriberOp::Remove { msisdn } => remove(&db, &msisdn),
        SubscriberOp::List { json } => list(&db, json),
        SubscriberOp::Show { who } => show(&db, &who),
    }
}

/// The exit for a registry error: bad input 65, anything else temporary 75.
fn fail(e: RegistryError) -> ExitCode {
    eprintln!("smsmta: {e}");
    match e {
        RegistryError::Invalid(_) => ExitCode::from(EX_DATAERR),
        _ => ExitCode::from(EX_TEMPFAIL),
    }
}

fn add(
    db: &Db,
    msisdn: &str,
    imsi: Option<String>,
    email: Option<String>,
    disabled: bool,
) -> ExitCode {
    let msisdn = match registry::normalize_msisdn(msisdn) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let imsi = match imsi.map(|i| registry::normalize_imsi(&i)).transpose() {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    if let Some(e) = &email
        && let Err(err) = crate::spool::inject::check_address(e)
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

fn remove(db: &Db, msisdn: &str) -> ExitCode {
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

fn list(db: &Db, json: bool) -> ExitCode {
    let list = match db.subscribers() {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
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

fn show(db: &Db, who: &str) -> ExitCode {
    let found = if who.to_ascii_uppercase().starts_with("IMSI")
        || who.trim_start_matches('+').len() == 15
    {
        registry::normalize_imsi(who).and_then(|i| db.by_imsi(&i))
    } else {
        db.by_msisdn(who.trim_start_matches('+'))
    };
    let s = match found {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!("smsmta: no subscriber {who}");
            return ExitCode::from(EX_NOINPUT);
        }
        Err(e) => return fail(e),
    };
    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    let now = crate::clock::now_unix();
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

pub(super) fn hash_password() -> ExitCode {
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
