//! `cloudshell-rs connect --inject-credentials` (piped, as a script would use
//! it) against the in-process emulator: everything the CLI prints is what it
//! received from the channel.

use sha2::Digest;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn credentials_cli_connect_injects_without_exposing() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "connectSecretKeyValue/With+Chars=5555";
    let token = "connectSessionToken//////////wEaCXVz+/=";
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudshell-rs"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .env("AWS_ACCESS_KEY_ID", "AKIACONNECTTEST00001")
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_SESSION_TOKEN", token)
        .env("CLOUDSHELL_RS_LOG", "trace")
        .args(["--debug", "--local", "--state-dir"])
        .arg(dir.path().join("state"))
        .args(["connect", "--inject-credentials"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = concat!(
        " printf %s \"$AWS_SECRET_ACCESS_KEY\" | sha256sum\n",
        " printf %s \"$AWS_SESSION_TOKEN\" | sha256sum\n",
        " echo \"region=$AWS_REGION\"\n",
        " history; ps -eo args\n",
        " exit\n"
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&hex::encode(sha2::Sha256::digest(secret))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&hex::encode(sha2::Sha256::digest(token))),
        "{stdout}"
    );
    assert!(stdout.contains("region=us-east-1"));
    assert!(stderr.len() > 1000, "the trace log was produced");
    for s in [secret, token] {
        assert!(!stdout.contains(s), "a secret reached the terminal output");
        assert!(!stderr.contains(s), "a secret reached the --debug log");
    }
}
