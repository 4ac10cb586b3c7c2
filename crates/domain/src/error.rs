//! Errors shared by every part of the domain.

use std::fmt;

/// An input that does not satisfy a value object's rules.
///
/// `field` names the offending input in the API's terms (camelCase), so the HTTP
/// edge can report it as-is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }

    /// Refuses text holding a control character (NUL, a line break, ESC, DEL, …): names
    /// and descriptions are one printable run, and PostgreSQL cannot store NUL at all.
    ///
    /// # Errors
    /// A [`ValidationError`] on `field` naming the first control character.
    pub fn refuse_control_characters(field: &'static str, text: &str) -> Result<(), Self> {
        match text.chars().find(|c| c.is_control()) {
            Some(c) => Err(Self::new(
                field,
                format!(
                    "must not contain control characters (found U+{:04X})",
                    u32::from(c)
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Marker error: the backing store cannot be reached right now (pool exhausted,
/// connection refused, server restarting).
///
/// Adapters put it in the `anyhow` chain of an `Unknown` error; the HTTP edge finds it
/// there and answers 503 instead of 500, because the request may succeed on retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUnavailable;

impl fmt::Display for StoreUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the database is unavailable")
    }
}

impl std::error::Error for StoreUnavailable {}

/// True when `err`, or anything in its cause chain, is [`StoreUnavailable`].
pub fn is_unavailable(err: &anyhow::Error) -> bool {
    has_cause::<StoreUnavailable>(err)
}

/// True when `err` carries an `E`, as its context or anywhere in its cause chain.
pub fn has_cause<E>(err: &anyhow::Error) -> bool
where
    E: std::error::Error + Send + Sync + 'static,
{
    err.downcast_ref::<E>().is_some() || err.chain().any(|cause| cause.is::<E>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailability_is_found_as_context_or_as_the_root_cause() {
        let as_root = anyhow::Error::new(StoreUnavailable).context("checking out a connection");
        let as_context = anyhow::anyhow!("connection refused").context(StoreUnavailable);
        assert!(is_unavailable(&as_root));
        assert!(is_unavailable(&as_context));
        assert!(!is_unavailable(&anyhow::anyhow!("syntax error")));
    }
}
