//! The store's error type.

/// Errors returned by a [`crate::JobStore`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No job with that id (for that tenant).
    #[error("job {id:?} not found")]
    NotFound {
        /// The id looked up.
        id: String,
    },
    /// A unique field collides with an existing job (e.g. the same id submitted twice).
    #[error("conflict: a job with the same {field} already exists")]
    Conflict {
        /// Name of the colliding field.
        field: &'static str,
    },
    /// The lease's fencing token no longer matches: the job was reclaimed, released or
    /// finished. Nothing was written.
    #[error("lease lost: job {id:?} is no longer held with fencing token {token}")]
    LeaseLost {
        /// Job id.
        id: String,
        /// The stale token.
        token: i64,
    },
    /// An argument the store cannot accept.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Name of the offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A tenant's quota does not allow this job now (e.g. too many queued).
    #[error("tenant {tenant:?} has {limit} {quota} jobs, its quota")]
    QuotaExceeded {
        /// The tenant.
        tenant: String,
        /// Which quota (`queued`).
        quota: &'static str,
        /// Its limit.
        limit: u64,
    },
    /// A database error, with what the store was doing.
    #[error("database error while {context}: {source}")]
    Db {
        /// Operation that failed.
        context: &'static str,
        /// The driver's error (SQLite's or PostgreSQL's).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }

    /// A driver error, with what the store was doing.
    pub(crate) fn db(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Db {
            context,
            source: source.into(),
        }
    }

    /// A row that does not decode into our types (edited by hand, or a newer schema).
    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Error::db("decoding a stored row", message.into())
    }
}

/// Adds what the store was doing to a driver error.
pub(crate) trait DbContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, Error>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T, Error> {
        self.map_err(|source| Error::db(context, source))
    }
}

impl<T> DbContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &'static str) -> Result<T, Error> {
        self.map_err(|source| Error::db(context, source))
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
