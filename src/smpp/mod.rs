//! The SMPP side: smsmta as an SMSC for ESMEs (applications, Kannel, OsmoMSC-style peers).
//!
//! Pure: [`pdu`] (the frame and the PDUs), [`session`] (the server session: bind, window,
//! what each PDU asks for), [`text`] (data_coding to text). I/O: [`listener`] (accept, framing,
//! timeouts, commits), [`agent`] (deliver_sm to bound ESMEs: texts for their service numbers).

pub mod agent;
pub mod listener;
pub mod pdu;
pub mod session;
pub mod text;
