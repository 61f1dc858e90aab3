//! Malformed responses, service errors, retries, timeouts and validation.

use std::time::Duration;

use cloudshell_rs::{Error, Secret, VpcConfig};

use crate::client_support::{SECRET_KEY, SESSION_TOKEN, builder, client};
use crate::support::mock_http::{MockResponse, MockServer};

const ENV: &str = "0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10";

fn response_reason(e: &Error) -> (&str, u16) {
    match e {
        Error::Response {
            reason,
            http_status,
            ..
        } => (reason.as_str(), *http_status),
        other => panic!("expected Error::Response, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_json_is_a_response_error_and_not_retried() {
    let server = MockServer::start().await;
    server.push(MockResponse::raw(
        200,
        &[
            ("content-type", "application/json"),
            ("x-amzn-RequestId", "rid-bad"),
        ],
        br#"{"Environments":[}"#,
    ));
    let e = client(&server)
        .await
        .describe_environments()
        .send()
        .await
        .unwrap_err();
    let (reason, status) = response_reason(&e);
    assert!(reason.starts_with("invalid JSON: "), "{reason}");
    assert_eq!(status, 200);
    assert_eq!(e.request_id(), Some("rid-bad"));
    assert!(!e.is_retryable());
    assert_eq!(server.requests().len(), 1);
    let text = e.to_string();
    assert!(text.starts_with("DescribeEnvironments: unparseable response (HTTP 200, request id rid-bad): invalid JSON"), "{text}");
}

#[tokio::test]
async fn html_error_page() {
    let server = MockServer::start().await;
    server.push(MockResponse::raw(
        502,
        &[("content-type", "text/html")],
        b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>",
    ));
    let c = builder(&server).max_attempts(1).build().await.unwrap();
    let e = c
        .get_environment_status()
        .environment_id(ENV)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        response_reason(&e),
        ("expected JSON, got text/html page", 502)
    );
    assert!(e.is_retryable());
    assert_eq!(
        e.to_string(),
        "GetEnvironmentStatus: unparseable response (HTTP 502): expected JSON, got text/html page"
    );
}

#[tokio::test]
async fn empty_body_where_output_is_required() {
    let server = MockServer::start().await;
    server.push(MockResponse::raw(200, &[], b""));
    let e = client(&server)
        .await
        .create_session()
        .environment_id(ENV)
        .send()
        .await
        .unwrap_err();
    assert_eq!(response_reason(&e), ("empty body", 200));
}

#[tokio::test]
async fn truncated_json() {
    let server = MockServer::start().await;
    let body = r#"{"SessionId":"s","TokenValue":"SECRET-IN-TRUNCATED-BODY","Stream"#;
    server.push(MockResponse::json(200, body));
    let e = client(&server)
        .await
        .create_session()
        .environment_id(ENV)
        .send()
        .await
        .unwrap_err();
    let (reason, _) = response_reason(&e);
    assert_eq!(
        reason,
        format!("truncated JSON at line 1 column {}", body.len())
    );
    assert!(!format!("{e:?} {e}").contains("SECRET-IN-TRUNCATED-BODY"));
}

#[tokio::test]
async fn wrong_type_in_a_field() {
    let server = MockServer::start().await;
    server.push(MockResponse::json(
        200,
        r#"{"EnvironmentId":"e","Status":5}"#,
    ));
    let e = client(&server)
        .await
        .get_environment_status()
        .environment_id(ENV)
        .send()
        .await
        .unwrap_err();
    let (reason, _) = response_reason(&e);
    assert!(
        reason.starts_with("field `Status`: invalid type: integer `5`, expected a string"),
        "{reason}"
    );
}

#[tokio::test]
async fn throttling_then_success() {
    let server = MockServer::start().await;
    server.push(MockResponse::error(
        400,
        "ThrottlingException",
        "Rate exceeded",
    ));
    server.push(MockResponse::raw(
        429,
        &[("content-type", "application/json")],
        br#"{"message":"Too Many Requests"}"#,
    ));
    server.push(MockResponse::json(200, r#"{"Environments":[]}"#));
    let out = client(&server)
        .await
        .describe_environments()
        .send()
        .await
        .unwrap();
    assert!(out.environments.is_empty());
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    // Each attempt is signed afresh and carries the same body.
    assert!(
        reqs.iter()
            .all(|r| r.body == b"{}" && r.path == "/describeEnvironments")
    );
}

#[tokio::test]
async fn server_error_then_success() {
    let server = MockServer::start().await;
    server.push(MockResponse::error(500, "InternalFailure", "oops"));
    server.push(MockResponse::json(
        200,
        r#"{"EnvironmentId":"e","Status":"RUNNING"}"#,
    ));
    client(&server)
        .await
        .get_environment_status()
        .environment_id(ENV)
        .send()
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn dropped_connection_then_success() {
    let server = MockServer::start().await;
    server.push(MockResponse::Close);
    server.push(MockResponse::json(200, "{}"));
    client(&server)
        .await
        .send_heart_beat()
        .environment_id(ENV)
        .send()
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn max_attempts_exhausted() {
    let server = MockServer::start().await;
    for _ in 0..4 {
        server.push(MockResponse::error(
            503,
            "ServiceUnavailableException",
            "try later",
        ));
    }
    let e = client(&server)
        .await
        .send_heart_beat()
        .environment_id(ENV)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.service_code(), Some("ServiceUnavailableException"));
    assert_eq!(e.http_status(), Some(503));
    assert_eq!(e.request_id(), Some("mock-request-id"));
    assert!(e.is_retryable());
    assert_eq!(server.requests().len(), 3, "default max_attempts is 3");
    assert_eq!(server.unused(), 1);

    let server = MockServer::start().await;
    for _ in 0..4 {
        server.push(MockResponse::error(400, "ThrottlingException", "slow down"));
    }
    let c = builder(&server).max_attempts(1).build().await.unwrap();
    let e = c
        .send_heart_beat()
        .environment_id(ENV)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_throttling());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = MockServer::start().await;
    server.push(MockResponse::error(
        400,
        "InvalidStatusException",
        "Expected the environment status to be in SUSPENDED.",
    ));
    server.push(MockResponse::raw(
        404,
        &[("content-type", "application/json"), ("x-amz-request-id", "rid-404")],
        br#"{"__type":"com.amazonaws.cloudshell#ResourceNotFoundException","Message":"no such environment"}"#,
    ));
    let c = client(&server).await;
    let e = c
        .start_environment()
        .environment_id(ENV)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_invalid_status() && !e.is_retryable() && !e.is_not_found());
    assert_eq!(
        e.to_string(),
        "StartEnvironment failed: InvalidStatusException: Expected the environment status to be \
         in SUSPENDED. (HTTP 400, request id mock-request-id)"
    );
    let e = c
        .get_environment_status()
        .environment_id(ENV)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_not_found());
    assert_eq!(e.request_id(), Some("rid-404"));
    let service = e.as_service_error().unwrap();
    assert_eq!(service.message(), Some("no such environment"));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn timeout_when_the_server_never_answers() {
    let server = MockServer::start().await;
    server.push(MockResponse::Hang);
    let c = builder(&server)
        .operation_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let e = c.describe_environments().send().await.unwrap_err();
    match &e {
        Error::Timeout {
            operation,
            timeout,
            attempts,
        } => {
            assert_eq!(*operation, "DescribeEnvironments");
            assert_eq!(*timeout, Duration::from_millis(300));
            assert_eq!(*attempts, 1);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(e.is_retryable());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn unreachable_endpoint_is_a_dispatch_error() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    crate::client_support::isolate_env();
    let c = cloudshell_rs::Client::builder()
        .region("us-east-1")
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials(crate::client_support::credentials())
        .max_attempts(2)
        .env_source(|_| None)
        .build()
        .await
        .unwrap();
    let e = c.describe_environments().send().await.unwrap_err();
    match &e {
        Error::Dispatch { attempts, .. } => assert_eq!(*attempts, 2),
        other => panic!("expected Dispatch, got {other:?}"),
    }
    let display = e.to_string();
    let source = std::error::Error::source(&e).unwrap().to_string();
    assert!(
        !display.contains(&source),
        "Display repeats its source: {display}"
    );
    assert!(e.is_retryable());
}

#[tokio::test]
async fn validation_errors_send_nothing() {
    let server = MockServer::start().await;
    let c = client(&server).await;
    let good_vpc = || VpcConfig::new("vpc-1".into(), vec!["subnet-1".into()], vec!["sg-1".into()]);
    let cases: Vec<(Result<(), Error>, &str)> = vec![
        (
            c.get_environment_status().send().await.map(drop),
            "EnvironmentId",
        ),
        (
            c.start_environment()
                .environment_id("")
                .send()
                .await
                .map(drop),
            "EnvironmentId",
        ),
        (c.stop_environment().send().await.map(drop), "EnvironmentId"),
        (
            c.delete_environment()
                .environment_id(" ")
                .send()
                .await
                .map(drop),
            "EnvironmentId",
        ),
        (
            c.send_heart_beat()
                .environment_id("a\nb")
                .send()
                .await
                .map(drop),
            "EnvironmentId",
        ),
        (c.create_session().send().await.map(drop), "EnvironmentId"),
        (
            c.create_session()
                .environment_id(ENV)
                .tab_id("not-a-uuid")
                .send()
                .await
                .map(drop),
            "TabId",
        ),
        (
            c.create_session()
                .environment_id(ENV)
                .tab_id("0b6f2c4e-3f7a-1d1e-9c55-2a9e8e1d7b10")
                .send()
                .await
                .map(drop),
            "TabId",
        ),
        (
            c.create_session()
                .environment_id(ENV)
                .session_type("")
                .send()
                .await
                .map(drop),
            "SessionType",
        ),
        (
            c.delete_session()
                .environment_id(ENV)
                .send()
                .await
                .map(drop),
            "SessionId",
        ),
        (
            c.get_file_upload_urls().send().await.map(drop),
            "EnvironmentId",
        ),
        (
            c.get_file_download_urls()
                .environment_id(ENV)
                .file_download_path("")
                .send()
                .await
                .map(drop),
            "FileDownloadPath",
        ),
        (
            c.put_credentials()
                .environment_id(ENV)
                .key_base("kb")
                .send()
                .await
                .map(drop),
            "RefreshToken",
        ),
        (
            c.put_credentials()
                .environment_id(ENV)
                .refresh_token(Secret::new("t"))
                .send()
                .await
                .map(drop),
            "KeyBase",
        ),
        (
            c.create_environment()
                .vpc_config(good_vpc())
                .send()
                .await
                .map(drop),
            "EnvironmentName",
        ),
        (
            c.create_environment()
                .environment_name("n")
                .vpc_config(VpcConfig::new("vpc-1".into(), vec![], vec!["sg-1".into()]))
                .send()
                .await
                .map(drop),
            "VpcConfig.SubnetIds",
        ),
        (
            c.create_environment()
                .environment_name("n")
                .vpc_config(VpcConfig::new(
                    "vpc-1".into(),
                    vec!["subnet-1".into()],
                    (1..=6).map(|i| format!("sg-{i}")).collect(),
                ))
                .send()
                .await
                .map(drop),
            "VpcConfig.SecurityGroupIds",
        ),
    ];
    for (result, field) in cases {
        let e = result.unwrap_err();
        let v = e
            .as_validation_error()
            .unwrap_or_else(|| panic!("expected validation error, got {e:?}"));
        assert_eq!(v.field, field, "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("request not sent: invalid `{field}`: ")),
            "{e}"
        );
    }
    assert!(
        server.requests().is_empty(),
        "validation errors must not send anything"
    );
}

#[tokio::test]
async fn no_secret_in_debug_or_display_of_client_and_errors() {
    let server = MockServer::start().await;
    server.push(MockResponse::error(
        403,
        "ExpiredTokenException",
        "The security token included in the request is expired",
    ));
    let c = client(&server).await;
    let e = c.describe_environments().send().await.unwrap_err();
    for text in [
        format!("{c:?}"),
        format!("{e:?}"),
        e.to_string(),
        format!("{:?}", builder(&server)),
    ] {
        assert!(!text.contains(SECRET_KEY), "{text}");
        assert!(!text.contains(SESSION_TOKEN), "{text}");
    }
}

/// Every test's log output goes to one process-wide subscriber at TRACE level
/// (installed by `isolate_env`), so this covers the other tests' calls too.
#[tokio::test]
async fn logs_show_attempts_but_no_secrets() {
    let server = MockServer::start().await;
    server.push(MockResponse::json(
        200,
        r#"{"SessionId":"s","TokenValue":"TOKEN-VALUE-SECRET","StreamUrl":"wss://x"}"#,
    ));
    server.push(MockResponse::error(
        400,
        "ThrottlingException",
        "Rate exceeded",
    ));
    server.push(MockResponse::json(200, "{}"));
    let c = client(&server).await;
    c.create_session().environment_id(ENV).send().await.unwrap();
    c.put_credentials()
        .environment_id(ENV)
        .key_base("kb")
        .refresh_token(Secret::new("REFRESH-TOKEN-SECRET"))
        .send()
        .await
        .unwrap();

    let logs = crate::client_support::captured_logs();
    let has_line = |parts: &[&str]| logs.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has_line(&["retrying", "operation=\"PutCredentials\"", "attempt=1"]),
        "{logs}"
    );
    assert!(
        has_line(&[
            "response",
            "operation=\"PutCredentials\"",
            "attempt=2",
            "status=200"
        ]),
        "{logs}"
    );
    for secret in [
        SECRET_KEY,
        SESSION_TOKEN,
        "TOKEN-VALUE-SECRET",
        "REFRESH-TOKEN-SECRET",
        "SSEC-KEY-SECRET",
        "PROFILESECRET",
        "Signature=",
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
}
