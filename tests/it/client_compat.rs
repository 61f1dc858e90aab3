//! The compatibility façade against the scripted server.

use cloudshell_rs::CloudShellClient;
use serde_json::json;

use crate::client_support::client;
use crate::support::mock_http::{MockResponse, MockServer};

const ENV: &str = "0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10";

#[tokio::test]
async fn seed_style_calls() {
    let server = MockServer::start().await;
    server.push(MockResponse::json(
        200,
        &format!(r#"{{"Environments":[{{"EnvironmentId":"{ENV}","Status":"RUNNING"}}]}}"#),
    ));
    server.push(MockResponse::json(
        200,
        &format!(r#"{{"EnvironmentId":"{ENV}","Status":"RUNNING"}}"#),
    ));
    server.push(MockResponse::json(
        200,
        r#"{"SessionId":"s-1","TokenValue":"TOK","StreamUrl":"wss://x/v1/data-channel/s-1"}"#,
    ));
    server.push(MockResponse::json(
        200,
        r#"{"FileUploadPresignedUrl":"https://u","FileUploadPresignedFields":{"key":"k"}}"#,
    ));
    server.push(MockResponse::json(200, "{}"));
    server.push(MockResponse::json(200, "{}"));
    let cs = CloudShellClient::from_client(client(&server).await);

    let resp = cs.describe_environments().await.unwrap();
    assert_eq!(
        resp.environments(),
        vec![json!({"EnvironmentId": ENV, "Status": "RUNNING"})]
    );
    assert!(resp.pretty_print().unwrap().contains("\"EnvironmentId\""));

    let status = cs.get_environment_status(ENV).await.unwrap();
    assert_eq!(status.status(), Some("RUNNING".to_string()));
    assert_eq!(status.environment_id().as_deref(), Some(ENV));
    assert_eq!(status.status_reason(), None);

    let tab = uuid::Uuid::new_v4().to_string();
    let session = cs
        .create_session(ENV, "TMUX", &tab, Some(true))
        .await
        .unwrap();
    assert_eq!(session.session_id().as_deref(), Some("s-1"));
    assert_eq!(session.token_value().as_deref(), Some("TOK"));
    assert!(!format!("{session:?}").contains("TOK\""));

    let up = cs.get_file_upload_urls(ENV).await.unwrap();
    assert_eq!(up.file_upload_presigned_url().as_deref(), Some("https://u"));
    assert_eq!(up.file_upload_presigned_fields(), Some(json!({"key":"k"})));
    assert_eq!(up.file_download_presigned_key(), None);

    cs.send_heart_beat(ENV).await.unwrap();
    cs.put_credentials(ENV, "kb", "rt").await.unwrap();

    let reqs = server.requests();
    assert_eq!(
        reqs[2].json(),
        json!({"EnvironmentId":ENV,"TabId":tab,"SessionType":"TMUX","QCliDisabled":true})
    );
    assert_eq!(reqs[3].json(), json!({"EnvironmentId":ENV}));
    assert_eq!(
        reqs[5].json(),
        json!({"EnvironmentId":ENV,"KeyBase":"kb","RefreshToken":"rt"})
    );

    // Seed-style errors convert into Box<dyn Error>.
    let boxed: Result<(), Box<dyn std::error::Error>> = async {
        cs.create_session(ENV, "TMUX", "not-a-uuid", None).await?;
        Ok(())
    }
    .await;
    assert!(boxed.unwrap_err().to_string().contains("TabId"));
    assert_eq!(server.requests().len(), 6);
}
