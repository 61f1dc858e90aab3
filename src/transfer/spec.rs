//! Parsing `cp` operands: `ENV:path`, `:path` or a local path.

use std::path::PathBuf;

use super::TransferError;

/// One operand of `cp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path on this machine.
    Local(PathBuf),
    /// A path in a CloudShell environment.
    Remote {
        /// Environment id or name; `None` for `:path` (the default environment).
        environment: Option<String>,
        /// The path in the environment (relative paths start at the home directory;
        /// a leading `~/` is the home directory too).
        path: String,
    },
}

impl Location {
    /// Whether this is a remote location.
    pub fn is_remote(&self) -> bool {
        matches!(self, Location::Remote { .. })
    }
}

/// Parses an operand the way scp does.
///
/// - `ENV:path` is `path` in environment `ENV` (an id or an environment name);
/// - `:path` is `path` in the default environment;
/// - anything else is local. A local path that contains `:` before its first
///   `/` must be written with a `/` in front of the colon, e.g. `./a:b` or an
///   absolute path: as in scp, a colon before any slash makes it remote.
///
/// The remote path must not be empty (`ENV:` alone is refused).
pub fn parse_location(arg: &str) -> Result<Location, TransferError> {
    let colon = arg.find(':');
    let slash = arg.find('/');
    let is_remote = match (colon, slash) {
        (Some(c), Some(s)) => c < s,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !is_remote {
        if arg.is_empty() {
            return Err(TransferError::InvalidLocation {
                operand: arg.to_string(),
                reason: "empty path",
            });
        }
        return Ok(Location::Local(PathBuf::from(arg)));
    }
    let Some((env, path)) = arg.split_once(':') else {
        return Ok(Location::Local(PathBuf::from(arg)));
    };
    if path.is_empty() {
        return Err(TransferError::InvalidLocation {
            operand: arg.to_string(),
            reason: "the remote path after ':' is empty (write ENV:~ for the home directory)",
        });
    }
    if path.contains('\0') {
        return Err(TransferError::InvalidLocation {
            operand: arg.to_string(),
            reason: "paths cannot contain NUL bytes",
        });
    }
    let environment = if env.is_empty() {
        None
    } else {
        if env.chars().any(char::is_whitespace) {
            return Err(TransferError::InvalidLocation {
                operand: arg.to_string(),
                reason: "the environment before ':' contains whitespace",
            });
        }
        Some(env.to_string())
    };
    Ok(Location::Remote {
        environment,
        path: path.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn remote(env: Option<&str>, path: &str) -> Location {
        Location::Remote {
            environment: env.map(str::to_string),
            path: path.to_string(),
        }
    }

    #[test]
    fn operands() {
        assert_eq!(parse_location(":a/b").unwrap(), remote(None, "a/b"));
        assert_eq!(
            parse_location("env-1:/tmp/x").unwrap(),
            remote(Some("env-1"), "/tmp/x")
        );
        assert_eq!(parse_location(":~").unwrap(), remote(None, "~"));
        assert_eq!(
            parse_location("file.txt").unwrap(),
            Location::Local("file.txt".into())
        );
        assert_eq!(
            parse_location("./a:b").unwrap(),
            Location::Local("./a:b".into())
        );
        assert_eq!(
            parse_location("/abs/a:b").unwrap(),
            Location::Local("/abs/a:b".into())
        );
        assert_eq!(
            parse_location("dir/x:y").unwrap(),
            Location::Local("dir/x:y".into())
        );
        assert_eq!(parse_location("a:b").unwrap(), remote(Some("a"), "b"));
        assert_eq!(parse_location("e:a:b").unwrap(), remote(Some("e"), "a:b"));
    }

    #[test]
    fn bad_operands() {
        for bad in ["env:", ":", "", "a b:x", "e:a\0b"] {
            let e = parse_location(bad).unwrap_err();
            assert!(
                matches!(e, TransferError::InvalidLocation { .. }),
                "{bad}: {e}"
            );
        }
    }
}
