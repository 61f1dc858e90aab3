//! The CloudShell control-plane REST operations: `POST /<lowerCamelOp>`, routed
//! by path only, SigV4-verified, JSON in and out.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body as HttpBody, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::faults::{FaultKind, RecordedRequest};
use crate::sigv4::{self, RequestParts, VerifyParams};
use crate::state::{
    EnvironmentStatus, SessionRecord, SessionToken, StateEvent, StateFile, StoreError, StoredEnv,
    StoredRefreshToken, VpcConfig,
};
use crate::wire::{self, ApiError, Body};

/// Largest REST request body accepted.
const MAX_BODY: usize = 1 << 20;

/// Signing name of the service.
pub const SERVICE: &str = "cloudshell";

/// The operations, as (path segment, PascalCase name).
pub const OPERATIONS: &[(&str, &str)] = &[
    ("describeEnvironments", "DescribeEnvironments"),
    ("createEnvironment", "CreateEnvironment"),
    ("getEnvironmentStatus", "GetEnvironmentStatus"),
    ("startEnvironment", "StartEnvironment"),
    ("stopEnvironment", "StopEnvironment"),
    ("deleteEnvironment", "DeleteEnvironment"),
    ("createSession", "CreateSession"),
    ("deleteSession", "DeleteSession"),
    ("sendHeartBeat", "SendHeartBeat"),
    ("getFileUploadUrls", "GetFileUploadUrls"),
    ("getFileDownloadUrls", "GetFileDownloadUrls"),
    ("putCredentials", "PutCredentials"),
    ("redeemCode", "RedeemCode"),
];

fn operation_for(method: &Method, path: &str) -> Option<&'static str> {
    if method != Method::POST {
        return None;
    }
    let seg = path.strip_prefix('/')?;
    OPERATIONS
        .iter()
        .find(|(p, _)| *p == seg)
        .map(|(_, name)| *name)
}

/// Axum fallback handler: every request that no other route claims.
pub(crate) async fn handle(State(app): State<AppState>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let err = ApiError::new(
                413,
                "RequestEntityTooLargeException",
                format!("Request body exceeds {MAX_BODY} bytes."),
            );
            let resp = error_response(&err, &request_id);
            app.record(RecordedRequest {
                operation: path.clone(),
                body: Value::Null,
                headers: recorded_headers(&parts.headers),
                status: err.status,
            });
            return resp;
        }
    };
    let operation = operation_for(&parts.method, &path);
    let op_name = operation.map_or_else(|| path.clone(), str::to_owned);

    let (status, response) = match respond(
        &app,
        &parts.method,
        &path,
        &query,
        &parts.headers,
        &bytes,
        operation,
        &request_id,
    )
    .await
    {
        Ok(resp) => (resp.status().as_u16(), resp),
        Err(err) => (err.status, error_response(&err, &request_id)),
    };
    tracing::info!(operation = %op_name, status, request_id = %request_id, "REST request");
    app.record(RecordedRequest {
        operation: op_name,
        body: recorded_body(&bytes),
        headers: recorded_headers(&parts.headers),
        status,
    });
    response
}

#[allow(clippy::too_many_arguments)]
async fn respond(
    app: &AppState,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    operation: Option<&'static str>,
    request_id: &str,
) -> Result<Response, ApiError> {
    let owner = sigv4::verify(
        &RequestParts {
            method: method.as_str(),
            raw_path: path,
            raw_query: query,
            headers,
            body,
        },
        &VerifyParams {
            region: &app.config.region,
            service: SERVICE,
            now: SystemTime::now(),
            max_skew: app.config.max_clock_skew,
            credentials: &app.config.credentials,
        },
    )
    .map_err(|e| ApiError::new(403, e.code(), e.to_string()))?;

    let Some(operation) = operation else {
        return Err(ApiError::new(
            404,
            "UnknownOperationException",
            format!("Unknown operation: {method} {path}"),
        ));
    };

    if let Some(kind) = app.take_fault(operation) {
        match kind {
            FaultKind::Delay(d) => tokio::time::sleep(d).await,
            FaultKind::Throttle => {
                return Err(ApiError::new(400, "ThrottlingException", "Rate exceeded"));
            }
            FaultKind::InternalError => {
                return Err(ApiError::internal(
                    "An internal error occurred. Try again later.",
                ));
            }
            FaultKind::ExpiredToken => {
                return Err(ApiError::new(
                    403,
                    "ExpiredTokenException",
                    "The security token included in the request is expired",
                ));
            }
            FaultKind::HtmlPage => {
                let mut resp = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n\
                     <body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n",
                )
                    .into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
                return Ok(resp);
            }
            FaultKind::MalformedJson => {
                return Ok(raw_json_response(
                    b"{\"EnvironmentId\": \"0b6f2c4e-3f7a".to_vec(),
                    request_id,
                ));
            }
            FaultKind::EmptyBody => return Ok(raw_json_response(Vec::new(), request_id)),
        }
    }

    let body = Body::parse(body)?;
    // The operations read and write the state file (and fsync it): off the
    // async workers, which meanwhile serve the data channel and the tasks
    // that follow state events (a new session's shell starts while
    // CreateSession's state is written).
    let app = Arc::clone(app);
    let value = tokio::task::spawn_blocking(move || operate(&app, &owner, operation, &body))
        .await
        .map_err(|e| ApiError::internal(format!("the operation failed: {e}")))??;
    let bytes = serde_json::to_vec(&value)
        .map_err(|e| ApiError::internal(format!("could not encode the response: {e}")))?;
    Ok(raw_json_response(bytes, request_id))
}

/// Runs `operation` on the state.
fn operate(app: &AppState, owner: &str, operation: &str, body: &Body) -> Result<Value, ApiError> {
    let ctx = Ctx {
        app,
        owner,
        now: app.config.clock.now(),
    };
    match operation {
        "DescribeEnvironments" => ctx.describe_environments(),
        "CreateEnvironment" => ctx.create_environment(body),
        "GetEnvironmentStatus" => ctx.get_environment_status(body),
        "StartEnvironment" => ctx.start_environment(body),
        "StopEnvironment" => ctx.stop_environment(body),
        "DeleteEnvironment" => ctx.delete_environment(body),
        "CreateSession" => ctx.create_session(body),
        "DeleteSession" => ctx.delete_session(body),
        "SendHeartBeat" => ctx.send_heartbeat(body),
        "GetFileUploadUrls" => ctx.file_urls(body, "FileUploadPath"),
        "GetFileDownloadUrls" => ctx.file_urls(body, "FileDownloadPath"),
        "PutCredentials" => ctx.put_credentials(body),
        "RedeemCode" => ctx.redeem_code(body),
        other => Err(ApiError::new(
            404,
            "UnknownOperationException",
            format!("Unknown operation: {other}"),
        )),
    }
}

fn raw_json_response(body: Vec<u8>, request_id: &str) -> Response {
    let mut resp = Response::new(HttpBody::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    set_request_id(resp.headers_mut(), request_id);
    resp
}

pub(crate) fn set_request_id(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
}

pub(crate) fn error_response(err: &ApiError, request_id: &str) -> Response {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        code: &'a str,
        message: &'a str,
    }
    let body = serde_json::to_vec(&ErrorBody {
        code: &err.code,
        message: &err.message,
    })
    .unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = raw_json_response(body, request_id);
    *resp.status_mut() = StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_REQUEST);
    if let Ok(v) = HeaderValue::from_str(&err.code) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

pub(crate) fn recorded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| *k != header::AUTHORIZATION)
        .map(|(k, v)| {
            let value = if k.as_str() == "x-amz-security-token" {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (k.as_str().to_owned(), value)
        })
        .collect()
}

pub(crate) fn recorded_body(bytes: &[u8]) -> Value {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// One request's context: the caller and the lifecycle time.
struct Ctx<'a> {
    app: &'a AppState,
    owner: &'a str,
    now: SystemTime,
}

fn to_value<T: Serialize>(v: T) -> Result<Value, ApiError> {
    serde_json::to_value(v)
        .map_err(|e| ApiError::internal(format!("could not encode the response: {e}")))
}

fn store_err(e: StoreError<ApiError>) -> ApiError {
    match e {
        StoreError::Rejected(e) => e,
        StoreError::Persist(io) => {
            tracing::error!("could not persist emulator state: {io}");
            ApiError::internal(format!("The emulator could not save its state: {io}"))
        }
    }
}

fn owned_env<'s>(s: &'s StateFile, owner: &str, id: &str) -> Result<&'s StoredEnv, ApiError> {
    s.env(id)
        .filter(|e| e.owner == owner)
        .ok_or_else(|| ApiError::not_found(id))
}

fn owned_env_mut<'s>(
    s: &'s mut StateFile,
    owner: &str,
    id: &str,
) -> Result<&'s mut StoredEnv, ApiError> {
    s.env_mut(id)
        .filter(|e| e.owner == owner)
        .ok_or_else(|| ApiError::not_found(id))
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 28
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{name}' at 'EnvironmentName' failed to satisfy constraint: \
             Member must have length less than or equal to 28 and match [a-zA-Z0-9_-]+"
        )))
    }
}

fn validate_vpc(vpc: &VpcConfig) -> Result<(), ApiError> {
    let bad = |member: &str, value: &str, rule: &str| {
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{value}' at 'VpcConfig.{member}' failed to satisfy constraint: {rule}"
        )))
    };
    let id_ok = |value: &str, prefix: &str| {
        value
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
    };
    if !id_ok(&vpc.vpc_id, "vpc-") {
        return bad("VpcId", &vpc.vpc_id, "Member must match vpc-[0-9a-z]+");
    }
    if vpc.subnet_ids.is_empty() {
        return bad(
            "SubnetIds",
            "[]",
            "Member must have length greater than or equal to 1",
        );
    }
    if let Some(s) = vpc.subnet_ids.iter().find(|s| !id_ok(s, "subnet-")) {
        return bad("SubnetIds", s, "Member must match subnet-[0-9a-z]+");
    }
    if vpc.security_group_ids.is_empty() || vpc.security_group_ids.len() > 5 {
        return bad(
            "SecurityGroupIds",
            &format!("{} items", vpc.security_group_ids.len()),
            "Member must have length between 1 and 5",
        );
    }
    if let Some(s) = vpc.security_group_ids.iter().find(|s| !id_ok(s, "sg-")) {
        return bad("SecurityGroupIds", s, "Member must match sg-[0-9a-z]+");
    }
    Ok(())
}

fn is_hyphenated_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

fn new_session_id(now: SystemTime) -> String {
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        % 10_000_000_000_000_000_000;
    let suffix = rand::random::<u128>() & ((1u128 << 68) - 1);
    format!("{nanos:019}-{suffix:017x}")
}

/// A session's `StreamUrl` on this emulator's gateway (a new cell number each time).
pub(crate) fn stream_url(app: &AppState, session_id: &str) -> String {
    format!(
        "{}/v1/data-channel/{}?role=publish_subscribe&cell-number={}",
        app.ws_base,
        session_id,
        new_cell_number()
    )
}

pub(crate) fn new_token() -> String {
    let bytes: Vec<u8> = (0..96).map(|_| rand::random::<u8>()).collect();
    STANDARD.encode(bytes)
}

/// A `cell-number` value: base64 containing `+`, `/` and `=` like the real ones.
fn new_cell_number() -> String {
    let mut bytes: Vec<u8> = (0..15).map(|_| rand::random::<u8>()).collect();
    bytes.extend_from_slice(&[0xfb, 0xff, 0xbf, 0x01]);
    STANDARD.encode(bytes)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Ctx<'_> {
    fn describe_environments(&self) -> Result<Value, ApiError> {
        let include_status = self.app.config.describe_includes_status;
        let resp = self
            .app
            .store
            .read(self.now, |s| wire::DescribeEnvironmentsResponse {
                environments: s
                    .environments
                    .iter()
                    .filter(|e| e.owner == self.owner)
                    .map(|e| wire::EnvironmentElement {
                        environment_id: e.id.clone(),
                        environment_name: e.name.clone(),
                        status: include_status.then(|| e.phase.as_str()),
                        vpc_config: e.vpc.clone(),
                    })
                    .collect(),
            });
        to_value(resp)
    }

    fn create_environment(&self, body: &Body) -> Result<Value, ApiError> {
        let name = body.opt_str("EnvironmentName")?;
        let vpc = body.opt_vpc_config("VpcConfig")?;
        let max_vpc = self.app.config.max_vpc_environments;
        let codes = &self.app.config.error_codes;
        let (id, status) = match vpc {
            None => {
                // Whether the service accepts a name for the public environment
                // is unknown; the earlier CLI sent one (`create --name`). The
                // emulator treats it as the default environment's get-or-create
                // and keeps no name, as the default environment has none.
                if let Some(name) = &name {
                    tracing::debug!(
                        "EnvironmentName {name:?} without VpcConfig: default environment"
                    );
                }
                self.app
                    .store
                    .write(self.now, |s, now_ms, _| {
                        if let Some(e) = s
                            .environments
                            .iter()
                            .find(|e| e.owner == self.owner && e.vpc.is_none())
                        {
                            return Ok((e.id.clone(), e.phase));
                        }
                        let id = uuid::Uuid::new_v4().to_string();
                        s.environments
                            .push(new_env(&id, self.owner, None, None, now_ms));
                        Ok((id, EnvironmentStatus::Creating))
                    })
                    .map_err(store_err)?
            }
            Some(vpc) => {
                let name = name.ok_or_else(|| {
                    ApiError::validation(
                        "1 validation error detected: Value null at 'EnvironmentName' failed to satisfy constraint: \
                         Member must not be null (required for VPC environments)",
                    )
                })?;
                validate_name(&name)?;
                validate_vpc(&vpc)?;
                self.app
                    .store
                    .write(self.now, |s, now_ms, _| {
                        let mine = || s.environments.iter().filter(|e| e.owner == self.owner);
                        if mine().any(|e| e.name.as_deref() == Some(name.as_str())) {
                            return Err(ApiError::new(
                                400,
                                codes.duplicate_name.clone(),
                                format!("An environment named {name} already exists."),
                            ));
                        }
                        if mine().filter(|e| e.vpc.is_some()).count() >= max_vpc {
                            return Err(ApiError::new(
                                400,
                                codes.vpc_quota.clone(),
                                format!(
                                    "You have reached the limit of {max_vpc} VPC environments. \
                                     Delete one before creating another."
                                ),
                            ));
                        }
                        let id = uuid::Uuid::new_v4().to_string();
                        s.environments.push(new_env(
                            &id,
                            self.owner,
                            Some(name.clone()),
                            Some(vpc.clone()),
                            now_ms,
                        ));
                        Ok((id, EnvironmentStatus::Creating))
                    })
                    .map_err(store_err)?
            }
        };
        to_value(wire::CreateEnvironmentResponse {
            environment_id: id,
            status: status.as_str(),
            start_screen_messages: wire::start_screen_messages(),
        })
    }

    fn get_environment_status(&self, body: &Body) -> Result<Value, ApiError> {
        let id = body.req_str("EnvironmentId")?;
        let resp = self.app.store.read(self.now, |s| {
            owned_env(s, self.owner, &id).map(|e| wire::GetEnvironmentStatusResponse {
                environment_id: e.id.clone(),
                status: e.phase.as_str(),
                environment_name: e.name.clone(),
                vpc_config: e.vpc.clone(),
            })
        })?;
        to_value(resp)
    }

    /// Move an environment from one of `from` to `to`, or fail with
    /// InvalidStatusException naming `expected`.
    fn transition(
        &self,
        body: &Body,
        from: &[EnvironmentStatus],
        to: EnvironmentStatus,
        expected: &str,
    ) -> Result<String, ApiError> {
        let id = body.req_str("EnvironmentId")?;
        self.app
            .store
            .write(self.now, |s, now_ms, events| {
                let env = owned_env(s, self.owner, &id)?;
                if !from.contains(&env.phase) {
                    return Err(ApiError::invalid_status(expected));
                }
                s.enter_phase(&id, to, now_ms, events);
                Ok(id.clone())
            })
            .map_err(store_err)
    }

    fn start_environment(&self, body: &Body) -> Result<Value, ApiError> {
        let id = self.transition(
            body,
            &[EnvironmentStatus::Suspended],
            EnvironmentStatus::Resuming,
            "SUSPENDED",
        )?;
        to_value(wire::EnvironmentIdResponse { environment_id: id })
    }

    fn stop_environment(&self, body: &Body) -> Result<Value, ApiError> {
        let id = self.transition(
            body,
            &[EnvironmentStatus::Running],
            EnvironmentStatus::Suspending,
            "RUNNING",
        )?;
        to_value(wire::EnvironmentIdResponse { environment_id: id })
    }

    fn delete_environment(&self, body: &Body) -> Result<Value, ApiError> {
        self.transition(
            body,
            &[EnvironmentStatus::Running, EnvironmentStatus::Suspended],
            EnvironmentStatus::Deleting,
            "RUNNING or SUSPENDED",
        )?;
        to_value(wire::Empty {})
    }

    fn create_session(&self, body: &Body) -> Result<Value, ApiError> {
        let id = body.req_str("EnvironmentId")?;
        let tab_id = body.opt_str("TabId")?;
        if let Some(tab) = &tab_id
            && !is_hyphenated_uuid(tab)
        {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{tab}' at 'TabId' failed to satisfy constraint: \
                 Member must be a UUID (8-4-4-4-12 hexadecimal digits)"
            )));
        }
        let session_type = body.opt_str("SessionType")?;
        if let Some(t) = &session_type
            && t != "TMUX"
        {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{t}' at 'SessionType' failed to satisfy constraint: \
                 Member must satisfy enum value set: [TMUX]"
            )));
        }
        let q_cli_disabled = body.opt_bool("QCliDisabled")?;
        let max = self.app.config.max_sessions;
        let quota_code = self.app.config.error_codes.session_quota.clone();
        let record = self
            .app
            .store
            .write(self.now, |s, now_ms, events| {
                let env = owned_env(s, self.owner, &id)?;
                if env.phase != EnvironmentStatus::Running {
                    return Err(ApiError::invalid_status("RUNNING"));
                }
                if s.sessions.len() >= max {
                    return Err(ApiError::new(
                        400,
                        quota_code,
                        format!("You have reached the limit of {max} concurrent sessions."),
                    ));
                }
                let record = SessionRecord {
                    session_id: new_session_id(self.now),
                    environment_id: id.clone(),
                    tab_id: tab_id.clone(),
                    session_type: session_type.clone(),
                    q_cli_disabled,
                    token: SessionToken::new(new_token()),
                    created_ms: now_ms,
                };
                s.sessions.push(record.clone());
                events.push(StateEvent::SessionCreated {
                    session_id: record.session_id.clone(),
                    environment_id: id.clone(),
                    tab_id: tab_id.clone(),
                });
                if let Some(env) = s.env_mut(&id) {
                    env.last_activity_ms = env.last_activity_ms.max(now_ms);
                }
                Ok(record)
            })
            .map_err(store_err)?;
        let stream_url = stream_url(self.app, &record.session_id);
        to_value(wire::CreateSessionResponse {
            session_id: record.session_id,
            token_value: record.token.expose().to_owned(),
            stream_url,
            environment_id: id,
        })
    }

    fn delete_session(&self, body: &Body) -> Result<Value, ApiError> {
        let id = body.req_str("EnvironmentId")?;
        let session_id = body.req_str("SessionId")?;
        self.app
            .store
            .write(self.now, |s, _, events| {
                owned_env(s, self.owner, &id)?;
                s.close_sessions(events, |r| {
                    r.session_id == session_id && r.environment_id == id
                });
                Ok(())
            })
            .map_err(store_err)?;
        to_value(wire::Empty {})
    }

    fn send_heartbeat(&self, body: &Body) -> Result<Value, ApiError> {
        let id = body.req_str("EnvironmentId")?;
        self.app
            .store
            .write(self.now, |s, now_ms, _| {
                let env = owned_env_mut(s, self.owner, &id)?;
                env.heartbeats += 1;
                env.last_heartbeat_ms = Some(now_ms);
                if env.phase == EnvironmentStatus::Running {
                    env.last_activity_ms = env.last_activity_ms.max(now_ms);
                }
                Ok(())
            })
            .map_err(store_err)?;
        to_value(wire::Empty {})
    }

    fn file_urls(&self, body: &Body, path_member: &str) -> Result<Value, ApiError> {
        let id = body.req_str("EnvironmentId")?;
        let path = body.req_str(path_member)?;
        let secret = self.app.store.read(self.now, |s| {
            let env = owned_env(s, self.owner, &id)?;
            if env.phase != EnvironmentStatus::Running {
                return Err(ApiError::invalid_status("RUNNING"));
            }
            if env.vpc.is_some() {
                return Err(ApiError::validation(
                    "File upload and download are not supported for VPC environments.",
                ));
            }
            Ok(s.s3_secret.clone())
        })?;
        to_value(crate::s3::presign(self.app, &secret, &id, &path, self.now))
    }

    fn put_credentials(&self, body: &Body) -> Result<Value, ApiError> {
        let id = body.req_str("EnvironmentId")?;
        let key_base = body.req_str("KeyBase")?;
        let refresh_token = body.req_str("RefreshToken")?;
        let token_hash = sha256_hex(refresh_token.as_bytes());
        let key_hash = sha256_hex(key_base.as_bytes());
        self.app
            .store
            .write(self.now, |s, _, _| {
                let env = owned_env(s, self.owner, &id)?;
                if env.phase == EnvironmentStatus::Deleting {
                    return Err(ApiError::invalid_status("RUNNING"));
                }
                let known = s.refresh_tokens.iter().any(|t| {
                    t.token_sha256 == token_hash
                        && t.key_base_sha256 == key_hash
                        && t.owner == self.owner
                });
                if !known {
                    return Err(ApiError::new(
                        400,
                        "TokenDecryptionException",
                        "The refresh token could not be decrypted with the provided key base.",
                    ));
                }
                owned_env_mut(s, self.owner, &id)?.has_credentials = true;
                Ok(())
            })
            .map_err(store_err)?;
        to_value(wire::Empty {})
    }

    fn redeem_code(&self, body: &Body) -> Result<Value, ApiError> {
        body.req_str("AuthCode")?;
        body.req_str("CodeVerifier")?;
        body.req_str("RedirectUri")?;
        let key_base = body.req_str("KeyBase")?;
        let env_id = body.opt_str("EnvironmentId")?;
        let token_bytes: Vec<u8> = (0..48).map(|_| rand::random::<u8>()).collect();
        let token = URL_SAFE_NO_PAD.encode(token_bytes);
        let record = StoredRefreshToken {
            token_sha256: sha256_hex(token.as_bytes()),
            key_base_sha256: sha256_hex(key_base.as_bytes()),
            owner: self.owner.to_owned(),
            issued_ms: crate::time::to_millis(self.now),
        };
        self.app
            .store
            .write(self.now, |s, _, _| {
                if let Some(env_id) = &env_id {
                    owned_env(s, self.owner, env_id)?;
                }
                s.refresh_tokens.push(record);
                // Keep the list bounded.
                let excess = s.refresh_tokens.len().saturating_sub(1000);
                s.refresh_tokens.drain(..excess);
                Ok(())
            })
            .map_err(store_err)?;
        to_value(wire::RedeemCodeResponse {
            refresh_token: token,
        })
    }
}

fn new_env(
    id: &str,
    owner: &str,
    name: Option<String>,
    vpc: Option<VpcConfig>,
    now_ms: u64,
) -> StoredEnv {
    StoredEnv {
        id: id.to_owned(),
        owner: owner.to_owned(),
        name,
        vpc,
        phase: EnvironmentStatus::Creating,
        phase_since_ms: now_ms,
        created_ms: now_ms,
        last_activity_ms: now_ms,
        heartbeats: 0,
        last_heartbeat_ms: None,
        has_credentials: false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_have_the_real_shape() {
        let id = new_session_id(SystemTime::now());
        let (digits, hexpart) = id.split_once('-').unwrap();
        assert_eq!(digits.len(), 19);
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(hexpart.len(), 17);
        assert!(hexpart.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn cell_numbers_contain_base64_specials() {
        let c = new_cell_number();
        assert!(
            c.contains('+') && c.contains('/') && c.ends_with("=="),
            "{c}"
        );
    }

    #[test]
    fn tokens_are_long() {
        assert!(new_token().len() >= 64);
    }

    #[test]
    fn uuid_check_is_strict() {
        assert!(is_hyphenated_uuid("0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10"));
        assert!(!is_hyphenated_uuid("0b6f2c4e3f7a4d1e9c552a9e8e1d7b10"));
        assert!(!is_hyphenated_uuid("not-a-uuid"));
    }

    #[test]
    fn routing_is_by_path_and_post_only() {
        assert_eq!(
            operation_for(&Method::POST, "/createSession"),
            Some("CreateSession")
        );
        assert_eq!(operation_for(&Method::GET, "/createSession"), None);
        assert_eq!(operation_for(&Method::POST, "/CreateSession"), None);
        assert_eq!(operation_for(&Method::POST, "/"), None);
    }
}
