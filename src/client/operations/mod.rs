//! Fluent builders, one per operation. Each ends in `.send().await`.
//!
//! Members are checked before anything is sent; a missing or malformed member
//! gives [`Error::Validation`](crate::Error::Validation) and no request.

mod create_environment;
mod create_session;
mod delete_session;
mod describe_environments;
mod environment_ops;
mod file_urls;
mod put_credentials;

pub use create_environment::CreateEnvironment;
pub use create_session::{CreateSession, validate_tab_id};
pub use delete_session::DeleteSession;
pub use describe_environments::DescribeEnvironments;
pub use environment_ops::{
    DeleteEnvironment, GetEnvironmentStatus, SendHeartBeat, StartEnvironment, StopEnvironment,
};
pub use file_urls::{GetFileDownloadUrls, GetFileUploadUrls};
pub use put_credentials::PutCredentials;

use crate::client::types::ValidationError;

/// Longest identifier accepted for ids and paths (a sanity bound, not a service rule).
const MAX_ID_LEN: usize = 1024;

/// A required, non-blank string member without control characters.
pub(crate) fn required(
    field: &'static str,
    value: Option<String>,
) -> Result<String, ValidationError> {
    match value {
        None => Err(ValidationError::new(field, "is required")),
        Some(v) => {
            check_text(field, &v)?;
            Ok(v)
        }
    }
}

/// Checks an optional string member the same way as [`required`].
pub(crate) fn optional(
    field: &'static str,
    value: Option<String>,
) -> Result<Option<String>, ValidationError> {
    match value {
        None => Ok(None),
        Some(v) => required(field, Some(v)).map(Some),
    }
}

fn check_text(field: &'static str, v: &str) -> Result<(), ValidationError> {
    if v.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if v.len() > MAX_ID_LEN {
        return Err(ValidationError::new(
            field,
            format!("is longer than {MAX_ID_LEN} bytes"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn required_members() {
        assert_eq!(
            required("EnvironmentId", Some("e-1".into())).unwrap(),
            "e-1"
        );
        for (v, why) in [
            (None, "is required"),
            (Some(String::new()), "must not be empty"),
            (Some("  ".into()), "must not be empty"),
            (Some("a\nb".into()), "must not contain control characters"),
            (Some("x".repeat(2000)), "is longer than 1024 bytes"),
        ] {
            let e = required("EnvironmentId", v).unwrap_err();
            assert_eq!(e.field, "EnvironmentId");
            assert_eq!(e.reason, why);
        }
        assert_eq!(optional("X", None).unwrap(), None);
        assert!(optional("X", Some(String::new())).is_err());
    }
}
