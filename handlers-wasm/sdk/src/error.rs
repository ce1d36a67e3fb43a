//! Errors with context: `.context("reading /etc/os-release")?` on any result whose error turns
//! into a [`HandlerError`], keeping the error's kind (`invalid-input`, `unsupported`, `failed`)
//! and putting the context in front of its message.

use crate::HandlerError;
use crate::bindings::guestkit::handler::disk::DiskError;
use std::fmt::Display;

impl HandlerError {
    /// An `invalid-input` error: the payload or images do not fit the operation; the job is
    /// not retried.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        HandlerError::InvalidInput(message.into())
    }

    /// An `unsupported` error: a valid request this handler cannot serve; not retried.
    pub fn unsupported(message: impl Into<String>) -> Self {
        HandlerError::Unsupported(message.into())
    }

    /// A `failed` error: the handler tried and failed; the host may retry the job.
    pub fn failed(message: impl Into<String>) -> Self {
        HandlerError::Failed(message.into())
    }

    /// The error's message, without its kind.
    pub fn message(&self) -> &str {
        match self {
            HandlerError::InvalidInput(m)
            | HandlerError::Unsupported(m)
            | HandlerError::Failed(m) => m,
        }
    }

    /// The error's kind as the WIT names it: `invalid-input`, `unsupported` or `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerError::InvalidInput(_) => "invalid-input",
            HandlerError::Unsupported(_) => "unsupported",
            HandlerError::Failed(_) => "failed",
        }
    }

    /// The same kind of error with `context: ` put in front of its message.
    pub fn context(self, context: impl Display) -> Self {
        let wrap = |m: String| format!("{context}: {m}");
        match self {
            HandlerError::InvalidInput(m) => HandlerError::InvalidInput(wrap(m)),
            HandlerError::Unsupported(m) => HandlerError::Unsupported(wrap(m)),
            HandlerError::Failed(m) => HandlerError::Failed(wrap(m)),
        }
    }
}

impl DiskError {
    /// The error's message, without its kind.
    pub fn message(&self) -> &str {
        match self {
            DiskError::NotFound(m)
            | DiskError::Invalid(m)
            | DiskError::Corrupt(m)
            | DiskError::Unsupported(m)
            | DiskError::Limit(m)
            | DiskError::Io(m) => m,
        }
    }

    /// The error's kind as the WIT names it: `not-found`, `invalid`, `corrupt`, `unsupported`,
    /// `limit` or `io`.
    pub fn kind(&self) -> &'static str {
        match self {
            DiskError::NotFound(_) => "not-found",
            DiskError::Invalid(_) => "invalid",
            DiskError::Corrupt(_) => "corrupt",
            DiskError::Unsupported(_) => "unsupported",
            DiskError::Limit(_) => "limit",
            DiskError::Io(_) => "io",
        }
    }
}

/// Adds context to errors on the way to a [`HandlerError`], like `anyhow::Context`.
///
/// On a `Result` whose error converts into a [`HandlerError`] (a `HandlerError` itself or a
/// [`DiskError`](crate::disk::DiskError)), the error keeps its kind and gets `context: ` in
/// front of its message. On an `Option`, `None` becomes an `invalid-input` error saying
/// `context` (a missing value is usually something the job should have carried).
///
/// ```ignore
/// use guestkit_handler_sdk::Context;
///
/// let image_name = job.images.first().context("the job grants no image")?;
/// let text = sdk::disk::read_to_end(&fs, "/etc/os-release", 64 << 10)
///     .context("reading /etc/os-release")?;
/// ```
pub trait Context<T> {
    /// Wraps the error (or a `None`) with `context`.
    fn context<C: Display>(self, context: C) -> Result<T, HandlerError>;

    /// Wraps the error (or a `None`) with the context `f` builds; `f` runs only on failure.
    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T, HandlerError>;
}

impl<T, E: Into<HandlerError>> Context<T> for Result<T, E> {
    fn context<C: Display>(self, context: C) -> Result<T, HandlerError> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T, HandlerError> {
        self.map_err(|e| e.into().context(f()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context<C: Display>(self, context: C) -> Result<T, HandlerError> {
        self.ok_or_else(|| HandlerError::InvalidInput(context.to_string()))
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T, HandlerError> {
        self.ok_or_else(|| HandlerError::InvalidInput(f().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_and_prefixes_the_message() {
        let r: Result<(), DiskError> = Err(DiskError::NotFound("/etc/hostname".into()));
        let e = r.context("reading the hostname").unwrap_err();
        assert_eq!(e.kind(), "invalid-input");
        assert_eq!(
            e.message(),
            "reading the hostname: not-found: /etc/hostname"
        );

        let r: Result<(), DiskError> = Err(DiskError::Io("lost".into()));
        let e = r.with_context(|| format!("volume {}", "p1")).unwrap_err();
        assert_eq!(e, HandlerError::Failed("volume p1: io: lost".into()));

        let r: Result<(), HandlerError> = Err(HandlerError::unsupported("xfs v4"));
        let e = r.context("a").context("b").unwrap_err();
        assert_eq!(e, HandlerError::Unsupported("b: a: xfs v4".into()));
    }

    #[test]
    fn none_is_invalid_input() {
        let images: Vec<String> = Vec::new();
        let e = images
            .first()
            .context("the job grants no image")
            .unwrap_err();
        assert_eq!(
            e,
            HandlerError::InvalidInput("the job grants no image".into())
        );
        assert_eq!(Some(3).context("x").unwrap(), 3);
    }
}
