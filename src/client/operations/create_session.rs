use serde::Serialize;

use crate::client::operations::required;
use crate::client::types::{CreateSessionOutput, ValidationError};
use crate::{Client, Error};

/// The only `SessionType` known.
pub const DEFAULT_SESSION_TYPE: &str = "TMUX";

/// CreateSession (`POST /createSession`).
///
/// `TabId` is a UUID v4: generated when not given, checked when given.
/// `SessionType` defaults to `TMUX`. `QCliDisabled` is sent only when set.
#[derive(Debug, Clone)]
pub struct CreateSession {
    client: Client,
    environment_id: Option<String>,
    tab_id: Option<String>,
    session_type: Option<String>,
    q_cli_disabled: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Input<'a> {
    environment_id: &'a str,
    tab_id: &'a str,
    session_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    q_cli_disabled: Option<bool>,
}

/// Checks that `tab_id` is a UUID version 4 in its hyphenated form, as
/// [`CreateSession`] does before sending it.
pub fn validate_tab_id(tab_id: &str) -> Result<(), ValidationError> {
    let parsed = uuid::Uuid::try_parse(tab_id)
        .map_err(|_| ValidationError::new("TabId", format!("{tab_id:?} is not a UUID")))?;
    if parsed.get_version_num() != 4 {
        return Err(ValidationError::new(
            "TabId",
            format!(
                "{tab_id:?} is a version {} UUID, expected version 4",
                parsed.get_version_num()
            ),
        ));
    }
    if tab_id.len() != 36 {
        return Err(ValidationError::new(
            "TabId",
            format!("{tab_id:?} is not in the hyphenated 8-4-4-4-12 form"),
        ));
    }
    Ok(())
}

impl CreateSession {
    pub(crate) fn new(client: Client) -> Self {
        CreateSession {
            client,
            environment_id: None,
            tab_id: None,
            session_type: None,
            q_cli_disabled: None,
        }
    }

    /// `EnvironmentId` (required; the environment must be RUNNING).
    pub fn environment_id(mut self, id: impl Into<String>) -> Self {
        self.environment_id = Some(id.into());
        self
    }

    /// Sets or clears `EnvironmentId`.
    pub fn set_environment_id(mut self, id: Option<String>) -> Self {
        self.environment_id = id;
        self
    }

    /// `TabId` (a UUID v4). Reusing a tab's id re-creates that tab's session.
    pub fn tab_id(mut self, tab_id: impl Into<String>) -> Self {
        self.tab_id = Some(tab_id.into());
        self
    }

    /// Sets or clears `TabId` (cleared: a fresh UUID v4 is generated).
    pub fn set_tab_id(mut self, tab_id: Option<String>) -> Self {
        self.tab_id = tab_id;
        self
    }

    /// `SessionType` (default `TMUX`).
    pub fn session_type(mut self, session_type: impl Into<String>) -> Self {
        self.session_type = Some(session_type.into());
        self
    }

    /// `QCliDisabled`: turn off the Amazon Q CLI integration in the shell.
    pub fn q_cli_disabled(mut self, disabled: bool) -> Self {
        self.q_cli_disabled = Some(disabled);
        self
    }

    /// Sets or clears `QCliDisabled`.
    pub fn set_q_cli_disabled(mut self, disabled: Option<bool>) -> Self {
        self.q_cli_disabled = disabled;
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<CreateSessionOutput, Error> {
        let environment_id = required("EnvironmentId", self.environment_id)?;
        let tab_id = match self.tab_id {
            Some(t) => {
                validate_tab_id(&t)?;
                t
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let session_type = match self.session_type {
            Some(t) => required("SessionType", Some(t))?,
            None => DEFAULT_SESSION_TYPE.to_owned(),
        };
        let input = Input {
            environment_id: &environment_id,
            tab_id: &tab_id,
            session_type: &session_type,
            q_cli_disabled: self.q_cli_disabled,
        };
        let mut out: CreateSessionOutput = self
            .client
            .inner
            .call("CreateSession", "createSession", &input)
            .await?;
        if out.environment_id.is_empty() {
            out.environment_id = environment_id;
        }
        out.tab_id = tab_id;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tab_id_must_be_uuid_v4() {
        validate_tab_id(&uuid::Uuid::new_v4().to_string()).unwrap();
        validate_tab_id("0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10").unwrap();
        let cases = [
            ("not-a-uuid", "is not a UUID"),
            ("", "is not a UUID"),
            ("0b6f2c4e-3f7a-1d1e-9c55-2a9e8e1d7b10", "version 1"),
            ("0b6f2c4e3f7a4d1e9c552a9e8e1d7b10", "hyphenated"),
        ];
        for (id, why) in cases {
            let e = validate_tab_id(id).unwrap_err();
            assert_eq!(e.field, "TabId");
            assert!(e.reason.contains(why), "{id}: {}", e.reason);
        }
    }
}
