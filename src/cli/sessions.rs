//! Session and utility subcommands: session, delete-session, heartbeat,
//! upload-urls, download-urls, put-credentials.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use cloudshell_rs::Secret;
use serde_json::{Value, json};

use super::args::{DeleteSessionArgs, FileUrlArgs, HeartbeatArgs, PutCredentialsArgs, SessionArgs};
use super::context::Context;
use super::output::{Printer, Record, status_line};
use super::{CliError, CliResult};

/// `session`
pub async fn create(ctx: &Context, out: &Printer, args: SessionArgs) -> CliResult {
    let env = ctx.env_or_default(args.env).await?;
    let mut req = ctx
        .client
        .create_session()
        .environment_id(env.clone())
        .session_type(args.session_type)
        .q_cli_disabled(args.q_cli_disabled);
    if let Some(tab) = args.tab_id {
        req = req.tab_id(tab);
    }
    let resp = req.send().await?;
    let mut record: Record = vec![
        ("SessionId", resp.session_id.clone()),
        ("StreamUrl", resp.stream_url.clone()),
        ("EnvironmentId", resp.environment_id.clone()),
        ("TabId", resp.tab_id.clone()),
    ];
    let mut j = json!({
        "SessionId": resp.session_id,
        "StreamUrl": resp.stream_url,
        "EnvironmentId": resp.environment_id,
        "TabId": resp.tab_id,
    });
    if args.show_token {
        record.push(("TokenValue", resp.token_value.expose().to_string()));
        j["TokenValue"] = json!(resp.token_value.expose());
    }
    out.record(&record, j)
}

/// `delete-session`
pub async fn delete(ctx: &Context, out: &Printer, args: DeleteSessionArgs) -> CliResult {
    let env = ctx.env_or_default(args.env).await?;
    ctx.client
        .delete_session()
        .environment_id(env.clone())
        .session_id(args.session_id.clone())
        .send()
        .await?;
    out.record(
        &vec![
            ("SessionId", args.session_id.clone()),
            ("Deleted", "true".into()),
        ],
        json!({ "EnvironmentId": env, "SessionId": args.session_id }),
    )
}

/// `heartbeat`
pub async fn heartbeat(ctx: &Context, out: &Printer, args: HeartbeatArgs) -> CliResult {
    let env = ctx.env_or_default(args.env).await?;
    let send = || async {
        ctx.client
            .send_heart_beat()
            .environment_id(env.clone())
            .send()
            .await
    };
    let Some(every) = args.every else {
        send().await?;
        return out.record(
            &vec![("EnvironmentId", env.clone()), ("Heartbeat", "sent".into())],
            json!({ "EnvironmentId": env }),
        );
    };
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match send().await {
                    Ok(_) => {
                        sent += 1;
                        status_line(&format!("heartbeat {sent} sent to {env}"));
                    }
                    // Keep going through transient failures; the next tick retries.
                    Err(e) if e.is_retryable() => status_line(&format!("heartbeat failed (will retry): {}", super::chain(&e))),
                    Err(e) => return Err(e.into()),
                }
            }
            _ = tokio::signal::ctrl_c() => {
                status_line(&format!("stopped after {sent} heartbeat(s)"));
                return Err(CliError::with_code("", 130));
            }
        }
    }
}

/// `upload-urls` / `download-urls`
pub async fn file_urls(ctx: &Context, out: &Printer, args: FileUrlArgs, upload: bool) -> CliResult {
    let env = ctx.env_or_default(args.env).await?;
    let resp = if upload {
        let path = args.path.clone().unwrap_or_else(|| "upload".to_string());
        ctx.client
            .get_file_upload_urls()
            .environment_id(env.clone())
            .file_upload_path(path)
            .send()
            .await?
    } else {
        let path = args.path.clone().unwrap_or_else(|| "download".to_string());
        ctx.client
            .get_file_download_urls()
            .environment_id(env.clone())
            .file_download_path(path)
            .send()
            .await?
    };
    let secret = |s: &Secret| {
        if args.show_secrets {
            s.expose().to_string()
        } else {
            "***".to_string()
        }
    };
    let mut fields = serde_json::Map::new();
    for (k, v) in &resp.file_upload_presigned_fields {
        let is_secret = k.eq_ignore_ascii_case("x-amz-server-side-encryption-customer-key")
            || k.eq_ignore_ascii_case("x-amz-security-token");
        let v = if is_secret && !args.show_secrets {
            "***".to_string()
        } else {
            v.clone()
        };
        fields.insert(k.clone(), Value::String(v));
    }
    let key = resp.file_download_presigned_key.as_ref().map(secret);
    let mut record: Record = vec![
        (
            "FileUploadPresignedUrl",
            resp.file_upload_presigned_url.clone().unwrap_or_default(),
        ),
        (
            "FileDownloadPresignedUrl",
            resp.file_download_presigned_url.clone().unwrap_or_default(),
        ),
    ];
    if let Some(k) = &key {
        record.push(("FileDownloadPresignedKey", k.clone()));
    }
    if let Some(h) = &resp.file_download_presigned_key_hash {
        record.push(("FileDownloadPresignedKeyHash", h.clone()));
    }
    for (k, v) in &fields {
        if let Value::String(v) = v {
            record.push(("Field", format!("{k}={v}")));
        }
    }
    out.record(
        &record,
        json!({
            "FileUploadPresignedUrl": resp.file_upload_presigned_url,
            "FileUploadPresignedFields": fields,
            "FileDownloadPresignedUrl": resp.file_download_presigned_url,
            "FileDownloadPresignedKey": key,
            "FileDownloadPresignedKeyHash": resp.file_download_presigned_key_hash,
        }),
    )
}

/// Reads the refresh token from `CLOUDSHELL_RS_REFRESH_TOKEN` or from piped stdin.
fn read_refresh_token() -> CliResult<Secret> {
    if let Ok(t) = std::env::var("CLOUDSHELL_RS_REFRESH_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(Secret::new(t.trim().to_string()));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(CliError::with_code(
            "put-credentials reads the refresh token from CLOUDSHELL_RS_REFRESH_TOKEN or standard input (pipe it in); it is never taken from the command line",
            2,
        ));
    }
    let mut s = String::new();
    stdin.lock().read_to_string(&mut s)?;
    let t = s.trim();
    if t.is_empty() {
        return Err(CliError::with_code("no refresh token on standard input", 2));
    }
    Ok(Secret::new(t.to_string()))
}

/// `put-credentials`
pub async fn put_credentials(ctx: &Context, out: &Printer, args: PutCredentialsArgs) -> CliResult {
    let token = read_refresh_token()?;
    let env = ctx.env_or_default(args.env).await?;
    ctx.client
        .put_credentials()
        .environment_id(env.clone())
        .key_base(args.key_base)
        .refresh_token(token)
        .send()
        .await?;
    out.record(
        &vec![
            ("EnvironmentId", env.clone()),
            ("Credentials", "forwarded".into()),
        ],
        json!({ "EnvironmentId": env }),
    )
}
