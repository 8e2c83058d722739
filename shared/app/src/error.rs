/// Failures of the ports and handlers. Each has a [`ErrorKind`] that the handlers consult:
/// the SQS handlers turn transient failures into `batchItemFailures` (the message comes
/// back) and set permanent ones aside (a message that can never be processed is not
/// received again and again); the HTTP layer maps kinds to status codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("queue failure: {0}")]
    Queue(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("malformed message: {0}")]
    MalformedMessage(String),
    #[error("the cursor is not one this listing gave out")]
    InvalidCursor,
    #[error("configuration: {0}")]
    Config(String),
    /// Over a size limit (a queue message, a batch): the same input is refused every time.
    /// The message names the limit.
    #[error("too large: {0}")]
    TooLarge(String),
}

/// What a caller can do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A dependency failed; the same work may succeed later.
    Transient,
    /// The same work will fail every time (a bad configuration, a corrupt message).
    Permanent,
    NotFound,
    /// The write lost to another one (an id taken, a version moved on).
    Conflict,
    /// The caller's input is wrong.
    Invalid,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Storage(_) | Error::Queue(_) => ErrorKind::Transient,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::NotFound => ErrorKind::NotFound,
            Error::InvalidCursor | Error::TooLarge(_) => ErrorKind::Invalid,
            Error::MalformedMessage(_) | Error::Config(_) => ErrorKind::Permanent,
        }
    }

    /// Whether trying the same work again later can succeed.
    pub fn retryable(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dependency_failures_are_worth_retrying() {
        assert!(Error::Storage("throttled".into()).retryable());
        assert!(Error::Queue("timeout".into()).retryable());
        for permanent in [
            Error::MalformedMessage("not JSON".into()),
            Error::Config("bad".into()),
            Error::NotFound,
            Error::Conflict("id".into()),
            Error::InvalidCursor,
            Error::TooLarge("a message of 2 MiB".into()),
        ] {
            assert!(!permanent.retryable(), "{permanent}");
        }
        assert_eq!(Error::InvalidCursor.kind(), ErrorKind::Invalid);
        assert_eq!(Error::TooLarge("m".into()).kind(), ErrorKind::Invalid);
        assert_eq!(Error::NotFound.kind(), ErrorKind::NotFound);
    }
}
