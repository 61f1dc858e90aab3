//! Fault injection and request recording for the REST side.

use std::time::Duration;

/// What an injected fault does to a matching request. A fault replaces the
/// operation (the operation does not run), except [`FaultKind::Delay`], which
/// runs it after the delay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// HTTP 400 `ThrottlingException` "Rate exceeded".
    Throttle,
    /// HTTP 500 `InternalServerException`.
    InternalError,
    /// HTTP 503 with an HTML page, as a load balancer in front would send.
    HtmlPage,
    /// HTTP 200 whose body is truncated JSON.
    MalformedJson,
    /// HTTP 200 with an empty body.
    EmptyBody,
    /// HTTP 403 `ExpiredTokenException`.
    ExpiredToken,
    /// Answer normally, after this long.
    Delay(Duration),
}

/// A fault to inject into the next `times` matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestFault {
    /// Operation name to match (`"CreateSession"` or `"createSession"`);
    /// `None` matches every operation.
    pub operation: Option<String>,
    /// How many requests it affects.
    pub times: u32,
    /// What it does.
    pub kind: FaultKind,
}

impl RestFault {
    /// A fault for every operation.
    pub fn any(kind: FaultKind, times: u32) -> Self {
        Self {
            operation: None,
            times,
            kind,
        }
    }

    /// A fault for one operation.
    pub fn on(operation: impl Into<String>, kind: FaultKind, times: u32) -> Self {
        Self {
            operation: Some(operation.into()),
            times,
            kind,
        }
    }

    pub(crate) fn matches(&self, operation: &str) -> bool {
        self.times > 0
            && self
                .operation
                .as_deref()
                .is_none_or(|op| op.eq_ignore_ascii_case(operation))
    }
}

/// One request as the emulator saw it (after authentication), for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// Operation name in PascalCase (`"CreateSession"`), or the request path
    /// for an unknown operation.
    pub operation: String,
    /// The JSON body (`Null` for an empty body, a string for a non-JSON body).
    pub body: serde_json::Value,
    /// Request headers, lower-case names, without `authorization`; the value of
    /// `x-amz-security-token` is replaced by `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// HTTP status of the response.
    pub status: u16,
}

impl RecordedRequest {
    /// The value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
