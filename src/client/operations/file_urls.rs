use serde::Serialize;

use crate::client::operations::{optional, required};
use crate::client::types::FileUrlsOutput;
use crate::{Client, Error};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UploadInput<'a> {
    environment_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_upload_path: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DownloadInput<'a> {
    environment_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_download_path: Option<&'a str>,
}

/// GetFileUploadUrls (`POST /getFileUploadUrls`).
///
/// The Console always sends `FileUploadPath` (the file name); it is optional here
/// because older clients omitted it.
#[derive(Debug, Clone)]
pub struct GetFileUploadUrls {
    client: Client,
    environment_id: Option<String>,
    file_upload_path: Option<String>,
}

impl GetFileUploadUrls {
    pub(crate) fn new(client: Client) -> Self {
        GetFileUploadUrls {
            client,
            environment_id: None,
            file_upload_path: None,
        }
    }

    /// `EnvironmentId` (required).
    pub fn environment_id(mut self, id: impl Into<String>) -> Self {
        self.environment_id = Some(id.into());
        self
    }

    /// Sets or clears `EnvironmentId`.
    pub fn set_environment_id(mut self, id: Option<String>) -> Self {
        self.environment_id = id;
        self
    }

    /// `FileUploadPath`: the file name or destination path in the environment.
    pub fn file_upload_path(mut self, path: impl Into<String>) -> Self {
        self.file_upload_path = Some(path.into());
        self
    }

    /// Sets or clears `FileUploadPath`.
    pub fn set_file_upload_path(mut self, path: Option<String>) -> Self {
        self.file_upload_path = path;
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<FileUrlsOutput, Error> {
        let environment_id = required("EnvironmentId", self.environment_id)?;
        let path = optional("FileUploadPath", self.file_upload_path)?;
        let input = UploadInput {
            environment_id: &environment_id,
            file_upload_path: path.as_deref(),
        };
        self.client
            .inner
            .call("GetFileUploadUrls", "getFileUploadUrls", &input)
            .await
    }
}

/// GetFileDownloadUrls (`POST /getFileDownloadUrls`).
///
/// The Console always sends `FileDownloadPath` (an absolute path); it is optional
/// here because older clients omitted it.
#[derive(Debug, Clone)]
pub struct GetFileDownloadUrls {
    client: Client,
    environment_id: Option<String>,
    file_download_path: Option<String>,
}

impl GetFileDownloadUrls {
    pub(crate) fn new(client: Client) -> Self {
        GetFileDownloadUrls {
            client,
            environment_id: None,
            file_download_path: None,
        }
    }

    /// `EnvironmentId` (required).
    pub fn environment_id(mut self, id: impl Into<String>) -> Self {
        self.environment_id = Some(id.into());
        self
    }

    /// Sets or clears `EnvironmentId`.
    pub fn set_environment_id(mut self, id: Option<String>) -> Self {
        self.environment_id = id;
        self
    }

    /// `FileDownloadPath`: the path of the file in the environment.
    pub fn file_download_path(mut self, path: impl Into<String>) -> Self {
        self.file_download_path = Some(path.into());
        self
    }

    /// Sets or clears `FileDownloadPath`.
    pub fn set_file_download_path(mut self, path: Option<String>) -> Self {
        self.file_download_path = path;
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<FileUrlsOutput, Error> {
        let environment_id = required("EnvironmentId", self.environment_id)?;
        let path = optional("FileDownloadPath", self.file_download_path)?;
        let input = DownloadInput {
            environment_id: &environment_id,
            file_download_path: path.as_deref(),
        };
        self.client
            .inner
            .call("GetFileDownloadUrls", "getFileDownloadUrls", &input)
            .await
    }
}
