//! Shared set-up for the client tests: static credentials, explicit region, an
//! isolated environment, and an independent SigV4 verifier.

use std::sync::Once;
use std::time::Duration;

use cloudshell_rs::{Client, ClientBuilder, Credentials};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::support::mock_http::{MockServer, RecordedRequest};

pub const ACCESS_KEY: &str = "AKIDTESTEXAMPLE";
pub const SECRET_KEY: &str = "SECRETKEY-do-not-print";
pub const SESSION_TOKEN: &str = "SESSIONTOKEN-do-not-print";
pub const REGION: &str = "us-east-1";

/// Makes the process environment harmless once: IMDS off, no profile files or
/// credential variables from the machine, no region or endpoint variables.
#[allow(unsafe_code)]
pub fn isolate_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        install_log_capture();
        // SAFETY: done once, before any test of this binary reads these variables;
        // no C code reads the environment concurrently in these tests.
        unsafe {
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/cloudshell-rs-tests/config");
            std::env::set_var(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/cloudshell-rs-tests/credentials",
            );
            for var in [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_PROFILE",
                "AWS_DEFAULT_PROFILE",
                "AWS_REGION",
                "AWS_DEFAULT_REGION",
                "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_CLOUDSHELL",
                "AWS_MAX_ATTEMPTS",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_ROLE_ARN",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            ] {
                std::env::remove_var(var);
            }
        }
    });
}

/// A writer appending to the process-wide log buffer.
#[derive(Clone, Copy)]
struct LogWriter;

static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install_log_capture() {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
}

/// Everything logged by every test so far.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

pub fn credentials() -> Credentials {
    Credentials::new(
        ACCESS_KEY,
        SECRET_KEY,
        Some(SESSION_TOKEN.into()),
        None,
        "tests",
    )
}

/// A builder pointed at `server` with static credentials, an explicit region and
/// no environment variables.
pub fn builder(server: &MockServer) -> ClientBuilder {
    isolate_env();
    Client::builder()
        .region(REGION)
        .endpoint_url(server.url())
        .credentials(credentials())
        .operation_timeout(Duration::from_secs(20))
        .env_source(|_| None)
}

pub async fn client(server: &MockServer) -> Client {
    builder(server).build().await.expect("client")
}

/// Verifies the SigV4 signature of a recorded request from scratch (canonical
/// request, string to sign, signing key), independently of aws-sigv4.
pub fn verify_signature(req: &RecordedRequest, secret_key: &str, region: &str) {
    let auth = req.header("authorization").expect("authorization header");
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .expect("AWS4-HMAC-SHA256 scheme");
    let mut credential = "";
    let mut signed_headers = "";
    let mut signature = "";
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').expect("k=v");
        match k {
            "Credential" => credential = v,
            "SignedHeaders" => signed_headers = v,
            "Signature" => signature = v,
            other => panic!("unexpected {other}"),
        }
    }
    let scope_parts: Vec<&str> = credential.splitn(2, '/').collect();
    let scope = scope_parts[1];
    let date = scope.split('/').next().unwrap();
    assert_eq!(scope, format!("{date}/{region}/cloudshell/aws4_request"));
    let amz_date = req.header("x-amz-date").expect("x-amz-date");
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = req
            .header(name)
            .unwrap_or_else(|| panic!("signed header {name} missing"));
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let canonical_request = format!(
        "{}\n{}\n\n{}\n{}\n{}",
        req.method,
        req.path,
        canonical_headers,
        signed_headers,
        hex::encode(Sha256::digest(&req.body))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let hmac = |key: &[u8], data: &str| -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    let k = hmac(format!("AWS4{secret_key}").as_bytes(), date);
    let k = hmac(&k, region);
    let k = hmac(&k, "cloudshell");
    let k = hmac(&k, "aws4_request");
    let expected = hex::encode(hmac(&k, &string_to_sign));
    assert_eq!(signature, expected, "signature mismatch for {}", req.path);
}
