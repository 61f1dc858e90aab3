//! Errors of a file transfer.

use std::path::PathBuf;

/// Which side of a transfer a problem is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This machine.
    Local,
    /// The CloudShell environment.
    Remote,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Local => "local",
            Side::Remote => "remote",
        })
    }
}

/// Errors of [`upload`](super::upload) and [`download`](super::download).
///
/// Whatever the error, nothing partial is left at the destination: data is
/// written to a temporary name next to it and renamed only after the SHA-256
/// of both ends matched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// An operand could not be parsed (`ENV:` with an empty path, ...).
    #[error("invalid location {operand:?}: {reason}")]
    InvalidLocation {
        /// The operand as given.
        operand: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The environment does not exist (or is not visible to these credentials).
    #[error("environment {0:?} not found")]
    UnknownEnvironment(String),
    /// No such file or directory.
    #[error("{side} {}: no such file or directory", .path.display())]
    NotFound {
        /// Where.
        side: Side,
        /// The path.
        path: PathBuf,
    },
    /// The source is a directory and `recursive` is off.
    #[error("{side} {}: is a directory (use -r to copy directories)", .path.display())]
    SourceIsDirectory {
        /// Where.
        side: Side,
        /// The path.
        path: PathBuf,
    },
    /// A file would replace a directory.
    #[error("{side} {}: is a directory; cannot overwrite it with a file", .path.display())]
    DestinationIsDirectory {
        /// Where.
        side: Side,
        /// The path.
        path: PathBuf,
    },
    /// A directory tree would be copied onto something that exists.
    #[error("{side} {}: already exists (directory trees are never merged; remove it or pick another name)", .path.display())]
    DestinationExists {
        /// Where.
        side: Side,
        /// The path.
        path: PathBuf,
    },
    /// The destination must be a directory (several sources) and is not.
    #[error("{side} {}: not a directory", .path.display())]
    NotADirectory {
        /// Where.
        side: Side,
        /// The path.
        path: PathBuf,
    },
    /// Two sources copied into one directory have the same name: the second
    /// would replace what the first has just put there (GNU cp refuses the
    /// same way). The sources before the second are copied, it and the rest
    /// are not.
    #[error("{side} {}: will not overwrite what was just copied there from {first} with {second} (two sources have the same name)", .path.display())]
    SameName {
        /// The destination directory's side.
        side: Side,
        /// The path both sources would be copied to.
        path: PathBuf,
        /// The source copied there, as given.
        first: String,
        /// The source refused, as given.
        second: String,
    },
    /// The source is neither a regular file nor a directory.
    #[error("{side} {}: not a regular file or directory", .path.display())]
    NotRegular {
        /// Where.
        side: Side,
        /// The path.
        path: PathBuf,
    },
    /// Permission denied.
    #[error("{side} {}: permission denied", .path.display())]
    PermissionDenied {
        /// Where.
        side: Side,
        /// The path.
        path: PathBuf,
    },
    /// The disk (or quota) is full.
    #[error("{side} {}: no space left on device", .path.display())]
    NoSpace {
        /// Where.
        side: Side,
        /// The path being written.
        path: PathBuf,
    },
    /// The SHA-256 of what arrived differs from what was sent.
    #[error("checksum mismatch: sent {sent}, received {received}; nothing was written")]
    ChecksumMismatch {
        /// SHA-256 (hex) at the sending end.
        sent: String,
        /// SHA-256 (hex) at the receiving end.
        received: String,
    },
    /// The input stream ended early (the connection dropped mid-way).
    #[error("the transfer was cut off before the end; nothing was written")]
    Incomplete,
    /// A local file-system operation failed.
    #[error("local {}: {action}", .path.display())]
    Local {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A command in the environment failed.
    #[error("remote: {0}")]
    Remote(String),
    /// A tool the transfer needs is missing in the environment.
    #[error("remote: {0}")]
    RemoteToolMissing(String),
    /// The remote side printed something the transfer does not understand.
    #[error("unexpected reply from the environment: {0}")]
    Protocol(String),
    /// Running the remote command failed (session set-up, connection).
    #[error("running the transfer command in the environment failed")]
    Exec(#[source] crate::exec::ExecError),
    /// A CloudShell API call failed.
    #[error("CloudShell API call failed")]
    Api(#[source] crate::Error),
    /// An S3 request failed.
    #[error("S3 {operation} failed with HTTP {status}: {message}")]
    S3 {
        /// `upload` or `download`.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// Code and message from the S3 error body.
        message: String,
    },
    /// An HTTP request to S3 could not be sent or its body not read.
    #[error("S3 {operation} request failed")]
    Http {
        /// `upload` or `download`.
        operation: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// GetFileUploadUrls / GetFileDownloadUrls answered without something
    /// the S3 transport needs.
    #[error("the file-transfer URLs lack {0}")]
    S3UrlsIncomplete(&'static str),
    /// The environment's request to S3 failed (`curl` could not connect, or
    /// S3 refused it).
    #[error("remote: the environment's request to S3 failed: {0}")]
    EnvironmentS3(String),
    /// The transfer was interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

impl TransferError {
    /// Whether the S3 route itself failed: GetFileUploadUrls, the request to
    /// S3 from here or from the environment. Another transport may work.
    pub(crate) fn is_s3_route(&self) -> bool {
        matches!(
            self,
            TransferError::Api(_)
                | TransferError::S3 { .. }
                | TransferError::Http { .. }
                | TransferError::EnvironmentS3(_)
                | TransferError::S3UrlsIncomplete(_)
        )
    }

    /// Maps a local I/O error on `path` to the most specific variant.
    pub(crate) fn local(action: &'static str, path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        let path = path.into();
        match e.kind() {
            std::io::ErrorKind::NotFound => TransferError::NotFound {
                side: Side::Local,
                path,
            },
            std::io::ErrorKind::PermissionDenied => TransferError::PermissionDenied {
                side: Side::Local,
                path,
            },
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                TransferError::NoSpace {
                    side: Side::Local,
                    path,
                }
            }
            std::io::ErrorKind::ReadOnlyFilesystem => TransferError::PermissionDenied {
                side: Side::Local,
                path,
            },
            _ => TransferError::Local {
                action,
                path,
                source: e,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_of_the_s3_route_are_retried_in_band() {
        let route = [
            TransferError::S3 {
                operation: "upload",
                status: 403,
                message: "AccessDenied: no".into(),
            },
            TransferError::EnvironmentS3("curl: (7) Failed to connect".into()),
            TransferError::S3UrlsIncomplete("FileDownloadPresignedUrl"),
        ];
        for e in &route {
            assert!(e.is_s3_route(), "{e}");
        }
        let other = [
            TransferError::NotFound {
                side: Side::Remote,
                path: "x".into(),
            },
            TransferError::ChecksumMismatch {
                sent: "a".into(),
                received: "b".into(),
            },
            TransferError::Interrupted,
            TransferError::Remote("cannot write".into()),
            TransferError::Incomplete,
            TransferError::UnknownEnvironment("env".into()),
        ];
        for e in &other {
            assert!(!e.is_s3_route(), "{e}");
        }
    }

    #[test]
    fn local_errors_map_to_clear_variants() {
        let e =
            |code| TransferError::local("writing", "/x", std::io::Error::from_raw_os_error(code));
        assert!(matches!(
            e(28),
            TransferError::NoSpace {
                side: Side::Local,
                ..
            }
        )); // ENOSPC
        assert!(matches!(
            e(122),
            TransferError::NoSpace {
                side: Side::Local,
                ..
            }
        )); // EDQUOT
        assert!(matches!(
            e(13),
            TransferError::PermissionDenied {
                side: Side::Local,
                ..
            }
        )); // EACCES
        assert!(matches!(
            e(30),
            TransferError::PermissionDenied {
                side: Side::Local,
                ..
            }
        )); // EROFS
        assert!(matches!(
            e(2),
            TransferError::NotFound {
                side: Side::Local,
                ..
            }
        )); // ENOENT
        assert!(matches!(e(5), TransferError::Local { .. })); // EIO
        assert_eq!(e(28).to_string(), "local /x: no space left on device");
    }
}
