//! The SIP side, both directions: RFC 3428 MESSAGE in (from handsets) and out (to them), and a
//! small registrar, over UDP and TCP.
//!
//! Pure: [`message`] (parser and printer), [`transaction`] (server-side retransmission and
//! duplicate absorption, client-side timers), [`short_code`]. I/O: [`listener`] (UDP and
//! TCP), [`service`] (what each request does: MO intake, concatenated parts and the
//! registrar in their own files), [`client`] (client transactions), [`agent`]
//! (the delivery agent: texts and status reports to handsets).

pub mod agent;
pub mod client;
mod intake;
pub mod listener;
pub mod message;
mod parts;
pub use parts::GAP_MARK;
mod registrar;
pub mod service;
pub mod short_code;
pub mod transaction;

/// A SIP transport: the one a request came on, or the one to send one on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP (Timer E retransmissions when sending).
    Udp,
    /// TCP.
    Tcp,
}

impl Transport {
    /// The name in a Via header (`UDP`, `TCP`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}
