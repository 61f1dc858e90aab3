//! Configuration (endpoint, attempts, profiles, credential chain) and the
//! higher-level helpers (waiting for RUNNING, finding the default environment).

use std::time::Duration;

use cloudshell_rs::{Client, ConfigError, EnvironmentStatus, Error, transfer};

use crate::client_support::{
    SECRET_KEY, builder, client, credentials, isolate_env, verify_signature,
};
use crate::support::mock_http::{MockResponse, MockServer};

const ENV: &str = "0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10";

fn status(s: &str) -> MockResponse {
    MockResponse::json(
        200,
        &format!(r#"{{"EnvironmentId":"{ENV}","Status":"{s}"}}"#),
    )
}

#[tokio::test]
async fn wait_until_running_starts_a_suspended_environment() {
    let server = MockServer::start().await;
    server.push(status("SUSPENDING"));
    server.push(status("SUSPENDED"));
    server.push(MockResponse::json(
        200,
        &format!(r#"{{"EnvironmentId":"{ENV}"}}"#),
    ));
    server.push(status("RESUMING"));
    server.push(status("RESUMING"));
    server.push(status("RUNNING"));
    let c = client(&server).await;
    let mut seen = Vec::new();
    let st = c
        .wait_until_running(ENV, Duration::from_secs(30), |s| seen.push(s.clone()))
        .await
        .unwrap();
    assert_eq!(st, EnvironmentStatus::Running);
    assert_eq!(
        seen,
        [
            EnvironmentStatus::Suspending,
            EnvironmentStatus::Suspended,
            EnvironmentStatus::Resuming,
            EnvironmentStatus::Running
        ]
    );
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/getEnvironmentStatus",
            "/getEnvironmentStatus",
            "/startEnvironment",
            "/getEnvironmentStatus",
            "/getEnvironmentStatus",
            "/getEnvironmentStatus"
        ]
    );
}

#[tokio::test]
async fn wait_until_running_tolerates_a_concurrent_start() {
    let server = MockServer::start().await;
    server.push(status("SUSPENDED"));
    server.push(MockResponse::error(
        400,
        "InvalidStatusException",
        "Expected the environment status to be in SUSPENDED.",
    ));
    server.push(status("RUNNING"));
    let c = client(&server).await;
    c.wait_until_running(ENV, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn wait_until_running_fails_on_deleting_and_unknown() {
    for (s, expected) in [
        ("DELETING", EnvironmentStatus::Deleting),
        ("EXPLODED", EnvironmentStatus::Unknown("EXPLODED".into())),
    ] {
        let server = MockServer::start().await;
        server.push(status("CREATING"));
        server.push(status(s));
        let c = client(&server).await;
        let e = c
            .wait_until_running(ENV, Duration::from_secs(30), |_| {})
            .await
            .unwrap_err();
        match &e {
            Error::UnexpectedStatus {
                environment_id,
                status,
            } => {
                assert_eq!(environment_id, ENV);
                assert_eq!(*status, expected);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            format!("environment {ENV} is {s}: it cannot become RUNNING")
        );
    }
}

#[tokio::test]
async fn wait_until_running_times_out_with_the_last_status() {
    let server = MockServer::start().await;
    for _ in 0..50 {
        server.push(status("CREATING"));
    }
    let c = client(&server).await;
    let e = c
        .wait_until_running(ENV, Duration::from_millis(600), |_| {})
        .await
        .unwrap_err();
    match &e {
        Error::WaitTimeout {
            last_status,
            timeout,
            ..
        } => {
            assert_eq!(*last_status, Some(EnvironmentStatus::Creating));
            assert_eq!(*timeout, Duration::from_millis(600));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("(last status CREATING)"), "{e}");
    assert!(server.requests().len() >= 2);
}

#[tokio::test]
async fn find_or_create_default_prefers_the_listed_public_environment() {
    let server = MockServer::start().await;
    server.push(MockResponse::json(
        200,
        &format!(
            r#"{{"Environments":[
            {{"EnvironmentId":"vpc-env","EnvironmentName":"n","VpcConfig":{{"VpcId":"vpc-1","SubnetIds":["subnet-1"],"SecurityGroupIds":["sg-1"]}}}},
            {{"EnvironmentId":"{ENV}"}}]}}"#
        ),
    ));
    let c = client(&server).await;
    assert_eq!(c.find_or_create_default().await.unwrap(), ENV);
    assert_eq!(server.requests().len(), 1);

    let server = MockServer::start().await;
    server.push(MockResponse::json(
        200,
        r#"{"Environments":[{"EnvironmentId":"old","Status":"DELETING"},
            {"EnvironmentId":"vpc-env","VpcConfig":{"VpcId":"vpc-1","SubnetIds":["subnet-1"],"SecurityGroupIds":["sg-1"]}}]}"#,
    ));
    server.push(MockResponse::json(
        200,
        &format!(r#"{{"EnvironmentId":"{ENV}","Status":"CREATING"}}"#),
    ));
    let c = client(&server).await;
    assert_eq!(c.find_or_create_default().await.unwrap(), ENV);
    let reqs = server.requests();
    assert_eq!(reqs[1].path, "/createEnvironment");
    assert_eq!(reqs[1].body, b"{}");
}

/// The transfer API's default environment is the same one: an environment
/// being deleted does not count, and nothing is created.
#[tokio::test]
async fn transfers_skip_a_default_environment_being_deleted() {
    let listing = format!(
        r#"{{"Environments":[{{"EnvironmentId":"old","Status":"DELETING"}},
            {{"EnvironmentId":"{ENV}","Status":"SUSPENDED"}}]}}"#
    );
    let server = MockServer::start().await;
    server.push(MockResponse::json(200, &listing));
    server.push(MockResponse::json(200, &listing));
    let c = client(&server).await;
    assert_eq!(c.find_default().await.unwrap().as_deref(), Some(ENV));
    assert_eq!(transfer::resolve_environment(&c, None).await.unwrap(), ENV);

    let server = MockServer::start().await;
    server.push(MockResponse::json(
        200,
        r#"{"Environments":[{"EnvironmentId":"old","Status":"DELETING"}]}"#,
    ));
    let c = client(&server).await;
    let e = transfer::resolve_environment(&c, None).await.unwrap_err();
    assert!(
        matches!(&e, transfer::TransferError::UnknownEnvironment(_)),
        "{e}"
    );
    assert_eq!(server.requests().len(), 1, "nothing is created");
}

#[tokio::test]
async fn endpoint_and_attempts_from_the_environment() {
    let server = MockServer::start().await;
    for _ in 0..3 {
        server.push(MockResponse::error(500, "InternalFailure", "x"));
    }
    let url = server.url();
    isolate_env();
    let c = Client::builder()
        .region("eu-west-3")
        .credentials(credentials())
        .env_source(move |k| match k {
            "AWS_ENDPOINT_URL_CLOUDSHELL" => Some(url.clone()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:1".into()),
            "AWS_MAX_ATTEMPTS" => Some("2".into()),
            _ => None,
        })
        .build()
        .await
        .unwrap();
    assert_eq!(c.endpoint(), server.url());
    assert_eq!(c.region(), "eu-west-3");
    assert_eq!(c.max_attempts(), 2);
    let e = c.describe_environments().send().await.unwrap_err();
    assert_eq!(e.service_code(), Some("InternalFailure"));
    assert_eq!(server.requests().len(), 2);
    verify_signature(&server.requests()[0], SECRET_KEY, "eu-west-3");

    // The builder wins over the environment.
    let c = builder(&server)
        .env_source(|k| (k == "AWS_MAX_ATTEMPTS").then(|| "7".to_owned()))
        .max_attempts(4)
        .build()
        .await
        .unwrap();
    assert_eq!(c.max_attempts(), 4);
    assert_eq!(c.endpoint(), server.url());

    let bad = Client::builder()
        .region("us-east-1")
        .credentials(credentials())
        .env_source(|k| (k == "AWS_MAX_ATTEMPTS").then(|| "many".to_owned()))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            bad,
            ConfigError::InvalidSetting {
                name: "AWS_MAX_ATTEMPTS",
                ..
            }
        ),
        "{bad}"
    );

    let default = Client::builder()
        .region("ap-southeast-2")
        .credentials(credentials())
        .env_source(|_| None)
        .build()
        .await
        .unwrap();
    assert_eq!(
        default.endpoint(),
        "https://cloudshell.ap-southeast-2.amazonaws.com"
    );
    assert_eq!(default.max_attempts(), 3);
}

#[tokio::test]
async fn region_credentials_and_endpoint_from_a_profile() {
    let server = MockServer::start().await;
    server.push(MockResponse::json(200, r#"{"Environments":[]}"#));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = us-west-2\n\n[profile work]\nregion = eu-central-1\n\
             aws_access_key_id = AKIDPROFILE\naws_secret_access_key = PROFILESECRET\n\
             endpoint_url = {}\n",
            server.url()
        ),
    )
    .unwrap();
    isolate_env();
    let c = Client::builder()
        .profile("work")
        .config_file(&config)
        .env_source(|_| None)
        .build()
        .await
        .unwrap();
    assert_eq!(c.region(), "eu-central-1");
    assert_eq!(c.endpoint(), server.url());
    c.describe_environments().send().await.unwrap();
    let req = &server.requests()[0];
    assert!(
        req.header("authorization")
            .unwrap()
            .contains("Credential=AKIDPROFILE/")
    );
    assert_eq!(req.header("x-amz-security-token"), None);
    verify_signature(req, "PROFILESECRET", "eu-central-1");

    // The region given to the builder overrides the profile's.
    let c = Client::builder()
        .profile("work")
        .region("eu-north-1")
        .config_file(&config)
        .env_source(|_| None)
        .build()
        .await
        .unwrap();
    assert_eq!(c.region(), "eu-north-1");
}

#[tokio::test]
async fn no_credentials_in_the_chain_sends_nothing() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(&config, "[profile empty]\nregion = us-east-1\n").unwrap();
    isolate_env();
    let c = Client::builder()
        .profile("empty")
        .config_file(&config)
        .endpoint_url(server.url())
        .env_source(|_| None)
        .build()
        .await
        .unwrap();
    let e = c.describe_environments().send().await.unwrap_err();
    assert!(matches!(e, Error::Credentials(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "request not sent: could not load AWS credentials"
    );
    assert!(std::error::Error::source(&e).is_some());
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn no_region_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        "[profile noregion]\naws_access_key_id = A\naws_secret_access_key = B\n",
    )
    .unwrap();
    isolate_env();
    let e = Client::builder()
        .profile("noregion")
        .config_file(&config)
        .env_source(|_| None)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, ConfigError::NoRegion), "{e}");

    let e = Client::builder()
        .region("us-east-1/evil")
        .credentials(credentials())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, ConfigError::InvalidRegion(_)), "{e}");

    let e = Client::builder()
        .region("us-east-1")
        .credentials(credentials())
        .endpoint_url("ftp://example")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::InvalidEndpoint {
                origin: "builder",
                ..
            }
        ),
        "{e}"
    );
}
