//! `cloudshell-rs --local ...` in a clean environment: its own HOME and state
//! directory, no AWS configuration files, an explicit region, IMDS disabled.

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct LocalCli {
    pub dir: tempfile::TempDir,
}

impl LocalCli {
    pub fn new() -> LocalCli {
        LocalCli {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `cloudshell-rs --local --state-dir DIR SUBCOMMAND` (stdin from /dev/null).
    pub fn cmd(&self, subcommand: &str) -> Command {
        self.cmd_with(&[], subcommand)
    }

    /// The same with global options before the subcommand.
    pub fn cmd_with(&self, global: &[&str], subcommand: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cloudshell-rs"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", self.dir.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.dir.path().join("none"))
            .arg("--local")
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .args(global)
            .arg(subcommand)
            .stdin(Stdio::null());
        c
    }

    /// A local working directory.
    pub fn local(&self) -> PathBuf {
        let p = self.dir.path().join("local");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// The home directory of the (only) environment.
    pub fn home(&self) -> PathBuf {
        let homes = self.dir.path().join("state/homes");
        let entry = std::fs::read_dir(&homes).unwrap().next().unwrap().unwrap();
        entry.path()
    }
}
