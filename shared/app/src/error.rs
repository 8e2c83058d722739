/// Failures of the ports and handlers. `retryable()` says whether trying the same work
/// again later can succeed; handlers turn retryable failures into `batchItemFailures`
/// (or a 503) and everything else into a recorded, final outcome.
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
}

impl Error {
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Storage(_) | Error::Queue(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
