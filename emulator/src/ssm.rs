//! The one Systems Manager operation a Session Manager client calls:
//! `ResumeSession` (awsJson1.1, `X-Amz-Target: AmazonSSM.ResumeSession`,
//! signed for the `ssm` service). It gives a session of this emulator a new
//! token (the old one opens nothing any more) and a stream URL, as SSM does
//! for a client whose connection dropped.

use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::faults::RecordedRequest;
use crate::kms::json_response;
use crate::state::{SessionToken, StoreError};

const MAX_BODY: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResumeSessionRequest {
    session_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ResumeSessionResponse {
    session_id: String,
    token_value: String,
    stream_url: String,
}

/// Handles one `AmazonSSM.*` request.
pub(crate) async fn handle(app: &AppState, target: &str, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let (status, body) = match respond(app, target, &parts, &bytes) {
        Ok(body) => (StatusCode::OK, body),
        Err((status, kind, message)) => (
            status,
            serde_json::json!({ "__type": kind, "message": message })
                .to_string()
                .into_bytes(),
        ),
    };
    tracing::info!(operation = %target, status = status.as_u16(), request_id = %request_id, "SSM request");
    app.record(RecordedRequest {
        operation: target.to_owned(),
        body: crate::rest::recorded_body(&bytes),
        headers: crate::rest::recorded_headers(&parts.headers),
        status: status.as_u16(),
    });
    json_response(status, body, &request_id)
}

type SsmError = (StatusCode, &'static str, String);

fn respond(
    app: &AppState,
    target: &str,
    parts: &axum::http::request::Parts,
    bytes: &[u8],
) -> Result<Vec<u8>, SsmError> {
    let owner = app
        .verify_signature(parts, bytes, "ssm")
        .map_err(|e| (StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    if target != "AmazonSSM.ResumeSession" {
        return Err((
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("Unknown operation {target}"),
        ));
    }
    let request: ResumeSessionRequest = serde_json::from_slice(bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!("1 validation error detected: SessionId: {e}"),
        )
    })?;
    let session_id = request.session_id;
    let token = crate::rest::new_token();
    app.store
        .write(app.config.clock.now(), |s, _, _| {
            let owned = |env_id: &str| s.env(env_id).is_some_and(|e| e.owner == owner);
            let Some(i) = s
                .sessions
                .iter()
                .position(|r| r.session_id == session_id && owned(&r.environment_id))
            else {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "DoesNotExistException",
                    format!("Session {session_id} does not exist."),
                ));
            };
            s.sessions[i].token = SessionToken::new(token.clone());
            Ok(())
        })
        .map_err(|e| match e {
            StoreError::Rejected(e) => e,
            StoreError::Persist(io) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                format!("The emulator could not save its state: {io}"),
            ),
        })?;
    let response = ResumeSessionResponse {
        stream_url: crate::rest::stream_url(app, &session_id),
        session_id,
        token_value: token,
    };
    serde_json::to_vec(&response).map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        )
    })
}
