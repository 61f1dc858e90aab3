//! Data types of the CloudShell API: shapes, status values and operation outputs.
//!
//! Member names on the wire are PascalCase (`EnvironmentId`, `VpcConfig`, ...);
//! the types below deserialize from and serialize to that form. Unknown response
//! members are ignored. Output types are `#[non_exhaustive]`: read their public
//! fields, do not construct them.
//!
//! Types holding a [`Secret`] serialize it as `"***"`; use their
//! `to_json_exposing_secrets()` method when the real value must be written.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::secret::{REDACTED, Secret};

/// The lifecycle state of an environment (`Status` on the wire).
///
/// Values not known to this library are kept in [`EnvironmentStatus::Unknown`] and
/// survive a round trip.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EnvironmentStatus {
    /// `CREATING`: a new environment is being provisioned; it becomes RUNNING by itself.
    Creating,
    /// `RUNNING`: sessions can be created.
    Running,
    /// `SUSPENDING`: on its way to SUSPENDED.
    Suspending,
    /// `SUSPENDED`: stopped; StartEnvironment resumes it.
    Suspended,
    /// `RESUMING`: on its way to RUNNING after StartEnvironment.
    Resuming,
    /// `DELETING`: being deleted.
    Deleting,
    /// Any other value, as sent by the service.
    Unknown(String),
}

impl EnvironmentStatus {
    /// The wire form (`"RUNNING"`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            EnvironmentStatus::Creating => "CREATING",
            EnvironmentStatus::Running => "RUNNING",
            EnvironmentStatus::Suspending => "SUSPENDING",
            EnvironmentStatus::Suspended => "SUSPENDED",
            EnvironmentStatus::Resuming => "RESUMING",
            EnvironmentStatus::Deleting => "DELETING",
            EnvironmentStatus::Unknown(s) => s,
        }
    }

    /// Every status value this library knows, in lifecycle order.
    pub fn values() -> &'static [&'static str] {
        &[
            "CREATING",
            "RUNNING",
            "SUSPENDING",
            "SUSPENDED",
            "RESUMING",
            "DELETING",
        ]
    }

    /// Whether the environment will change state without any call (CREATING,
    /// SUSPENDING, RESUMING, DELETING).
    pub fn is_transitional(&self) -> bool {
        matches!(
            self,
            EnvironmentStatus::Creating
                | EnvironmentStatus::Suspending
                | EnvironmentStatus::Resuming
                | EnvironmentStatus::Deleting
        )
    }
}

impl From<&str> for EnvironmentStatus {
    fn from(s: &str) -> Self {
        match s {
            "CREATING" => EnvironmentStatus::Creating,
            "RUNNING" => EnvironmentStatus::Running,
            "SUSPENDING" => EnvironmentStatus::Suspending,
            "SUSPENDED" => EnvironmentStatus::Suspended,
            "RESUMING" => EnvironmentStatus::Resuming,
            "DELETING" => EnvironmentStatus::Deleting,
            other => EnvironmentStatus::Unknown(other.to_owned()),
        }
    }
}

impl FromStr for EnvironmentStatus {
    type Err = std::convert::Infallible;

    /// Parses the wire form; never fails (unknown values become [`EnvironmentStatus::Unknown`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(EnvironmentStatus::from(s))
    }
}

impl fmt::Display for EnvironmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EnvironmentStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EnvironmentStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(EnvironmentStatus::from(s.as_str()))
    }
}

/// A client-side validation failure: the request was never sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {reason}")]
#[non_exhaustive]
pub struct ValidationError {
    /// The request member at fault, in wire form (`TabId`, `VpcConfig.SubnetIds[1]`, ...).
    pub field: String,
    /// Why it was rejected.
    pub reason: String,
}

impl ValidationError {
    /// Creates a validation error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The network placement of a VPC environment (`VpcConfig` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcConfig {
    /// The VPC (`vpc-...`).
    pub vpc_id: String,
    /// One or more subnets (`subnet-...`).
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    /// One to five security groups (`sg-...`).
    #[serde(default)]
    pub security_group_ids: Vec<String>,
}

/// Most security groups a VPC environment may have.
pub const MAX_SECURITY_GROUPS: usize = 5;

impl VpcConfig {
    /// Creates a configuration. Nothing is checked here: call [`VpcConfig::validate`]
    /// (CreateEnvironment does so before sending).
    pub fn new(vpc_id: String, subnet_ids: Vec<String>, security_group_ids: Vec<String>) -> Self {
        VpcConfig {
            vpc_id,
            subnet_ids,
            security_group_ids,
        }
    }

    /// Checks the rules: a `vpc-` id, at least one `subnet-` id, and one to five
    /// `sg-` ids (no duplicates).
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_resource_id("VpcConfig.VpcId", &self.vpc_id, "vpc-")?;
        if self.subnet_ids.is_empty() {
            return Err(ValidationError::new(
                "VpcConfig.SubnetIds",
                "at least one subnet id is required",
            ));
        }
        for (i, id) in self.subnet_ids.iter().enumerate() {
            check_resource_id(&format!("VpcConfig.SubnetIds[{i}]"), id, "subnet-")?;
        }
        check_no_duplicates("VpcConfig.SubnetIds", &self.subnet_ids)?;
        if self.security_group_ids.is_empty() {
            return Err(ValidationError::new(
                "VpcConfig.SecurityGroupIds",
                "at least one security group id is required",
            ));
        }
        if self.security_group_ids.len() > MAX_SECURITY_GROUPS {
            return Err(ValidationError::new(
                "VpcConfig.SecurityGroupIds",
                format!(
                    "at most {MAX_SECURITY_GROUPS} security groups are allowed, got {}",
                    self.security_group_ids.len()
                ),
            ));
        }
        for (i, id) in self.security_group_ids.iter().enumerate() {
            check_resource_id(&format!("VpcConfig.SecurityGroupIds[{i}]"), id, "sg-")?;
        }
        check_no_duplicates("VpcConfig.SecurityGroupIds", &self.security_group_ids)?;
        Ok(())
    }
}

fn check_resource_id(field: &str, id: &str, prefix: &str) -> Result<(), ValidationError> {
    let rest = id.strip_prefix(prefix).ok_or_else(|| {
        ValidationError::new(field, format!("{id:?} does not start with `{prefix}`"))
    })?;
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ValidationError::new(
            field,
            format!("{id:?} is not `{prefix}` followed by letters and digits"),
        ));
    }
    Ok(())
}

fn check_no_duplicates(field: &str, ids: &[String]) -> Result<(), ValidationError> {
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(ValidationError::new(
                field,
                format!("{id:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// One environment as listed by DescribeEnvironments (and described by
/// GetEnvironmentStatus).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Environment {
    /// The environment id (a UUID).
    pub environment_id: String,
    /// The name; present for VPC environments only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    /// The status; DescribeEnvironments does not always include it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EnvironmentStatus>,
    /// A reason for the status, when the service gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The VPC placement; present for VPC environments only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
}

impl Environment {
    /// Whether this is the public (default, non-VPC) environment.
    pub fn is_default(&self) -> bool {
        self.vpc_config.is_none()
    }
}

/// The link of a [`StartScreenMessage`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StartScreenLink {
    /// Target URL.
    #[serde(default, alias = "Url", skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Link text.
    #[serde(default, alias = "Text", skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A notice returned by CreateEnvironment (the Console shows these on the start
/// screen). Its members are lower case on the wire: `type`, `id`, `content`, `link`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StartScreenMessage {
    /// Kind of message, e.g. `INFO`.
    #[serde(
        rename = "type",
        alias = "Type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub message_type: Option<String>,
    /// Message identifier.
    #[serde(default, alias = "Id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Message text.
    #[serde(default, alias = "Content", skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Optional link.
    #[serde(default, alias = "Link", skip_serializing_if = "Option::is_none")]
    pub link: Option<StartScreenLink>,
}

/// Output of DescribeEnvironments.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeEnvironmentsOutput {
    /// The caller's environments in the region (empty when the member is absent).
    #[serde(default)]
    pub environments: Vec<Environment>,
}

impl DescribeEnvironmentsOutput {
    /// The public (non-VPC) environment, if listed.
    pub fn default_environment(&self) -> Option<&Environment> {
        self.environments.iter().find(|e| e.is_default())
    }
}

/// Output of CreateEnvironment.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEnvironmentOutput {
    /// The environment id (for the default environment, the existing one if any).
    pub environment_id: String,
    /// Its current status (an existing environment is returned as it is, e.g. SUSPENDED).
    pub status: EnvironmentStatus,
    /// Start-screen notices (empty when absent).
    #[serde(default)]
    pub start_screen_messages: Vec<StartScreenMessage>,
}

/// Output of GetEnvironmentStatus.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetEnvironmentStatusOutput {
    /// The environment id, when echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// The current status.
    pub status: EnvironmentStatus,
    /// A reason for the status, when the service gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The name; present for VPC environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    /// The VPC placement; present for VPC environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
}

/// Output of StartEnvironment.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct StartEnvironmentOutput {
    /// The environment id, when echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
}

/// Output of StopEnvironment.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct StopEnvironmentOutput {
    /// The environment id, when echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
}

/// Output of DeleteEnvironment (no members are known).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeleteEnvironmentOutput {}

/// Output of CreateSession: what a data-channel client needs to connect.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSessionOutput {
    /// The session id (opaque).
    pub session_id: String,
    /// The data-channel token. Serializes as `"***"`.
    pub token_value: Secret,
    /// The WebSocket URL of the data channel.
    pub stream_url: String,
    /// The environment id (echoed by the service, else the one requested).
    #[serde(default)]
    pub environment_id: String,
    /// The `TabId` that was sent (not part of the response).
    #[serde(default, skip_deserializing)]
    pub tab_id: String,
}

impl CreateSessionOutput {
    /// This output as JSON with the real `TokenValue`.
    pub fn to_json_exposing_secrets(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(map) = v.as_object_mut() {
            map.insert(
                "TokenValue".to_owned(),
                serde_json::Value::String(self.token_value.expose().to_owned()),
            );
        }
        v
    }
}

/// Output of DeleteSession (no members are known).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeleteSessionOutput {}

/// Output of SendHeartBeat (no members are known).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SendHeartBeatOutput {}

/// Output of PutCredentials (no members are known).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PutCredentialsOutput {}

/// Form fields whose values are secrets (compared case-insensitively).
const SECRET_FIELDS: &[&str] = &[
    "x-amz-server-side-encryption-customer-key",
    "x-amz-security-token",
];

fn is_secret_field(name: &str) -> bool {
    SECRET_FIELDS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

fn redacted_fields(fields: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    fields
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_field(k) {
                REDACTED
            } else {
                v.as_str()
            };
            (k.as_str(), v)
        })
        .collect()
}

fn serialize_redacted_fields<S: Serializer>(
    fields: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    redacted_fields(fields).serialize(serializer)
}

/// Output of GetFileUploadUrls and GetFileDownloadUrls: presigned S3 URLs for
/// one SSE-C encrypted object.
///
/// `Debug` and `Serialize` redact the SSE-C key and the security token inside
/// `file_upload_presigned_fields`, and `file_download_presigned_key`.
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct FileUrlsOutput {
    /// Target of a browser-style multipart POST upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_upload_presigned_url: Option<String>,
    /// Form fields to send before the file part (they include the SSE-C key).
    #[serde(default, serialize_with = "serialize_redacted_fields")]
    pub file_upload_presigned_fields: BTreeMap<String, String>,
    /// Presigned GET URL of the same object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_download_presigned_url: Option<String>,
    /// SSE-C key to send with the GET (`x-amz-server-side-encryption-customer-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_download_presigned_key: Option<Secret>,
    /// Hash of that key (`x-amz-server-side-encryption-customer-key-MD5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_download_presigned_key_hash: Option<String>,
}

impl fmt::Debug for FileUrlsOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileUrlsOutput")
            .field("file_upload_presigned_url", &self.file_upload_presigned_url)
            .field(
                "file_upload_presigned_fields",
                &redacted_fields(&self.file_upload_presigned_fields),
            )
            .field(
                "file_download_presigned_url",
                &self.file_download_presigned_url,
            )
            .field(
                "file_download_presigned_key",
                &self.file_download_presigned_key,
            )
            .field(
                "file_download_presigned_key_hash",
                &self.file_download_presigned_key_hash,
            )
            .finish()
    }
}

impl FileUrlsOutput {
    /// This output as JSON with the real SSE-C key and form fields.
    pub fn to_json_exposing_secrets(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(map) = v.as_object_mut() {
            map.insert(
                "FileUploadPresignedFields".to_owned(),
                serde_json::to_value(&self.file_upload_presigned_fields)
                    .unwrap_or(serde_json::Value::Null),
            );
            if let Some(key) = &self.file_download_presigned_key {
                map.insert(
                    "FileDownloadPresignedKey".to_owned(),
                    serde_json::Value::String(key.expose().to_owned()),
                );
            }
        }
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_including_unknown() {
        for s in EnvironmentStatus::values() {
            let parsed: EnvironmentStatus = s.parse().unwrap();
            assert!(!matches!(parsed, EnvironmentStatus::Unknown(_)), "{s}");
            assert_eq!(parsed.to_string(), *s);
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            let back: EnvironmentStatus = serde_json::from_str(&json).unwrap();
            assert_eq!(back, parsed);
        }
        let odd: EnvironmentStatus = serde_json::from_str("\"HIBERNATING\"").unwrap();
        assert_eq!(odd, EnvironmentStatus::Unknown("HIBERNATING".into()));
        assert_eq!(serde_json::to_string(&odd).unwrap(), "\"HIBERNATING\"");
        assert_eq!(odd.as_str(), "HIBERNATING");
        // Case matters on the wire: lower case is not a known value.
        assert!(matches!(
            "running".parse::<EnvironmentStatus>().unwrap(),
            EnvironmentStatus::Unknown(_)
        ));
        assert!(EnvironmentStatus::Resuming.is_transitional());
        assert!(!EnvironmentStatus::Suspended.is_transitional());
    }

    fn vpc(v: &str, subnets: &[&str], sgs: &[&str]) -> VpcConfig {
        VpcConfig::new(
            v.into(),
            subnets.iter().map(|s| s.to_string()).collect(),
            sgs.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn vpc_validation() {
        assert!(vpc("vpc-0abc", &["subnet-1"], &["sg-1"]).validate().is_ok());
        assert!(
            vpc(
                "vpc-0abc",
                &["subnet-1", "subnet-2"],
                &["sg-1", "sg-2", "sg-3", "sg-4", "sg-5"]
            )
            .validate()
            .is_ok()
        );
        let cases = [
            (vpc("", &["subnet-1"], &["sg-1"]), "VpcConfig.VpcId"),
            (vpc("vpc-", &["subnet-1"], &["sg-1"]), "VpcConfig.VpcId"),
            (vpc("0abc", &["subnet-1"], &["sg-1"]), "VpcConfig.VpcId"),
            (vpc("vpc-0abc", &[], &["sg-1"]), "VpcConfig.SubnetIds"),
            (
                vpc("vpc-0abc", &["sg-1"], &["sg-1"]),
                "VpcConfig.SubnetIds[0]",
            ),
            (
                vpc("vpc-0abc", &["subnet-1", "subnet 2"], &["sg-1"]),
                "VpcConfig.SubnetIds[1]",
            ),
            (
                vpc("vpc-0abc", &["subnet-1", "subnet-1"], &["sg-1"]),
                "VpcConfig.SubnetIds",
            ),
            (
                vpc("vpc-0abc", &["subnet-1"], &[]),
                "VpcConfig.SecurityGroupIds",
            ),
            (
                vpc(
                    "vpc-0abc",
                    &["subnet-1"],
                    &["sg-1", "sg-2", "sg-3", "sg-4", "sg-5", "sg-6"],
                ),
                "VpcConfig.SecurityGroupIds",
            ),
            (
                vpc("vpc-0abc", &["subnet-1"], &["subnet-1"]),
                "VpcConfig.SecurityGroupIds[0]",
            ),
        ];
        for (cfg, field) in cases {
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.field, field, "{cfg:?}: {err}");
            assert!(err.to_string().starts_with(&format!("invalid `{field}`: ")));
        }
    }

    #[test]
    fn environment_tolerates_missing_and_unknown_members() {
        let json = r#"{"Environments":[
            {"EnvironmentId":"a","Extra":1},
            {"EnvironmentId":"b","EnvironmentName":"n","Status":"RUNNING",
             "VpcConfig":{"VpcId":"vpc-1","SubnetIds":["subnet-1"],"SecurityGroupIds":["sg-1"]}}]}"#;
        let out: DescribeEnvironmentsOutput = serde_json::from_str(json).unwrap();
        assert_eq!(out.environments.len(), 2);
        assert_eq!(out.environments[0].status, None);
        assert_eq!(out.default_environment().unwrap().environment_id, "a");
        assert_eq!(out.environments[1].status, Some(EnvironmentStatus::Running));
        let empty: DescribeEnvironmentsOutput = serde_json::from_str("{}").unwrap();
        assert!(empty.environments.is_empty());
    }

    #[test]
    fn start_screen_messages_use_lower_case_members() {
        let json = r#"{"EnvironmentId":"e","Status":"SUSPENDED","StartScreenMessages":[
            {"type":"INFO","id":"al23","content":"hello","link":{"url":"https://x","text":"more"}}]}"#;
        let out: CreateEnvironmentOutput = serde_json::from_str(json).unwrap();
        let m = &out.start_screen_messages[0];
        assert_eq!(m.message_type.as_deref(), Some("INFO"));
        assert_eq!(m.link.as_ref().unwrap().url.as_deref(), Some("https://x"));
        let back = serde_json::to_value(&out).unwrap();
        assert_eq!(back["StartScreenMessages"][0]["type"], "INFO");
    }

    #[test]
    fn secrets_are_redacted_in_every_output_holding_one() {
        let session: CreateSessionOutput = serde_json::from_str(
            r#"{"SessionId":"s","TokenValue":"TOKEN-SECRET","StreamUrl":"wss://x"}"#,
        )
        .unwrap();
        assert!(!format!("{session:?}").contains("TOKEN-SECRET"));
        assert!(!format!("{session:#?}").contains("TOKEN-SECRET"));
        assert!(
            !serde_json::to_string(&session)
                .unwrap()
                .contains("TOKEN-SECRET")
        );
        assert_eq!(
            session.to_json_exposing_secrets()["TokenValue"],
            "TOKEN-SECRET"
        );

        let urls: FileUrlsOutput = serde_json::from_str(
            r#"{"FileUploadPresignedUrl":"https://u","FileUploadPresignedFields":{
                "key":"obj","x-amz-server-side-encryption-customer-key":"SSEC-SECRET",
                "X-Amz-Security-Token":"STS-SECRET"},
               "FileDownloadPresignedUrl":"https://d","FileDownloadPresignedKey":"KEY-SECRET",
               "FileDownloadPresignedKeyHash":"hash"}"#,
        )
        .unwrap();
        for text in [
            format!("{urls:?}"),
            format!("{urls:#?}"),
            serde_json::to_string(&urls).unwrap(),
        ] {
            for secret in ["SSEC-SECRET", "STS-SECRET", "KEY-SECRET"] {
                assert!(!text.contains(secret), "{secret} leaked in {text}");
            }
            assert!(text.contains("obj"));
        }
        let exposed = urls.to_json_exposing_secrets();
        assert_eq!(exposed["FileDownloadPresignedKey"], "KEY-SECRET");
        assert_eq!(
            exposed["FileUploadPresignedFields"]["x-amz-server-side-encryption-customer-key"],
            "SSEC-SECRET"
        );
    }
}
