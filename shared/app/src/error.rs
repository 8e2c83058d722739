/// Failures of the ports and handlers. Each has a [`ErrorKind`] that the handlers consult:
/// the SQS handlers turn transient failures into `batchItemFailures` (the message comes
/// back) and set permanent ones aside (a message that can never be processed is not
/// received again and again); the HTTP layer maps kinds to status codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage failure: {message}")]
    Storage {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("queue failure: {message}")]
    Queue {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
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
    /// Sending an e-mail failed. `permanent`: the mail service refused it in a way that
    /// will not change (a sender it does not know, an address it rejects).
    #[error("e-mail failure: {message}")]
    Mail {
        message: String,
        permanent: bool,
        #[source]
        cause: Option<Cause>,
    },
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
            Error::Storage { .. } | Error::Queue { .. } => ErrorKind::Transient,
            Error::Mail {
                permanent: false, ..
            } => ErrorKind::Transient,
            Error::Mail {
                permanent: true, ..
            } => ErrorKind::Permanent,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::NotFound => ErrorKind::NotFound,
            Error::InvalidCursor | Error::TooLarge(_) => ErrorKind::Invalid,
            Error::MalformedMessage(_) | Error::Config(_) => ErrorKind::Permanent,
        }
    }

    pub fn storage(message: impl Into<String>) -> Error {
        Error::Storage {
            message: message.into(),
            cause: None,
        }
    }

    pub fn queue(message: impl Into<String>) -> Error {
        Error::Queue {
            message: message.into(),
            cause: None,
        }
    }

    /// A storage failure caused by `cause` (SQLite's, the SDK's, serde's error). The cause
    /// stays reachable as the error's `source()`, typed, for code that must look at it; its
    /// text is also in the message, because the logs print an error with `%` only, and the
    /// cause is the part an operator needs.
    pub fn storage_caused_by(context: &str, cause: impl Into<Cause>) -> Error {
        let cause = cause.into();
        Error::Storage {
            message: format!("{context}: {}", chain(&*cause)),
            cause: Some(cause),
        }
    }

    /// A queue failure caused by `cause`; see [`Error::storage_caused_by`].
    pub fn queue_caused_by(context: &str, cause: impl Into<Cause>) -> Error {
        let cause = cause.into();
        Error::Queue {
            message: format!("{context}: {}", chain(&*cause)),
            cause: Some(cause),
        }
    }

    /// An e-mail the mail service did not take, caused by `cause`.
    pub fn mail_caused_by(context: &str, permanent: bool, cause: impl Into<Cause>) -> Error {
        let cause = cause.into();
        Error::Mail {
            message: format!("{context}: {}", chain(&*cause)),
            permanent,
            cause: Some(cause),
        }
    }

    /// Whether trying the same work again later can succeed.
    pub fn retryable(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }
}

/// What an error was caused by, kept with it.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error and its sources, one after the other: the SDK's errors put the service's own
/// message (the useful part) a few sources down.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dependency_failures_are_worth_retrying() {
        assert!(Error::storage("throttled").retryable());
        assert!(Error::queue("timeout").retryable());
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

    #[test]
    fn a_cause_is_kept_typed_as_the_source_and_named_in_the_message() {
        let cause = std::io::Error::new(std::io::ErrorKind::TimedOut, "disk slow");
        let err = Error::storage_caused_by("writing a delivery", cause);
        assert_eq!(
            err.to_string(),
            "storage failure: writing a delivery: disk slow"
        );
        let source = std::error::Error::source(&err).expect("the cause is the source");
        let io = source.downcast_ref::<std::io::Error>().expect("typed");
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        assert!(err.retryable());
        assert!(std::error::Error::source(&Error::storage("x")).is_none());
    }
}
