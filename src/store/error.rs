//! The store's error type.

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database rejected or failed a statement; `context` says what the store was
    /// doing. The message carries the driver's error (e.g. `Connection refused`), so a log
    /// line names the cause.
    #[error("database error while {context}: {error}")]
    Database { context: &'static str, error: sqlx::Error },
    /// Applying the embedded migrations failed.
    #[error("applying database migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The addressed row does not exist (for this tenant). `what` is the whole message.
    #[error("{what}")]
    NotFound { what: String },
    /// The write contradicts what is stored (e.g. a duplicate id). `what` is the whole message.
    #[error("{what}")]
    Conflict { what: String },
    /// The input cannot be stored as given (e.g. a score out of range). `what` is the whole
    /// message.
    #[error("{what}")]
    Invalid { what: String },
    /// A fenced write found that its worker no longer holds the job's lease.
    #[error("lease on job {job_id} is no longer held by this worker")]
    LeaseLost { job_id: i64 },
    /// Another process holds a live lease on the job (it is running it).
    #[error("job {job_id} is being run by `{owner}`, whose lease on it lasts until {until}")]
    LeaseHeld { job_id: i64, owner: String, until: chrono::DateTime<chrono::Utc> },
    /// A stored value does not parse back into its domain type.
    #[error("corrupt data in the store: {what}")]
    Corrupt { what: String },
    /// `Store::connect` was given a URL it cannot use. Passwords are redacted from `url`.
    #[error("invalid database url `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(err)
    }
}

/// Maps a sqlx error to [`StoreError`]: undecodable columns are [`StoreError::Corrupt`],
/// everything else [`StoreError::Database`] with `context`.
pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| match source {
        sqlx::Error::ColumnDecode { index, source } => {
            StoreError::Corrupt { what: format!("while {context}: column {index} does not decode: {source}") }
        }
        error => StoreError::Database { context, error },
    }
}

/// A row that does not exist; `what` is the whole message.
pub(crate) fn not_found(what: impl std::fmt::Display) -> StoreError {
    StoreError::NotFound { what: what.to_string() }
}

/// A stored value that failed validation.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { what: what.to_string() }
}

/// Whether `err` is a unique-constraint violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}
