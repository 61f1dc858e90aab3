//! Every operation against the scripted server: exact request on the wire, parsed output.

use cloudshell_rs::{EnvironmentStatus, Secret, VpcConfig};
use serde_json::json;

use crate::client_support::{
    ACCESS_KEY, REGION, SECRET_KEY, SESSION_TOKEN, client, verify_signature,
};
use crate::support::mock_http::{MockResponse, MockServer, RecordedRequest};

const ENV: &str = "0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10";

/// Checks the envelope every request shares, and returns the JSON body.
fn check_envelope(req: &RecordedRequest, path: &str) -> serde_json::Value {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, path);
    assert_eq!(
        req.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert_eq!(req.header("x-amz-security-token"), Some(SESSION_TOKEN));
    let auth = req.header("authorization").unwrap();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")),
        "{auth}"
    );
    assert!(
        auth.contains(&format!("/{REGION}/cloudshell/aws4_request, ")),
        "{auth}"
    );
    assert!(
        auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "),
        "{auth}"
    );
    assert!(req.header("x-amz-date").is_some());
    verify_signature(req, SECRET_KEY, REGION);
    req.json()
}

#[tokio::test]
async fn describe_environments() {
    let server = MockServer::start().await;
    server.push(MockResponse::json(
        200,
        r#"{"Environments":[
            {"EnvironmentId":"0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10"},
            {"EnvironmentId":"5d2f9a71-8e3c-4b0a-a6d4-71c3f0e2b9aa","EnvironmentName":"csi-rds","Status":"SUSPENDED",
             "VpcConfig":{"VpcId":"vpc-0abc","SubnetIds":["subnet-0a","subnet-0b"],"SecurityGroupIds":["sg-0c"]},
             "SomethingNew":{"x":1}}]}"#,
    ));
    let out = client(&server)
        .await
        .describe_environments()
        .send()
        .await
        .unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body, b"{}");
    assert_eq!(check_envelope(&reqs[0], "/describeEnvironments"), json!({}));
    assert_eq!(out.environments.len(), 2);
    assert_eq!(out.environments[0].environment_name, None);
    assert_eq!(out.environments[0].status, None);
    assert_eq!(
        out.environments[1].status,
        Some(EnvironmentStatus::Suspended)
    );
    assert_eq!(
        out.environments[1].vpc_config.as_ref().unwrap().subnet_ids,
        ["subnet-0a", "subnet-0b"]
    );
    assert_eq!(out.default_environment().unwrap().environment_id, ENV);
}

#[tokio::test]
async fn create_environment_default_and_vpc() {
    let server = MockServer::start().await;
    server.push(MockResponse::json(
        200,
        r#"{"EnvironmentId":"0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10","Status":"SUSPENDED",
            "StartScreenMessages":[{"type":"INFO","id":"al23-release-2023-12","content":"AL2023","link":{"url":"https://example.com","text":"Learn more"}}]}"#,
    ));
    server.push(MockResponse::json(
        200,
        r#"{"EnvironmentId":"5d2f9a71-8e3c-4b0a-a6d4-71c3f0e2b9aa","Status":"CREATING"}"#,
    ));
    let c = client(&server).await;
    let out = c.create_environment().send().await.unwrap();
    assert_eq!(out.environment_id, ENV);
    assert_eq!(out.status, EnvironmentStatus::Suspended);
    assert_eq!(
        out.start_screen_messages[0].id.as_deref(),
        Some("al23-release-2023-12")
    );

    let vpc = VpcConfig::new(
        "vpc-0abc".into(),
        vec!["subnet-0a".into(), "subnet-0b".into()],
        vec!["sg-0c".into()],
    );
    let out = c
        .create_environment()
        .environment_name("my-vpc-env")
        .vpc_config(vpc)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status, EnvironmentStatus::Creating);
    assert!(out.start_screen_messages.is_empty());

    let reqs = server.requests();
    assert_eq!(check_envelope(&reqs[0], "/createEnvironment"), json!({}));
    assert_eq!(
        check_envelope(&reqs[1], "/createEnvironment"),
        json!({"EnvironmentName":"my-vpc-env","VpcConfig":{
            "VpcId":"vpc-0abc","SubnetIds":["subnet-0a","subnet-0b"],"SecurityGroupIds":["sg-0c"]}})
    );
}

#[tokio::test]
async fn environment_id_operations() {
    let server = MockServer::start().await;
    server.push(MockResponse::json(
        200,
        r#"{"EnvironmentId":"0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10","Status":"RUNNING","StatusReason":null}"#,
    ));
    server.push(MockResponse::json(
        200,
        r#"{"EnvironmentId":"0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10"}"#,
    ));
    server.push(MockResponse::json(
        200,
        r#"{"EnvironmentId":"0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10"}"#,
    ));
    server.push(MockResponse::raw(200, &[], b""));
    server.push(MockResponse::json(200, "{}"));
    let c = client(&server).await;

    let st = c
        .get_environment_status()
        .environment_id(ENV)
        .send()
        .await
        .unwrap();
    assert_eq!(st.status, EnvironmentStatus::Running);
    assert_eq!(st.environment_id.as_deref(), Some(ENV));
    assert_eq!(st.status_reason, None);
    let started = c
        .start_environment()
        .environment_id(ENV)
        .send()
        .await
        .unwrap();
    assert_eq!(started.environment_id.as_deref(), Some(ENV));
    let stopped = c
        .stop_environment()
        .environment_id(ENV)
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.environment_id.as_deref(), Some(ENV));
    c.delete_environment()
        .environment_id(ENV)
        .send()
        .await
        .unwrap();
    c.send_heart_beat()
        .environment_id(ENV)
        .send()
        .await
        .unwrap();

    let reqs = server.requests();
    let paths = [
        "/getEnvironmentStatus",
        "/startEnvironment",
        "/stopEnvironment",
        "/deleteEnvironment",
        "/sendHeartBeat",
    ];
    assert_eq!(reqs.len(), paths.len());
    for (req, path) in reqs.iter().zip(paths) {
        assert_eq!(check_envelope(req, path), json!({ "EnvironmentId": ENV }));
    }
}

#[tokio::test]
async fn create_and_delete_session() {
    let server = MockServer::start().await;
    let session = r#"{"SessionId":"1700000000000000000-0123456789abcdef0","TokenValue":"TOKEN-VALUE-SECRET",
        "StreamUrl":"wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/1700000000000000000-0123456789abcdef0?role=publish_subscribe&cell-number=AAA",
        "EnvironmentId":"0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10"}"#;
    server.push(MockResponse::json(200, session));
    server.push(MockResponse::json(
        200,
        r#"{"SessionId":"s2","TokenValue":"t2","StreamUrl":"wss://x/v1/data-channel/s2"}"#,
    ));
    server.push(MockResponse::json(200, "{}"));
    let c = client(&server).await;

    let tab = "a3bb189e-8bf9-4888-9912-ace4e6543002";
    let out = c
        .create_session()
        .environment_id(ENV)
        .tab_id(tab)
        .q_cli_disabled(true)
        .send()
        .await
        .unwrap();
    assert_eq!(out.session_id, "1700000000000000000-0123456789abcdef0");
    assert_eq!(out.token_value.expose(), "TOKEN-VALUE-SECRET");
    assert!(out.stream_url.starts_with("wss://ssmmessages."));
    assert_eq!(out.tab_id, tab);
    assert!(!format!("{out:?}").contains("TOKEN-VALUE-SECRET"));

    // No TabId given: a UUID v4 is generated, sent and returned; EnvironmentId
    // falls back to the requested one when not echoed.
    let out2 = c.create_session().environment_id(ENV).send().await.unwrap();
    let generated = uuid::Uuid::parse_str(&out2.tab_id).unwrap();
    assert_eq!(generated.get_version_num(), 4);
    assert_eq!(out2.environment_id, ENV);

    c.delete_session()
        .environment_id(ENV)
        .session_id(&out.session_id)
        .send()
        .await
        .unwrap();

    let reqs = server.requests();
    assert_eq!(
        check_envelope(&reqs[0], "/createSession"),
        json!({"EnvironmentId":ENV,"TabId":tab,"SessionType":"TMUX","QCliDisabled":true})
    );
    assert_eq!(
        check_envelope(&reqs[1], "/createSession"),
        json!({"EnvironmentId":ENV,"TabId":out2.tab_id,"SessionType":"TMUX"})
    );
    assert_eq!(
        check_envelope(&reqs[2], "/deleteSession"),
        json!({"EnvironmentId":ENV,"SessionId":"1700000000000000000-0123456789abcdef0"})
    );
}

#[tokio::test]
async fn file_urls() {
    let server = MockServer::start().await;
    let body = r#"{"FileUploadPresignedUrl":"https://bucket.s3.amazonaws.com/",
        "FileUploadPresignedFields":{"key":"uploads/Cloud.svg","x-amz-server-side-encryption-customer-algorithm":"AES256",
            "x-amz-server-side-encryption-customer-key":"SSEC-KEY-SECRET","policy":"eyJ9"},
        "FileDownloadPresignedUrl":"https://bucket.s3.amazonaws.com/uploads/Cloud.svg?X-Amz-Signature=abc",
        "FileDownloadPresignedKey":"SSEC-KEY-SECRET","FileDownloadPresignedKeyHash":"md5hash=="}"#;
    server.push(MockResponse::json(200, body));
    server.push(MockResponse::json(200, body));
    let c = client(&server).await;
    let up = c
        .get_file_upload_urls()
        .environment_id(ENV)
        .file_upload_path("Cloud.svg")
        .send()
        .await
        .unwrap();
    assert_eq!(up.file_upload_presigned_fields["key"], "uploads/Cloud.svg");
    assert_eq!(
        up.file_download_presigned_key.as_ref().map(Secret::expose),
        Some("SSEC-KEY-SECRET")
    );
    assert_eq!(
        up.file_download_presigned_key_hash.as_deref(),
        Some("md5hash==")
    );
    assert!(!format!("{up:?}").contains("SSEC-KEY-SECRET"));
    assert!(
        !serde_json::to_string(&up)
            .unwrap()
            .contains("SSEC-KEY-SECRET")
    );
    let down = c
        .get_file_download_urls()
        .environment_id(ENV)
        .file_download_path("/home/cloudshell-user/Cloud.svg")
        .send()
        .await
        .unwrap();
    assert!(
        down.file_download_presigned_url
            .unwrap()
            .contains("Cloud.svg")
    );

    let reqs = server.requests();
    assert_eq!(
        check_envelope(&reqs[0], "/getFileUploadUrls"),
        json!({"EnvironmentId":ENV,"FileUploadPath":"Cloud.svg"})
    );
    assert_eq!(
        check_envelope(&reqs[1], "/getFileDownloadUrls"),
        json!({"EnvironmentId":ENV,"FileDownloadPath":"/home/cloudshell-user/Cloud.svg"})
    );
}

#[tokio::test]
async fn put_credentials() {
    let server = MockServer::start().await;
    server.push(MockResponse::raw(200, &[], b""));
    let c = client(&server).await;
    let builder = c
        .put_credentials()
        .environment_id(ENV)
        .key_base("keybase-1")
        .refresh_token(Secret::new("REFRESH-TOKEN-SECRET"));
    assert!(!format!("{builder:?}").contains("REFRESH-TOKEN-SECRET"));
    builder.send().await.unwrap();
    let reqs = server.requests();
    assert_eq!(
        check_envelope(&reqs[0], "/putCredentials"),
        json!({"EnvironmentId":ENV,"KeyBase":"keybase-1","RefreshToken":"REFRESH-TOKEN-SECRET"})
    );
}

#[tokio::test]
async fn one_connection_is_reused_across_calls_and_clones() {
    let server = MockServer::start().await;
    for _ in 0..4 {
        server.push(MockResponse::json(200, "{}"));
    }
    let c = client(&server).await;
    let c2 = c.clone();
    c.send_heart_beat()
        .environment_id(ENV)
        .send()
        .await
        .unwrap();
    c2.send_heart_beat()
        .environment_id(ENV)
        .send()
        .await
        .unwrap();
    c.describe_environments().send().await.unwrap();
    c2.describe_environments().send().await.unwrap();
    assert_eq!(server.requests().len(), 4);
    assert_eq!(server.connections(), 1);
}
