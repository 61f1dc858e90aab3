//! The Systems Manager operations a Session Manager client calls (awsJson1.1,
//! `X-Amz-Target: AmazonSSM.<Operation>`, signed for the `ssm` service):
//! `ResumeSession` gives a session of this emulator a new token (the old one
//! opens nothing any more) and a stream URL, as SSM does for a client whose
//! connection dropped; `TerminateSession` ends a session as DeleteSession
//! does (its data channel gets `channel_closed`), as SSM does for a client
//! whose agent ignores the `TerminateSession` flag.

use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::faults::RecordedRequest;
use crate::kms::json_response;
use crate::state::{SessionToken, StateFile, StoreError};

const MAX_BODY: usize = 64 * 1024;

/// The input of `ResumeSession` and of `TerminateSession`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionIdRequest {
    session_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TerminateSessionResponse {
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
    let terminate_op = match target {
        "AmazonSSM.ResumeSession" => false,
        "AmazonSSM.TerminateSession" => true,
        _ => {
            return Err((
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                format!("Unknown operation {target}"),
            ));
        }
    };
    let request: SessionIdRequest = serde_json::from_slice(bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!("1 validation error detected: SessionId: {e}"),
        )
    })?;
    let response = if terminate_op {
        serde_json::to_vec(&terminate(app, &owner, request.session_id)?)
    } else {
        serde_json::to_vec(&resume(app, &owner, request.session_id)?)
    };
    response.map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        )
    })
}

fn store_error(e: StoreError<SsmError>) -> SsmError {
    match e {
        StoreError::Rejected(e) => e,
        StoreError::Persist(io) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            format!("The emulator could not save its state: {io}"),
        ),
    }
}

/// Where session `session_id` is among the sessions, if it belongs to an
/// environment of `owner`'s.
fn owned_session(s: &StateFile, owner: &str, session_id: &str) -> Option<usize> {
    s.sessions.iter().position(|r| {
        r.session_id == session_id && s.env(&r.environment_id).is_some_and(|e| e.owner == owner)
    })
}

/// `ResumeSession`: a new token for a session of `owner`'s.
fn resume(
    app: &AppState,
    owner: &str,
    session_id: String,
) -> Result<ResumeSessionResponse, SsmError> {
    let token = crate::rest::new_token();
    app.store
        .write(app.config.clock.now(), |s, _, _| {
            let Some(i) = owned_session(s, owner, &session_id) else {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "DoesNotExistException",
                    format!("Session {session_id} does not exist."),
                ));
            };
            s.sessions[i].token = SessionToken::new(token.clone());
            Ok(())
        })
        .map_err(store_error)?;
    Ok(ResumeSessionResponse {
        stream_url: crate::rest::stream_url(app, &session_id),
        session_id,
        token_value: token,
    })
}

/// `TerminateSession`: the session of `owner`'s ends as at DeleteSession.
/// Like SSM, a session that is already gone (or never was) is not an error.
fn terminate(
    app: &AppState,
    owner: &str,
    session_id: String,
) -> Result<TerminateSessionResponse, SsmError> {
    app.store
        .write(app.config.clock.now(), |s, _, events| {
            if owned_session(s, owner, &session_id).is_some() {
                s.close_sessions(events, |r| r.session_id == session_id);
            }
            Ok(())
        })
        .map_err(store_error)?;
    Ok(TerminateSessionResponse { session_id })
}
