//! Turning HTTP responses into outputs or errors. Never panics on any input.

use http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::client::error::{Error, ServiceError};

/// The parts of an HTTP response the parser looks at.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl RawResponse {
    pub(crate) fn request_id(&self) -> Option<String> {
        request_id(&self.headers)
    }
}

/// The request id from `x-amzn-RequestId` or `x-amz-request-id`.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    ["x-amzn-requestid", "x-amz-request-id", "x-amzn-request-id"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Strips a `:`-suffix (`Code:http://...`) and a namespace (`aws.foo#Code`).
pub(crate) fn sanitize_error_code(raw: &str) -> &str {
    let code = raw.split(':').next().unwrap_or(raw);
    let code = code.rsplit('#').next().unwrap_or(code);
    code.trim()
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(|b| b.is_ascii_whitespace())
}

/// Explains why a non-empty body is not JSON, or `None` if it parses as JSON.
fn not_json_reason(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let err = serde_json::from_slice::<serde::de::IgnoredAny>(body).err()?;
    let ctype = content_type(headers);
    let first = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied()
        .unwrap_or(b' ');
    let looks_like_json = first == b'{' || first == b'[';
    let html = ctype.as_deref().is_some_and(|c| c.contains("html")) || first == b'<';
    Some(if html {
        format!(
            "expected JSON, got {} page",
            ctype.as_deref().unwrap_or("an HTML")
        )
    } else if looks_like_json {
        json_error_reason(&err, None)
    } else {
        let kind = ctype
            .map(|c| format!("{c} body"))
            .unwrap_or_else(|| "a body".into());
        format!(
            "expected JSON, got {kind} starting with {:?}",
            snippet(body)
        )
    })
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(40)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn json_error_reason(err: &serde_json::Error, path: Option<String>) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Eof => format!(
            "truncated JSON at line {} column {}",
            err.line(),
            err.column()
        ),
        Category::Syntax => format!("invalid JSON: {err}"),
        Category::Io => format!("could not read the body: {err}"),
        Category::Data => match path {
            Some(p) if p != "." && !p.is_empty() => format!("field `{p}`: {err}"),
            _ => err.to_string(),
        },
    }
}

/// Parses a 2xx response into `T`. An empty body (or `null`) is accepted when `T`
/// can be built from `{}`.
pub(crate) fn parse_output<T: DeserializeOwned>(
    operation: &'static str,
    resp: &RawResponse,
) -> Result<T, Error> {
    let fail = |reason: String| Error::Response {
        operation,
        http_status: resp.status,
        request_id: resp.request_id(),
        reason,
    };
    let body: &[u8] = &resp.body;
    if is_blank(body) || body.trim_ascii() == b"null" {
        return serde_json::from_slice::<T>(b"{}").map_err(|_| {
            fail(if is_blank(body) {
                "empty body".into()
            } else {
                "body is JSON null".into()
            })
        });
    }
    if let Some(reason) = not_json_reason(&resp.headers, body) {
        return Err(fail(reason));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            Err(fail(json_error_reason(e.inner(), Some(path))))
        }
    }
}

/// Turns a non-2xx response into a [`ServiceError`], or into [`Error::Response`]
/// when no error code can be found.
pub(crate) fn parse_error(operation: &'static str, resp: &RawResponse) -> Error {
    let request_id = resp.request_id();
    let body: &[u8] = &resp.body;
    let json: Option<serde_json::Map<String, serde_json::Value>> = if is_blank(body) {
        None
    } else {
        serde_json::from_slice(body).ok()
    };
    let body_str = |keys: &[&str]| -> Option<String> {
        let map = json.as_ref()?;
        keys.iter()
            .find_map(|k| map.get(*k).and_then(|v| v.as_str()))
            .map(str::to_owned)
    };
    let header_code = resp
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let code = header_code
        .or_else(|| body_str(&["__type", "code", "Code"]))
        .map(|c| sanitize_error_code(&c).to_owned())
        .filter(|c| !c.is_empty());
    let message = body_str(&["message", "Message", "errorMessage"]);
    match code {
        Some(code) => Error::Service(ServiceError {
            operation,
            code,
            message,
            request_id,
            http_status: resp.status,
        }),
        None => {
            let reason = if is_blank(body) {
                "error response with an empty body".to_owned()
            } else if json.is_none() {
                not_json_reason(&resp.headers, body)
                    .unwrap_or_else(|| "error body is JSON but not an object".to_owned())
            } else {
                match message {
                    Some(m) => format!("error response without an error code: {m}"),
                    None => "error response without an error code".to_owned(),
                }
            };
            Error::Response {
                operation,
                http_status: resp.status,
                request_id,
                reason,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::client::types::{
        CreateSessionOutput, DeleteSessionOutput, DescribeEnvironmentsOutput,
        GetEnvironmentStatusOutput,
    };

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> RawResponse {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        RawResponse {
            status,
            headers: map,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    fn reason(e: Error) -> String {
        match e {
            Error::Response { reason, .. } => reason,
            other => panic!("expected a Response error, got {other:?}"),
        }
    }

    #[test]
    fn error_code_sanitizing() {
        assert_eq!(
            sanitize_error_code("InvalidStatusException"),
            "InvalidStatusException"
        );
        assert_eq!(
            sanitize_error_code("ThrottlingException:http://internal.amazon.com/coral/"),
            "ThrottlingException"
        );
        assert_eq!(
            sanitize_error_code("com.amazonaws.cloudshell#ResourceNotFoundException"),
            "ResourceNotFoundException"
        );
        assert_eq!(
            sanitize_error_code("aws.protocols#ValidationException:http://x/y"),
            "ValidationException"
        );
    }

    #[test]
    fn every_error_shape() {
        let rid = [("x-amzn-RequestId", "req-1")];
        let cases: Vec<(RawResponse, &str, Option<&str>)> = vec![
            // observed shape: lower-case code/message
            (
                resp(
                    400,
                    &rid,
                    r#"{"code":"InvalidStatusException","message":"Expected SUSPENDED."}"#,
                ),
                "InvalidStatusException",
                Some("Expected SUSPENDED."),
            ),
            // awsJson-style __type with namespace
            (
                resp(
                    400,
                    &rid,
                    r#"{"__type":"com.amazonaws.cloudshell#ValidationException","Message":"bad"}"#,
                ),
                "ValidationException",
                Some("bad"),
            ),
            // Code / Message capitalised
            (
                resp(
                    404,
                    &[],
                    r#"{"Code":"ResourceNotFoundException","Message":"no env"}"#,
                ),
                "ResourceNotFoundException",
                Some("no env"),
            ),
            // header only, with suffix; header wins over body
            (
                resp(
                    400,
                    &[("x-amzn-ErrorType", "ThrottlingException:http://internal/")],
                    r#"{"code":"Other","message":"Rate exceeded"}"#,
                ),
                "ThrottlingException",
                Some("Rate exceeded"),
            ),
            // header, empty body
            (
                resp(403, &[("x-amzn-errortype", "ExpiredTokenException")], ""),
                "ExpiredTokenException",
                None,
            ),
        ];
        for (r, code, message) in cases {
            match parse_error("Op", &r) {
                Error::Service(e) => {
                    assert_eq!(e.code, code);
                    assert_eq!(e.message.as_deref(), message);
                    assert_eq!(e.http_status, r.status);
                }
                other => panic!("{other:?}"),
            }
        }
        let e = parse_error("Op", &resp(400, &rid, r#"{"code":"X"}"#));
        assert_eq!(e.request_id(), Some("req-1"));
        let e = parse_error(
            "Op",
            &resp(400, &[("x-amz-request-id", "r2")], r#"{"code":"X"}"#),
        );
        assert_eq!(e.request_id(), Some("r2"));
    }

    #[test]
    fn error_responses_without_a_code() {
        let html = resp(
            502,
            &[("content-type", "text/html; charset=utf-8")],
            "<html><body>Bad Gateway</body></html>",
        );
        assert_eq!(
            reason(parse_error("Op", &html)),
            "expected JSON, got text/html page"
        );
        assert_eq!(
            reason(parse_error("Op", &resp(500, &[], ""))),
            "error response with an empty body"
        );
        assert_eq!(
            reason(parse_error(
                "Op",
                &resp(403, &[], r#"{"message":"Missing Authentication Token"}"#)
            )),
            "error response without an error code: Missing Authentication Token"
        );
        let r = reason(parse_error(
            "Op",
            &resp(500, &[("content-type", "text/plain")], "oops"),
        ));
        assert_eq!(
            r,
            "expected JSON, got text/plain body starting with \"oops\""
        );
    }

    #[test]
    fn output_parse_failures_say_what_was_wrong() {
        let e = parse_output::<GetEnvironmentStatusOutput>(
            "GetEnvironmentStatus",
            &resp(200, &[], r#"{"Status":5}"#),
        )
        .unwrap_err();
        let r = reason(e);
        assert!(
            r.starts_with("field `Status`: invalid type: integer `5`, expected a string"),
            "{r}"
        );

        let body = r#"{"Environments":[{"EnvironmentId":"e","Status":"RUNN"#;
        let r = reason(
            parse_output::<DescribeEnvironmentsOutput>("D", &resp(200, &[], body)).unwrap_err(),
        );
        assert_eq!(r, format!("truncated JSON at line 1 column {}", body.len()));

        let r = reason(
            parse_output::<DescribeEnvironmentsOutput>(
                "D",
                &resp(200, &[], r#"{"Environments":[}"#),
            )
            .unwrap_err(),
        );
        assert!(r.starts_with("invalid JSON: "), "{r}");

        let r = reason(
            parse_output::<DescribeEnvironmentsOutput>(
                "D",
                &resp(200, &[("content-type", "text/html")], "<html></html>"),
            )
            .unwrap_err(),
        );
        assert_eq!(r, "expected JSON, got text/html page");

        let r = reason(parse_output::<CreateSessionOutput>("C", &resp(200, &[], "")).unwrap_err());
        assert_eq!(r, "empty body");

        let r = reason(
            parse_output::<CreateSessionOutput>(
                "C",
                &resp(200, &[], r#"{"SessionId":"s","StreamUrl":"u"}"#),
            )
            .unwrap_err(),
        );
        assert!(r.starts_with("missing field `TokenValue`"), "{r}");

        let r = reason(
            parse_output::<DescribeEnvironmentsOutput>(
                "D",
                &resp(
                    200,
                    &[],
                    r#"{"Environments":[{"EnvironmentId":"a"},{"EnvironmentId":7}]}"#,
                ),
            )
            .unwrap_err(),
        );
        assert!(
            r.starts_with("field `Environments[1].EnvironmentId`: invalid type"),
            "{r}"
        );

        // Void outputs accept an empty body, `{}` and `null`.
        for body in ["", "  ", "{}", "null", r#"{"Unknown":1}"#] {
            parse_output::<DeleteSessionOutput>("D", &resp(200, &[], body)).unwrap();
        }
    }

    #[test]
    fn parser_never_panics_on_odd_bytes() {
        let inputs: [&[u8]; 6] = [
            b"\xff\xfe",
            b"{\"a\":\"\xff\"}",
            b"[",
            b"\"",
            b"0",
            b"{\"Status\":{}}",
        ];
        for body in inputs {
            let r = RawResponse {
                status: 200,
                headers: HeaderMap::new(),
                body: bytes::Bytes::copy_from_slice(body),
            };
            let _ = parse_output::<GetEnvironmentStatusOutput>("G", &r);
            let r = RawResponse { status: 500, ..r };
            let _ = parse_error("G", &r);
        }
    }
}
