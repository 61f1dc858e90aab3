//! A string that must not leak into logs, `Debug` output, error messages or JSON.
//!
//! [`Secret`] wraps values such as the `TokenValue` of a session, the SSE-C key of
//! a file transfer or a `RefreshToken`. Its `Debug` and `Display` print `***`, and
//! its `Serialize` implementation also writes `"***"`, so an output type that holds
//! a secret can be printed as JSON without exposing it.
//!
//! The real value is reachable only through explicit calls:
//! - [`Secret::expose`] returns it as `&str`;
//! - [`Secret::serialize_exposed`] is a `serialize_with` helper for a type of your
//!   own that must carry the real value (for example the JSON handed to a
//!   session client);
//! - output types holding secrets have a `to_json_exposing_secrets()` method.
//!
//! Deserializing a `Secret` reads the real value (it is how responses are parsed).
//!
//! ```
//! use cloudshell_rs::Secret;
//! let token = Secret::new("very-secret");
//! assert_eq!(format!("{token:?} {token}"), "*** ***");
//! assert_eq!(serde_json::to_string(&token).unwrap(), "\"***\"");
//! assert_eq!(token.expose(), "very-secret");
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The text printed in place of a secret value.
pub const REDACTED: &str = "***";

/// A secret string whose `Debug`, `Display` and `Serialize` print `***`.
///
/// See the [module documentation](self) for the explicit ways to reach the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value. Call this only where the value is sent to its destination.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Unwraps the real value.
    pub fn into_exposed(self) -> String {
        self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A `serialize_with` helper that writes the real value.
    ///
    /// ```
    /// use cloudshell_rs::Secret;
    /// #[derive(serde::Serialize)]
    /// struct Handoff<'a> {
    ///     #[serde(serialize_with = "Secret::serialize_exposed")]
    ///     token: &'a Secret,
    /// }
    /// let token = Secret::new("t0k3n");
    /// let json = serde_json::to_string(&Handoff { token: &token }).unwrap();
    /// assert_eq!(json, r#"{"token":"t0k3n"}"#);
    /// ```
    pub fn serialize_exposed<S: Serializer>(
        secret: &Secret,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&secret.0)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_display_and_serialize_redact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s:#?}"), "***");
        assert_eq!(s.to_string(), "***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn deserialize_reads_real_value() {
        let s: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(s.expose(), "abc");
        assert_eq!(s.into_exposed(), "abc");
    }
}
