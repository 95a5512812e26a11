//! The SIP side: RFC 3428 MESSAGE and a small registrar, over UDP and TCP.
//!
//! Pure: [`message`] (parser and printer), [`transaction`] (server-side retransmission and
//! duplicate absorption, client-side timers). I/O: [`listener`] (UDP and TCP), [`service`]
//! (what each request does), [`client`] (sending MESSAGE, used by delivery).

pub mod client;
pub mod listener;
pub mod message;
pub mod service;
pub mod short_code;
pub mod transaction;
