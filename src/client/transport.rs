//! Sending one operation: signing, retries with backoff, timeouts, parsing.

use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::client::Inner;
use crate::client::error::Error;
use crate::client::response::{RawResponse, parse_error, parse_output};
use crate::client::signing::{CONTENT_TYPE, sign_request};
use crate::client::types::ValidationError;

/// Base delay of the exponential backoff.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Largest delay between two attempts.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(20);

/// Full-jitter backoff before attempt `attempt + 1`: uniform in
/// `[0, min(cap, base * 2^(attempt-1))]`.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let ceiling = BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// The result of one attempt.
enum Attempt {
    Response(RawResponse),
    Transport(reqwest::Error),
}

impl Inner {
    /// Sends `operation` with `input` as its JSON body to `/<path>` and parses `O`.
    pub(crate) async fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &'static str,
        input: &I,
    ) -> Result<O, Error> {
        let body = serde_json::to_vec(input)
            .map_err(|e| Error::Validation(ValidationError::new("(body)", e.to_string())))?;
        let url = format!("{}/{}", self.endpoint, path);
        let mut attempts = 0u32;
        let result = tokio::time::timeout(
            self.operation_timeout,
            self.attempts(operation, &url, &body, &mut attempts),
        )
        .await;
        match result {
            Ok(r) => r,
            Err(_elapsed) => {
                debug!(operation, attempts, timeout = ?self.operation_timeout, "operation timed out");
                Err(Error::Timeout {
                    operation,
                    timeout: self.operation_timeout,
                    attempts,
                })
            }
        }
    }

    async fn attempts<O: DeserializeOwned>(
        &self,
        operation: &'static str,
        url: &str,
        body: &[u8],
        attempts: &mut u32,
    ) -> Result<O, Error> {
        loop {
            *attempts += 1;
            let attempt = *attempts;
            let started = Instant::now();
            let outcome = match self.attempt(url, body).await? {
                Attempt::Response(resp) => {
                    debug!(
                        operation,
                        attempt,
                        status = resp.status,
                        request_id = resp.request_id().as_deref().unwrap_or("-"),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "response"
                    );
                    if (200..300).contains(&resp.status) {
                        parse_output(operation, &resp)
                    } else {
                        Err(parse_error(operation, &resp))
                    }
                }
                Attempt::Transport(e) => {
                    debug!(
                        operation,
                        attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        error = %e,
                        "transport error"
                    );
                    // A builder error is a bug in the request, not a transient failure.
                    let permanent = e.is_builder();
                    let err = Error::Dispatch {
                        operation,
                        endpoint: self.endpoint.clone(),
                        attempts: attempt,
                        source: Box::new(e),
                    };
                    if permanent {
                        return Err(err);
                    }
                    Err(err)
                }
            };
            match outcome {
                Ok(out) => return Ok(out),
                Err(err) if err.is_retryable() && attempt < self.max_attempts => {
                    let delay = backoff(attempt);
                    debug!(operation, attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One signed POST. Errors here (credentials, signing) are never retried.
    async fn attempt(&self, url: &str, body: &[u8]) -> Result<Attempt, Error> {
        let creds = self
            .credentials
            .get()
            .await
            .map_err(|e| Error::Credentials(Box::new(e)))?;
        let signed = sign_request(url, body, &creds, &self.region, SystemTime::now())
            .map_err(Error::Credentials)?;
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(CONTENT_TYPE),
        );
        for h in signed {
            let mut value = http::HeaderValue::from_str(&h.value).map_err(|e| {
                Error::Credentials(
                    format!("signing produced an invalid `{}` header: {e}", h.name).into(),
                )
            })?;
            value.set_sensitive(h.sensitive);
            headers.insert(h.name, value);
        }
        let sent = self
            .http
            .post(url)
            .headers(headers)
            .body(body.to_vec())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Transport(e)),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        match resp.bytes().await {
            Ok(body) => Ok(Attempt::Response(RawResponse {
                status,
                headers,
                body,
            })),
            Err(e) => Ok(Attempt::Transport(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_by_the_exponential_ceiling() {
        for _ in 0..200 {
            assert!(backoff(1) <= Duration::from_millis(100));
            assert!(backoff(2) <= Duration::from_millis(200));
            assert!(backoff(5) <= Duration::from_millis(1600));
            assert!(backoff(30) <= BACKOFF_CAP);
            assert!(backoff(u32::MAX) <= BACKOFF_CAP);
        }
    }
}
