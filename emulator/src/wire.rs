//! The emulator's own wire types: requests are read member by member from the
//! JSON body so that every type error names the member; responses are serde
//! structs with PascalCase members.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::state::VpcConfig;

/// An error response: HTTP status, `code` and `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }

    pub fn not_found(env_id: &str) -> Self {
        Self::new(
            400,
            "ResourceNotFoundException",
            format!("Environment {env_id} was not found."),
        )
    }

    pub fn invalid_status(expected: &str) -> Self {
        Self::new(
            400,
            "InvalidStatusException",
            format!("Expected the environment status to be in {expected}."),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalServerException", message)
    }
}

/// A parsed request body: a JSON object (an empty body counts as `{}`).
pub(crate) struct Body(Map<String, Value>);

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(member: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must be a {expected}, not a {}",
        type_name(got)
    ))
}

fn missing(member: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
    ))
}

fn empty(member: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value '' at '{member}' failed to satisfy constraint: Member must have length greater than or equal to 1"
    ))
}

impl Body {
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Self(Map::new()));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(
                400,
                "ValidationException",
                format!("Request body is not valid JSON: {e}"),
            )
        })?;
        match value {
            Value::Object(map) => Ok(Self(map)),
            other => Err(ApiError::validation(format!(
                "Request body must be a JSON object, not a {}",
                type_name(&other)
            ))),
        }
    }

    fn get(&self, member: &str) -> Option<&Value> {
        self.0.get(member).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, member: &str) -> Result<Option<String>, ApiError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong_type(member, "string", other)),
        }
    }

    pub fn req_str(&self, member: &str) -> Result<String, ApiError> {
        let s = self.opt_str(member)?.ok_or_else(|| missing(member))?;
        if s.is_empty() {
            return Err(empty(member));
        }
        Ok(s)
    }

    pub fn opt_bool(&self, member: &str) -> Result<Option<bool>, ApiError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(member, "boolean", other)),
        }
    }

    pub fn opt_vpc_config(&self, member: &str) -> Result<Option<VpcConfig>, ApiError> {
        let obj = match self.get(member) {
            None => return Ok(None),
            Some(Value::Object(o)) => o,
            Some(other) => return Err(wrong_type(member, "structure", other)),
        };
        let inner = Body(obj.clone());
        let vpc_id = inner
            .opt_str("VpcId")
            .map_err(|e| prefix(e, member))?
            .ok_or_else(|| missing(&format!("{member}.VpcId")))?;
        let list = |name: &str| -> Result<Vec<String>, ApiError> {
            let path = format!("{member}.{name}");
            match inner.get(name) {
                None => Err(missing(&path)),
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(wrong_type(&format!("{path}.{}", i + 1), "string", other)),
                    })
                    .collect(),
                Some(other) => Err(wrong_type(&path, "list", other)),
            }
        };
        Ok(Some(VpcConfig {
            vpc_id,
            subnet_ids: list("SubnetIds")?,
            security_group_ids: list("SecurityGroupIds")?,
        }))
    }
}

fn prefix(mut e: ApiError, member: &str) -> ApiError {
    e.message = e.message.replace("at '", &format!("at '{member}."));
    e
}

/// One `StartScreenMessages` element.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StartScreenMessage {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'static str,
    pub content: &'static str,
    pub link: Link,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Link {
    pub url: &'static str,
    pub text: &'static str,
}

pub(crate) fn start_screen_messages() -> Vec<StartScreenMessage> {
    vec![StartScreenMessage {
        kind: "INFO",
        id: "cloudshell-rs-emulator",
        content: "This environment is provided by the local cloudshell-rs emulator; nothing here reaches AWS.",
        link: Link {
            url: "https://docs.aws.amazon.com/cloudshell/latest/userguide/welcome.html",
            text: "About AWS CloudShell",
        },
    }]
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EnvironmentElement {
    pub environment_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeEnvironmentsResponse {
    pub environments: Vec<EnvironmentElement>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateEnvironmentResponse {
    pub environment_id: String,
    pub status: &'static str,
    pub start_screen_messages: Vec<StartScreenMessage>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GetEnvironmentStatusResponse {
    pub environment_id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EnvironmentIdResponse {
    pub environment_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateSessionResponse {
    pub session_id: String,
    pub token_value: String,
    pub stream_url: String,
    pub environment_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FileUrlsResponse {
    pub file_upload_presigned_url: String,
    pub file_upload_presigned_fields: BTreeMap<String, String>,
    pub file_download_presigned_url: String,
    pub file_download_presigned_key: String,
    pub file_download_presigned_key_hash: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RedeemCodeResponse {
    pub refresh_token: String,
}

/// `{}` for operations without output.
#[derive(Serialize)]
pub(crate) struct Empty {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn members_are_named_in_errors() {
        let b = Body::parse(br#"{"EnvironmentId": 5, "QCliDisabled": "yes"}"#).unwrap();
        let e = b.req_str("EnvironmentId").unwrap_err();
        assert!(e.message.contains("'EnvironmentId'"), "{}", e.message);
        let e = b.opt_bool("QCliDisabled").unwrap_err();
        assert!(e.message.contains("'QCliDisabled'"), "{}", e.message);
        let e = b.req_str("SessionId").unwrap_err();
        assert!(e.message.contains("'SessionId'"), "{}", e.message);
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        let b = Body::parse(b"").unwrap();
        assert_eq!(b.opt_str("X").unwrap(), None);
        assert!(Body::parse(b"[]").is_err());
        assert!(Body::parse(b"{").is_err());
        assert!(Body::parse(b"null").is_err());
    }

    #[test]
    fn vpc_config_paths() {
        let b = Body::parse(
            br#"{"VpcConfig":{"VpcId":"vpc-1","SubnetIds":["subnet-1", 3],"SecurityGroupIds":[]}}"#,
        )
        .unwrap();
        let e = b.opt_vpc_config("VpcConfig").unwrap_err();
        assert!(
            e.message.contains("'VpcConfig.SubnetIds.2'"),
            "{}",
            e.message
        );
        let b = Body::parse(br#"{"VpcConfig":{"VpcId":7}}"#).unwrap();
        let e = b.opt_vpc_config("VpcConfig").unwrap_err();
        assert!(e.message.contains("'VpcConfig.VpcId'"), "{}", e.message);
        let b =
            Body::parse(br#"{"VpcConfig":{"VpcId":"vpc-1","SubnetIds":["subnet-1"]}}"#).unwrap();
        let e = b.opt_vpc_config("VpcConfig").unwrap_err();
        assert!(
            e.message.contains("'VpcConfig.SecurityGroupIds'"),
            "{}",
            e.message
        );
    }
}
