//! Errors of the REST client, in the categories of the AWS SDK for Rust.
//!
//! | variant | meaning | sent? |
//! |---|---|---|
//! | [`Error::Validation`] | a request member is missing or malformed | no |
//! | [`Error::Credentials`] | the credential chain gave no credentials | no |
//! | [`Error::Dispatch`] | transport failure (connect, reset, TLS) after all attempts | maybe |
//! | [`Error::Timeout`] | the operation timeout elapsed | maybe |
//! | [`Error::Response`] | a response arrived but could not be understood | yes |
//! | [`Error::Service`] | the service answered with an error code | yes |
//! | [`Error::WaitTimeout`], [`Error::UnexpectedStatus`] | from [`Client::wait_until_running`](crate::Client::wait_until_running) | yes |
//!
//! `Display` never repeats the source error; walk [`std::error::Error::source`] for
//! the whole chain. No variant holds a secret.

use std::time::Duration;

use crate::client::types::{EnvironmentStatus, ValidationError};

/// A boxed error used as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Error codes that mean "slow down" (the set the AWS SDKs treat as throttling).
pub(crate) const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes for transient server-side failures.
pub(crate) const TRANSIENT_CODES: &[&str] = &["RequestTimeout", "RequestTimeoutException"];

/// An error response from the service, with its code.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{operation} failed: {code}{}{}",
    .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(),
    status_and_request_id(*.http_status, .request_id.as_deref()),
)]
pub struct ServiceError {
    /// The operation that failed (`CreateSession`, ...).
    pub operation: &'static str,
    /// The error code, without namespace or suffix (`InvalidStatusException`).
    pub code: String,
    /// The service's message, if any.
    pub message: Option<String>,
    /// The request id, if the response carried one.
    pub request_id: Option<String>,
    /// The HTTP status code.
    pub http_status: u16,
}

impl ServiceError {
    /// The error code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The service's message.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The request id.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The HTTP status code.
    pub fn http_status(&self) -> u16 {
        self.http_status
    }

    /// Whether the code or status means throttling.
    pub fn is_throttling(&self) -> bool {
        self.http_status == 429 || THROTTLING_CODES.contains(&self.code.as_str())
    }

    /// Whether trying again may succeed (throttling, transient codes, HTTP 5xx).
    pub fn is_retryable(&self) -> bool {
        self.is_throttling()
            || self.http_status >= 500
            || TRANSIENT_CODES.contains(&self.code.as_str())
    }
}

fn environment_names(names: &[String]) -> String {
    if names.is_empty() {
        "no environment has a name".to_owned()
    } else {
        format!("names: {}", names.join(", "))
    }
}

pub(crate) fn status_and_request_id(status: u16, request_id: Option<&str>) -> String {
    match request_id {
        Some(id) => format!(" (HTTP {status}, request id {id})"),
        None => format!(" (HTTP {status})"),
    }
}

/// An error from a CloudShell call.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request member is missing or invalid; nothing was sent.
    #[error("request not sent: {0}")]
    Validation(ValidationError),

    /// No credentials could be obtained; nothing was sent.
    #[error("request not sent: could not load AWS credentials")]
    Credentials(#[source] BoxError),

    /// The request could not be sent or its response could not be read.
    #[error("{operation}: request to {endpoint} failed after {attempts} attempt(s)")]
    Dispatch {
        /// Operation name.
        operation: &'static str,
        /// The endpoint the client talks to.
        endpoint: String,
        /// How many attempts were made.
        attempts: u32,
        /// The transport error of the last attempt.
        #[source]
        source: BoxError,
    },

    /// The operation did not finish within its timeout (all attempts included).
    #[error("{operation}: no response within {timeout:?} ({attempts} attempt(s))")]
    Timeout {
        /// Operation name.
        operation: &'static str,
        /// The timeout that elapsed.
        timeout: Duration,
        /// How many attempts were started.
        attempts: u32,
    },

    /// A response arrived but could not be understood.
    #[error(
        "{operation}: unparseable response{}: {reason}",
        status_and_request_id(*.http_status, .request_id.as_deref())
    )]
    Response {
        /// Operation name.
        operation: &'static str,
        /// HTTP status code of the response.
        http_status: u16,
        /// The request id, if the response carried one.
        request_id: Option<String>,
        /// What was wrong (`empty body`, `truncated JSON at line 1 column 37`, ...).
        reason: String,
    },

    /// The service returned an error code.
    #[error("{0}")]
    Service(ServiceError),

    /// An environment did not reach RUNNING in time.
    #[error(
        "environment {environment_id} is not RUNNING after {timeout:?}{}",
        .last_status.as_ref().map(|s| format!(" (last status {s})")).unwrap_or_default()
    )]
    WaitTimeout {
        /// The environment waited for.
        environment_id: String,
        /// The timeout that elapsed.
        timeout: Duration,
        /// The last status seen.
        last_status: Option<EnvironmentStatus>,
    },

    /// No environment of the caller in the region has this id or name.
    #[error(
        "no environment has the id or name {given:?} in this region ({})",
        environment_names(names)
    )]
    UnknownEnvironment {
        /// The id or name asked for.
        given: String,
        /// The names the environments there have, sorted.
        names: Vec<String>,
    },

    /// An environment is in a state from which it cannot become RUNNING
    /// (DELETING, or a status this library does not know).
    #[error("environment {environment_id} is {status}: it cannot become RUNNING")]
    UnexpectedStatus {
        /// The environment waited for.
        environment_id: String,
        /// Its status.
        status: EnvironmentStatus,
    },
}

impl From<ValidationError> for Error {
    fn from(e: ValidationError) -> Self {
        Error::Validation(e)
    }
}

impl From<ServiceError> for Error {
    fn from(e: ServiceError) -> Self {
        Error::Service(e)
    }
}

impl Error {
    /// The service error, if this is one.
    pub fn as_service_error(&self) -> Option<&ServiceError> {
        match self {
            Error::Service(e) => Some(e),
            _ => None,
        }
    }

    /// The validation error, if the request was rejected before sending.
    pub fn as_validation_error(&self) -> Option<&ValidationError> {
        match self {
            Error::Validation(e) => Some(e),
            _ => None,
        }
    }

    /// The service error code (`InvalidStatusException`, ...), if the service sent one.
    pub fn service_code(&self) -> Option<&str> {
        self.as_service_error().map(|e| e.code.as_str())
    }

    /// The request id of the response, if there was one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Service(e) => e.request_id.as_deref(),
            Error::Response { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status of the response, if there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Service(e) => Some(e.http_status),
            Error::Response { http_status, .. } => Some(*http_status),
            _ => None,
        }
    }

    /// Whether the service asked the caller to slow down (a throttling code or HTTP 429).
    pub fn is_throttling(&self) -> bool {
        match self {
            Error::Service(e) => e.is_throttling(),
            Error::Response { http_status, .. } => *http_status == 429,
            _ => false,
        }
    }

    /// Whether the resource does not exist (`ResourceNotFoundException`).
    pub fn is_not_found(&self) -> bool {
        self.service_code() == Some("ResourceNotFoundException")
    }

    /// Whether the environment was in the wrong state (`InvalidStatusException`).
    pub fn is_invalid_status(&self) -> bool {
        self.service_code() == Some("InvalidStatusException")
    }

    /// Whether the request was rejected before sending.
    pub fn is_validation(&self) -> bool {
        matches!(self, Error::Validation(_))
    }

    /// Whether trying the same call again may succeed: throttling, HTTP 5xx,
    /// transport failures and timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Service(e) => e.is_retryable(),
            Error::Response { http_status, .. } => *http_status >= 500 || *http_status == 429,
            Error::Dispatch { .. } | Error::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// An error while building a [`Client`](crate::Client).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No region was given and the standard chain found none.
    #[error(
        "no AWS region configured: pass a region, set AWS_REGION, or set `region` in the profile"
    )]
    NoRegion,

    /// The region is not a plausible region name.
    #[error("invalid region {0:?}: expected lower-case letters, digits and '-'")]
    InvalidRegion(String),

    /// The endpoint URL is not usable.
    #[error("invalid endpoint URL {url:?} (from {origin}): {reason}")]
    InvalidEndpoint {
        /// The URL as given.
        url: String,
        /// Where it came from (`builder`, `AWS_ENDPOINT_URL_CLOUDSHELL`, ...).
        origin: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A setting has an invalid value.
    #[error("invalid {name} {value:?}: {reason}")]
    InvalidSetting {
        /// The setting (`AWS_MAX_ATTEMPTS`, `max_attempts`, ...).
        name: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The credential chain is not available.
    #[error("no AWS credentials provider is configured")]
    NoCredentialsProvider,

    /// The profile selected (builder or `AWS_PROFILE`) is defined in neither
    /// the shared config file nor the credentials file.
    #[error(
        "the AWS profile {name:?} is not defined in the shared config or credentials file ({})",
        profile_list(known)
    )]
    ProfileNotFound {
        /// The profile asked for.
        name: String,
        /// The profiles the files define, sorted.
        known: Vec<String>,
    },

    /// The HTTP client could not be built.
    #[error("could not build the HTTP client")]
    HttpClient(#[source] BoxError),
}

fn profile_list(known: &[String]) -> String {
    if known.is_empty() {
        "they define no profiles".to_owned()
    } else {
        format!("profiles there: {}", known.join(", "))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn service(code: &str, status: u16) -> Error {
        Error::Service(ServiceError {
            operation: "StartEnvironment",
            code: code.into(),
            message: Some("Expected the environment status to be in SUSPENDED.".into()),
            request_id: Some("rid-1".into()),
            http_status: status,
        })
    }

    #[test]
    fn predicates() {
        let e = service("InvalidStatusException", 400);
        assert!(e.is_invalid_status() && !e.is_retryable() && !e.is_throttling());
        assert_eq!(e.service_code(), Some("InvalidStatusException"));
        assert_eq!(e.request_id(), Some("rid-1"));
        assert_eq!(
            e.to_string(),
            "StartEnvironment failed: InvalidStatusException: Expected the environment status \
             to be in SUSPENDED. (HTTP 400, request id rid-1)"
        );
        assert!(service("ResourceNotFoundException", 404).is_not_found());
        let t = service("ThrottlingException", 400);
        assert!(t.is_throttling() && t.is_retryable());
        let t = service("Whatever", 429);
        assert!(t.is_throttling() && t.is_retryable());
        assert!(service("InternalFailure", 503).is_retryable());
        assert!(service("RequestTimeout", 400).is_retryable());
        let r = Error::Response {
            operation: "DescribeEnvironments",
            http_status: 502,
            request_id: None,
            reason: "expected JSON, got text/html page".into(),
        };
        assert!(r.is_retryable() && r.service_code().is_none());
        assert_eq!(
            r.to_string(),
            "DescribeEnvironments: unparseable response (HTTP 502): expected JSON, got text/html page"
        );
        let v = Error::from(ValidationError::new("TabId", "not a UUID"));
        assert!(v.is_validation() && !v.is_retryable());
        assert_eq!(
            v.to_string(),
            "request not sent: invalid `TabId`: not a UUID"
        );
    }

    #[test]
    fn display_does_not_repeat_source() {
        let inner: BoxError = "connection refused".into();
        let e = Error::Dispatch {
            operation: "SendHeartBeat",
            endpoint: "http://127.0.0.1:9".into(),
            attempts: 3,
            source: inner,
        };
        assert!(!e.to_string().contains("connection refused"));
        assert_eq!(
            std::error::Error::source(&e)
                .map(|s| s.to_string())
                .as_deref(),
            Some("connection refused")
        );
    }
}
