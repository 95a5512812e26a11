//! What smsmta counts, for Prometheus (prometheus-client, the official Rust client): one
//! process-wide set of metrics, made at first use. Every label combination is made once, at
//! start, and kept as a handle, so the hot paths only add to an atomic: no lock, no lookup, no
//! allocation per message.
//!
//! Names follow Prometheus's conventions (`_total` counters, `_seconds` and base units) and,
//! where a counterpart exists, postfix_exporter's shape (`door`/`status` labels like its
//! `postfix_smtpd_*` and `postfix_qmgr_*` series), so that dashboards translate:
//!
//! - `smsmta_messages_received_total{door, result}`: door `sip`, `smtp`, `smpp` (an ESME),
//!   `upstream` (an SMSC); result `accepted` (durable, acknowledged) or `rejected`;
//! - `smsmta_deliveries_total{agent, status}`: agent `sip`, `smtp`, `smpp`, `upstream`,
//!   `local` (no route); status `sent`, `deferred`, `bounced`, `expired`;
//! - `smsmta_delivery_delay_seconds{agent}`: arrival to delivery, for what was sent;
//! - `smsmta_journal_flushes_total`, `smsmta_journal_batch_size`, `smsmta_journal_flush_seconds`;
//! - `smsmta_queue_messages{queue}`, `smsmta_queue_oldest_age_seconds{queue}` (measured at
//!   each scrape from the spool's directories; see [`endpoint`]);
//! - `smsmta_rejections_total{door, reason}`: reason `relay`, `rate`, `size`, `auth`, `trust`,
//!   `limit` (connection caps, overload), `recipient` (unknown recipient or destination);
//! - `smsmta_connections{door}` (open connections: SIP over TCP, SMTP, SMPP binds' sockets,
//!   upstream links) and `smsmta_transactions_in_flight{door}` (requests being committed);
//! - `smsmta_smpp_binds{role}` (`esme`: ESMEs bound to smsmta; `upstream`: smsmta's binds to
//!   SMSCs) and `smsmta_smpp_window_used{role}` (requests sent or taken and not yet answered);
//! - `smsmta_journal_unmaterialized` (the materializer's backlog: messages durable in the
//!   journal, their queue files not yet written);
//! - `smsmta_upstream_unmatched_receipts_total`; `smsmta_build_info{version}`.
//!
//! **Trust.** Nothing here reads input; label values are this file's constants.

pub mod endpoint;

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Where a message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// SIP MESSAGE from a handset or a BTS.
    Sip,
    /// SMTP (both listeners).
    Smtp,
    /// submit_sm from an ESME.
    Smpp,
    /// deliver_sm from an upstream SMSC.
    Upstream,
}

/// Which agent a delivery attempt used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// SIP MESSAGE to a handset.
    Sip,
    /// SMTP to a peer MTA or the smarthost.
    Smtp,
    /// deliver_sm to an ESME.
    Smpp,
    /// submit_sm to an upstream SMSC.
    Upstream,
    /// None: no route, expired before an attempt.
    Local,
}

/// What an attempt came to, as its log line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Delivered.
    Sent,
    /// To be retried.
    Deferred,
    /// Failed for good.
    Bounced,
    /// Its lifetime ran out.
    Expired,
}

/// Why something offered at a door was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Relay to a domain that is not ours, from a client that may not relay.
    Relay,
    /// A rate limit or throughput cap.
    Rate,
    /// Too large.
    Size,
    /// Bad or missing credentials.
    Auth,
    /// From outside the networks allowed.
    Trust,
    /// A connection cap or overload.
    Limit,
    /// An unknown recipient or destination.
    Recipient,
}

/// An SMPP bind's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An ESME bound to smsmta's SMPP server.
    Esme,
    /// smsmta bound to an upstream SMSC.
    Upstream,
}

const REASONS: [(Reason, &str); 7] = [
    (Reason::Relay, "relay"),
    (Reason::Rate, "rate"),
    (Reason::Size, "size"),
    (Reason::Auth, "auth"),
    (Reason::Trust, "trust"),
    (Reason::Limit, "limit"),
    (Reason::Recipient, "recipient"),
];
const ROLES: [(Role, &str); 2] = [(Role::Esme, "esme"), (Role::Upstream, "upstream")];

/// One unit of something open (a connection, a transaction, a bind): counted up when made,
/// down when dropped, whichever way its task ends.
#[derive(Debug)]
#[must_use = "the gauge goes down when this is dropped"]
pub struct Open(Option<Gauge>);

impl Open {
    fn new(g: Option<&Gauge>) -> Open {
        Open(g.map(|g| {
            g.inc();
            g.clone()
        }))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

const DOORS: [(Door, &str); 4] = [
    (Door::Sip, "sip"),
    (Door::Smtp, "smtp"),
    (Door::Smpp, "smpp"),
    (Door::Upstream, "upstream"),
];
const AGENTS: [(Agent, &str); 5] = [
    (Agent::Sip, "sip"),
    (Agent::Smtp, "smtp"),
    (Agent::Smpp, "smpp"),
    (Agent::Upstream, "upstream"),
    (Agent::Local, "local"),
];
const STATUSES: [(Status, &str); 4] = [
    (Status::Sent, "sent"),
    (Status::Deferred, "deferred"),
    (Status::Bounced, "bounced"),
    (Status::Expired, "expired"),
];

use crate::spool::Queue;

type Labels = Vec<(&'static str, &'static str)>;

/// The metrics, and a handle for every label combination.
pub struct Metrics {
    registry: Registry,
    /// [door][accepted, rejected]
    received: Vec<[Counter; 2]>,
    /// [agent][status]
    deliveries: Vec<Vec<Counter>>,
    /// [agent]
    delay: Vec<Histogram>,
    flushes: Counter,
    batch: Histogram,
    flush_time: Histogram,
    queue_messages: Vec<Gauge>,
    queue_oldest: Vec<Gauge>,
    unmatched: Counter,
    /// [door][reason]
    rejections: Vec<Vec<Counter>>,
    /// [door]
    connections: Vec<Gauge>,
    /// [door]
    in_flight: Vec<Gauge>,
    /// [role]
    binds: Vec<Gauge>,
    /// [role]
    window: Vec<Gauge>,
    unmaterialized: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

fn idx<T: PartialEq + Copy>(table: &[(T, &str)], v: T) -> usize {
    table.iter().position(|(t, _)| *t == v).unwrap_or(0)
}

/// A handle on `family`'s series for `labels`. (The family's read guard ends here: holding it
/// while asking for another series would deadlock on the family's lock.)
#[allow(clippy::let_and_return)] // the let ends the guard before the return
fn series<M: Clone>(
    family: &Family<Labels, M, impl Fn() -> M>,
    labels: &[(&'static str, &'static str)],
) -> M {
    let m = family.get_or_create(&labels.to_vec()).clone();
    m
}

/// A gauge family `name` with one series for each value of `label`, registered; the
/// handles in the values' order.
fn gauges(
    registry: &mut Registry,
    name: &str,
    help: &str,
    (label, values): (&'static str, &[&'static str]),
) -> Vec<Gauge> {
    let f = Family::<Labels, Gauge>::default();
    let v = values.iter().map(|x| series(&f, &[(label, *x)])).collect();
    registry.register(name, help, f);
    v
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("smsmta");
        let received_f = Family::<Labels, Counter>::default();
        let received = DOORS
            .iter()
            .map(|(_, d)| {
                let accepted = series(&received_f, &[("door", *d), ("result", "accepted")]);
                let rejected = series(&received_f, &[("door", *d), ("result", "rejected")]);
                [accepted, rejected]
            })
            .collect();
        registry.register(
            "messages_received",
            "Messages offered at each door: accepted (durable, acknowledged) or rejected",
            received_f,
        );
        let deliveries_f = Family::<Labels, Counter>::default();
        let deliveries = AGENTS
            .iter()
            .map(|(_, a)| {
                STATUSES
                    .iter()
                    .map(|(_, s)| series(&deliveries_f, &[("agent", *a), ("status", *s)]))
                    .collect()
            })
            .collect();
        registry.register(
            "deliveries",
            "Delivery attempts by agent and what they came to (one per recipient per attempt)",
            deliveries_f,
        );
        let delay_f = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 4.0, 10))
        });
        let delay = AGENTS
            .iter()
            .map(|(_, a)| series(&delay_f, &[("agent", *a)]))
            .collect();
        registry.register(
            "delivery_delay_seconds",
            "From arrival to delivery, for recipients delivered",
            delay_f,
        );
        let flushes = Counter::default();
        registry.register(
            "journal_flushes",
            "Journal group commits (one fdatasync each)",
            flushes.clone(),
        );
        let batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "journal_batch_size",
            "Messages made durable by one journal flush",
            batch.clone(),
        );
        let flush_time = Histogram::new(exponential_buckets(0.0001, 3.0, 10));
        registry.register(
            "journal_flush_seconds",
            "Time of one journal flush (write and fdatasync)",
            flush_time.clone(),
        );
        let qm = Family::<Labels, Gauge>::default();
        let queue_messages = Queue::MESSAGE_QUEUES
            .iter()
            .map(|q| series(&qm, &[("queue", q.dir_name())]))
            .collect();
        registry.register(
            "queue_messages",
            "Messages in each queue (files; measured at the scrape)",
            qm,
        );
        let qo = Family::<Labels, Gauge>::default();
        let queue_oldest = Queue::MESSAGE_QUEUES
            .iter()
            .map(|q| series(&qo, &[("queue", q.dir_name())]))
            .collect();
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the oldest message in each queue (0 when empty)",
            qo,
        );
        let unmatched = Counter::default();
        registry.register(
            "upstream_unmatched_receipts",
            "Receipts from upstream SMSCs that matched no message",
            unmatched.clone(),
        );
        let rejections_f = Family::<Labels, Counter>::default();
        let rejections = DOORS
            .iter()
            .map(|(_, d)| {
                REASONS
                    .iter()
                    .map(|(_, r)| series(&rejections_f, &[("door", *d), ("reason", *r)]))
                    .collect()
            })
            .collect();
        registry.register(
            "rejections",
            "Refusals at each door by reason (relay, rate, size, auth, trust, limit, recipient)",
            rejections_f,
        );
        let door_names: Vec<&'static str> = DOORS.iter().map(|(_, d)| *d).collect();
        let role_names: Vec<&'static str> = ROLES.iter().map(|(_, r)| *r).collect();
        let connections = gauges(
            &mut registry,
            "connections",
            "Open connections at each door (SIP over TCP, SMTP, SMPP; upstream: links to SMSCs)",
            ("door", &door_names),
        );
        let in_flight = gauges(
            &mut registry,
            "transactions_in_flight",
            "Requests taken and not yet answered at each door (being checked or committed)",
            ("door", &door_names),
        );
        let binds = gauges(
            &mut registry,
            "smpp_binds",
            "SMPP binds up: esme (ESMEs bound to smsmta), upstream (smsmta bound to SMSCs)",
            ("role", &role_names),
        );
        let window = gauges(
            &mut registry,
            "smpp_window_used",
            "SMPP requests outstanding (taken or sent, not yet answered), over all binds",
            ("role", &role_names),
        );
        let unmaterialized = Gauge::default();
        registry.register(
            "journal_unmaterialized",
            "Messages durable in the journal whose queue files are not yet written",
            unmaterialized.clone(),
        );
        let info = Family::<Labels, Gauge>::default();
        series(&info, &[("version", env!("CARGO_PKG_VERSION"))]).set(1);
        registry.register("build_info", "The running build (value 1)", info);
        Metrics {
            registry,
            received,
            deliveries,
            delay,
            flushes,
            batch,
            flush_time,
            queue_messages,
            queue_oldest,
            unmatched,
            rejections,
            connections,
            in_flight,
            binds,
            window,
            unmaterialized,
        }
    }

    /// Something offered at `door` refused for `reason`.
    pub fn rejected(&self, door: Door, reason: Reason) {
        if let Some(c) = self
            .rejections
            .get(idx(&DOORS, door))
            .and_then(|r| r.get(idx(&REASONS, reason)))
        {
            c.inc();
        }
    }

    /// A connection open at `door`, until the guard is dropped.
    pub fn connection(&self, door: Door) -> Open {
        Open::new(self.connections.get(idx(&DOORS, door)))
    }

    /// A request at `door` being handled, until the guard is dropped.
    pub fn in_flight(&self, door: Door) -> Open {
        Open::new(self.in_flight.get(idx(&DOORS, door)))
    }

    /// An SMPP bind up, until the guard is dropped.
    pub fn bind(&self, role: Role) -> Open {
        Open::new(self.binds.get(idx(&ROLES, role)))
    }

    /// An SMPP request outstanding, until the guard is dropped.
    pub fn window(&self, role: Role) -> Open {
        Open::new(self.window.get(idx(&ROLES, role)))
    }

    /// The materializer's backlog now.
    pub fn set_unmaterialized(&self, n: usize) {
        self.unmaterialized
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A message offered at `door`: accepted (durable and acknowledged) or rejected.
    pub fn received(&self, door: Door, accepted: bool) {
        if let Some(c) = self.received.get(idx(&DOORS, door)) {
            c[usize::from(!accepted)].inc();
        }
    }

    /// One delivery attempt for one recipient; `delay` (seconds since arrival) when sent.
    pub fn delivery(&self, agent: Agent, status: Status, delay: Option<f64>) {
        let a = idx(&AGENTS, agent);
        if let Some(c) = self
            .deliveries
            .get(a)
            .and_then(|s| s.get(idx(&STATUSES, status)))
        {
            c.inc();
        }
        if let (Some(d), Some(h)) = (delay, self.delay.get(a)) {
            h.observe(d);
        }
    }

    /// One journal flush of `batch` messages that took `secs`.
    pub fn journal_flush(&self, batch: usize, secs: f64) {
        self.flushes.inc();
        self.batch.observe(batch as f64);
        self.flush_time.observe(secs);
    }

    /// A receipt from an upstream that matched nothing; how many so far.
    pub fn unmatched_receipt(&self) -> u64 {
        self.unmatched.inc() + 1
    }

    /// Sets queue `i`'s ([`Queue::MESSAGE_QUEUES`]) size and oldest age.
    pub fn set_queue(&self, i: usize, messages: u64, oldest_secs: u64) {
        if let (Some(m), Some(o)) = (self.queue_messages.get(i), self.queue_oldest.get(i)) {
            m.set(i64::try_from(messages).unwrap_or(i64::MAX));
            o.set(i64::try_from(oldest_secs).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition of every metric (OpenMetrics text, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(8192);
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
