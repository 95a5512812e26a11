//! The SMPP side: smsmta as an SMSC for ESMEs (applications, Kannel, OsmoMSC-style peers), and
//! as an ESME of upstream SMSCs (aggregators, an operator's SMSC).
//!
//! Pure: [`pdu`] (the frame and the PDUs), [`session`] (the server session: bind, window,
//! what each PDU asks for), [`text`] (data_coding to text), [`esme`] (submit_sm for a text,
//! parts and receipts in a deliver_sm, the pace of submissions). I/O: [`listener`] (accept,
//! framing, timeouts, commits), [`agent`] (deliver_sm to bound ESMEs: texts for their service
//! numbers), [`client`] (binds to upstream SMSCs), [`intake`] (a checked text into the spool),
//! [`store`] (receipts awaited, parts held, duplicates seen).

pub mod agent;
pub mod client;
pub mod esme;
pub mod intake;
pub mod listener;
pub mod pdu;
pub mod session;
pub mod store;
pub mod text;
