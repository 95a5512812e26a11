//! What can go wrong in the spool ([`SpoolError`]), and which of it is temporary: a door
//! answers a temporary error with 4xx (SMTP 451/452, SIP 503), never 5xx.

use super::*;

/// A spool error. Disk errors are temporary for the sender: the message was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A file-system operation failed (ENOSPC, EIO, EACCES, ...).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// The message is larger than `[spool] max_message_size`.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The size offered.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// The queue file could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] queue_file::EncodeError),
    /// No message with this ID is in any queue.
    #[error("{0}: no such message")]
    NotFound(QueueId),
    /// A message with this ID already exists (an ID collision; never overwritten).
    #[error("{0}: a message with this id already exists")]
    Exists(QueueId),
    /// The message's file does not decode.
    #[error("{id}: corrupt queue file: {reason}")]
    Corrupt {
        /// The message.
        id: QueueId,
        /// What is wrong.
        reason: queue_file::DecodeError,
    },
    /// The operation does not apply to a message in this queue.
    #[error("{id}: message is in {queue}, cannot {op}")]
    WrongQueue {
        /// The message.
        id: QueueId,
        /// Where it is.
        queue: Queue,
        /// What was asked.
        op: &'static str,
    },
    /// The journal writer has stopped (shutdown or a fatal error).
    #[error("spool journal is not running")]
    Closed,
}

impl SpoolError {
    /// Whether the sender should try again later (disk trouble, shutdown) rather than give up.
    pub fn is_temporary(&self) -> bool {
        match self {
            SpoolError::Io { .. } | SpoolError::Closed | SpoolError::Exists(_) => true,
            SpoolError::TooLarge { .. }
            | SpoolError::Encode(_)
            | SpoolError::NotFound(_)
            | SpoolError::Corrupt { .. }
            | SpoolError::WrongQueue { .. } => false,
        }
    }

    /// The underlying OS error kind, if this is an I/O error.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            SpoolError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
        let path = path.to_path_buf();
        move |source| SpoolError::Io { op, path, source }
    }
}
