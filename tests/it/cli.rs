//! The `cloudshell-rs` binary against the emulator: every control-plane
//! subcommand, the request bodies it sends, what it prints and its exit codes.

use std::path::Path;
use std::process::Output;

use cloudshell_emulator::{AcceptedCredentials, Emulator, EmulatorConfig, EmulatorHandle, Timings};
use serde_json::{Value, json};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_cloudshell-rs");

struct Fixture {
    emu: EmulatorHandle,
    creds: AcceptedCredentials,
    dir: TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let creds = AcceptedCredentials::generate();
    let config = EmulatorConfig::new(dir.path().join("state"))
        .with_credentials(creds.clone())
        .with_timings(Timings::instant());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emu = Emulator::start(config, listener).await.unwrap();
    Fixture { emu, creds, dir }
}

/// A command with a clean, isolated environment: no AWS configuration from the
/// machine, no instance-metadata probing, an explicit region.
fn isolated(home: &Path) -> tokio::process::Command {
    isolated_program(BIN, home)
}

/// `program` with the clean environment of [`isolated`].
fn isolated_program(program: &str, home: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(program);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    c
}

impl Fixture {
    fn cmd(&self) -> tokio::process::Command {
        let mut c = isolated(self.dir.path());
        c.env("AWS_ENDPOINT_URL_CLOUDSHELL", self.emu.endpoint())
            .env("AWS_ACCESS_KEY_ID", &self.creds.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.creds.secret_access_key);
        c
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().await.unwrap()
    }

    /// Runs with `--output json`, expects success, returns the parsed stdout.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all).await;
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {}", text(&out.stdout)))
    }

    /// The body of the last request of `operation` the emulator received.
    fn last_body(&self, operation: &str) -> Value {
        self.emu
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.operation == operation)
            .unwrap_or_else(|| panic!("no {operation} request"))
            .body
    }

    fn count(&self, operation: &str) -> usize {
        self.emu
            .requests()
            .iter()
            .filter(|r| r.operation == operation)
            .count()
    }

    /// `create` of a VPC environment in `vpc-0123456789abcdef0`, its JSON output.
    async fn create_vpc_env(&self, name: &str, subnets: &str, groups: &str) -> Value {
        self.json(&[
            "create",
            "--name",
            name,
            "--vpc-id",
            "vpc-0123456789abcdef0",
            "--subnet-ids",
            subnets,
            "--security-group-ids",
            groups,
        ])
        .await
    }

    async fn default_env(&self) -> String {
        let v = self.json(&["create"]).await;
        v["EnvironmentId"].as_str().unwrap().to_string()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_lists_environments_in_every_format() {
    let f = fixture().await;
    let v = f.json(&["describe"]).await;
    assert_eq!(v, json!({ "Environments": [] }));
    let out = f.run(&["describe"]).await;
    assert_eq!(text(&out.stdout), "(none)\n");

    let id = f.default_env().await;
    let v = f.json(&["describe"]).await;
    assert_eq!(v["Environments"][0]["EnvironmentId"], json!(id));
    assert_eq!(v["Environments"][0]["Status"], json!("RUNNING"));
    assert!(v["Environments"][0].get("VpcConfig").is_none());

    let out = f.run(&["describe"]).await;
    let table = text(&out.stdout);
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["ENVIRONMENT", "ID", "NAME", "STATUS", "VPC"]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id) && row.contains("(default)") && row.contains("RUNNING"));

    let out = f.run(&["--output", "text", "describe"]).await;
    assert_eq!(text(&out.stdout), format!("{id}\t(default)\tRUNNING\t-\n"));
    assert_eq!(f.last_body("DescribeEnvironments"), json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_default_and_vpc_environments() {
    let f = fixture().await;
    let v = f.json(&["create"]).await;
    assert_eq!(f.last_body("CreateEnvironment"), json!({}));
    let id = v["EnvironmentId"].as_str().unwrap().to_string();
    assert!(v["StartScreenMessages"].is_array());
    // get-or-create: the same default environment comes back
    let again = f.json(&["create"]).await;
    assert_eq!(again["EnvironmentId"], json!(id));
    // The earlier tool's `create --name my-env` (no VPC) still works.
    let named = f.json(&["create", "--name", "my-env"]).await;
    assert_eq!(named["EnvironmentId"], json!(id));
    assert_eq!(
        f.last_body("CreateEnvironment"),
        json!({ "EnvironmentName": "my-env" })
    );

    let v = f
        .create_vpc_env("my-vpc-env", "subnet-1,subnet-2", "sg-1,sg-2")
        .await;
    assert_ne!(v["EnvironmentId"], json!(id));
    assert_eq!(
        f.last_body("CreateEnvironment"),
        json!({
            "EnvironmentName": "my-vpc-env",
            "VpcConfig": {
                "VpcId": "vpc-0123456789abcdef0",
                "SubnetIds": ["subnet-1", "subnet-2"],
                "SecurityGroupIds": ["sg-1", "sg-2"],
            }
        })
    );
    let d = f.json(&["describe"]).await;
    let vpc = d["Environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["EnvironmentId"] == v["EnvironmentId"])
        .unwrap();
    assert_eq!(vpc["EnvironmentName"], json!("my-vpc-env"));
    assert_eq!(vpc["VpcConfig"]["VpcId"], json!("vpc-0123456789abcdef0"));
}

/// ENV is an environment id or a (VPC) environment's name for every command
/// that takes one; an id is used as given, without listing the environments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_are_named_by_id_or_name() {
    let f = fixture().await;
    let default_id = f.default_env().await;
    let v = f.create_vpc_env("my-vpc-env", "subnet-1", "sg-1").await;
    let vpc_id = v["EnvironmentId"].as_str().unwrap().to_string();

    // Runs a command naming the environment, which must succeed and send
    // `operation` for the environment's id.
    let by_name = async |args: &[&str], operation: &str| {
        let out = f.run(args).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(
            f.last_body(operation)["EnvironmentId"],
            json!(vpc_id),
            "{args:?}"
        );
        out
    };
    let out = by_name(
        &["--output", "json", "status", "my-vpc-env"],
        "GetEnvironmentStatus",
    )
    .await;
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["EnvironmentId"], json!(vpc_id));
    by_name(&["heartbeat", "my-vpc-env"], "SendHeartBeat").await;
    let out = by_name(
        &["exec", "my-vpc-env", "--", "echo", "named"],
        "CreateSession",
    )
    .await;
    assert_eq!(text(&out.stdout), "named\n");

    // An id needs no lookup.
    let listed = f.count("DescribeEnvironments");
    let s = f.json(&["status", &default_id]).await;
    assert_eq!(s["EnvironmentId"], json!(default_id));
    assert_eq!(f.count("DescribeEnvironments"), listed);

    // A name nobody has: a clear error naming the names there are.
    let asked = f.count("GetEnvironmentStatus");
    let out = f.run(&["status", "my-vpc-nev"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "no environment has the id or name \"my-vpc-nev\" in this region \
             (names: my-vpc-env); `cloudshell-rs describe` lists them"
        ),
        "{err}"
    );
    assert_eq!(
        f.count("GetEnvironmentStatus"),
        asked,
        "nothing asked for the unknown name"
    );

    by_name(&["stop", "my-vpc-env"], "StopEnvironment").await;
    by_name(&["delete", "my-vpc-env"], "DeleteEnvironment").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_vpc_config_is_refused_before_any_request() {
    let f = fixture().await;
    for (args, needle) in [
        (
            vec![
                "--name",
                "n",
                "--vpc-id",
                "bad",
                "--subnet-ids",
                "subnet-1",
                "--security-group-ids",
                "sg-1",
            ],
            "vpc-",
        ),
        (
            vec![
                "--name",
                "n",
                "--vpc-id",
                "vpc-1",
                "--subnet-ids",
                "net-1",
                "--security-group-ids",
                "sg-1",
            ],
            "subnet-",
        ),
        (
            vec![
                "--name",
                "n",
                "--vpc-id",
                "vpc-1",
                "--subnet-ids",
                "subnet-1",
                "--security-group-ids",
                "sg-1,sg-2,sg-3,sg-4,sg-5,sg-6",
            ],
            "5",
        ),
        (
            vec![
                "--vpc-id",
                "vpc-1",
                "--subnet-ids",
                "subnet-1",
                "--security-group-ids",
                "sg-1",
            ],
            "EnvironmentName",
        ),
    ] {
        let mut all = vec!["create"];
        all.extend(args);
        let out = f.run(&all).await;
        // A malformed argument is a usage error, whoever finds it.
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("not sent") && err.contains(needle),
            "{all:?}: {err}"
        );
    }
    assert_eq!(f.count("CreateEnvironment"), 0);

    // A VPC id without subnets is a usage error (exit 2), caught by the parser.
    let out = f.run(&["create", "--vpc-id", "vpc-1"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_start_stop_delete_lifecycle() {
    let f = fixture().await;
    // No default environment yet: a clear hint, no environment created.
    let out = f.run(&["status"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cloudshell-rs create"));

    let id = f.default_env().await;
    let v = f.json(&["status"]).await;
    assert_eq!(v, json!({ "EnvironmentId": id, "Status": "RUNNING" }));
    assert_eq!(
        f.last_body("GetEnvironmentStatus"),
        json!({ "EnvironmentId": id })
    );

    // Start on a RUNNING environment: the service's InvalidStatusException and a hint.
    let out = f.run(&["start", &id]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("InvalidStatusException") && err.contains("hint"),
        "{err}"
    );

    let v = f.json(&["stop", &id]).await;
    assert_eq!(v["EnvironmentId"], json!(id));
    assert_eq!(
        f.last_body("StopEnvironment"),
        json!({ "EnvironmentId": id })
    );
    assert_eq!(f.json(&["status", &id]).await["Status"], json!("SUSPENDED"));

    let v = f.json(&["start", "--wait", "--timeout-secs", "30"]).await;
    assert_eq!(v, json!({ "EnvironmentId": id, "Status": "RUNNING" }));
    assert_eq!(
        f.last_body("StartEnvironment"),
        json!({ "EnvironmentId": id })
    );

    // delete needs an explicit id
    let out = f.run(&["delete"]).await;
    assert_eq!(out.status.code(), Some(2));
    let v = f.json(&["delete", &id]).await;
    assert_eq!(v["EnvironmentId"], json!(id));
    assert_eq!(
        f.last_body("DeleteEnvironment"),
        json!({ "EnvironmentId": id })
    );
    let out = f.run(&["status", &id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("ResourceNotFoundException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_hides_the_token_unless_asked() {
    let f = fixture().await;
    let id = f.default_env().await;
    let tab = "3f9b2c1d-7e6a-4b58-9c0d-1e2f3a4b5c6d";
    let v = f.json(&["session", "--tab-id", tab]).await;
    let body = f.last_body("CreateSession");
    assert_eq!(
        body,
        json!({ "EnvironmentId": id, "TabId": tab, "SessionType": "TMUX", "QCliDisabled": true })
    );
    assert!(v.get("TokenValue").is_none());
    assert_eq!(v["TabId"], json!(tab));
    let url = v["StreamUrl"].as_str().unwrap();
    let sid = v["SessionId"].as_str().unwrap();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.contains(sid),
        "{url}"
    );
    let snapshot = f.emu.environment(&id).unwrap();
    let record = snapshot
        .sessions
        .iter()
        .find(|s| s.session_id == sid)
        .unwrap();
    let token = record.token.expose().to_string();
    let out = f.run(&["session"]).await;
    assert!(!text(&out.stdout).contains("Token"));

    let v = f.json(&["session", "--show-token"]).await;
    let shown = v["TokenValue"].as_str().unwrap();
    assert!(shown.len() >= 32);
    assert_ne!(shown, token, "each session has its own token");

    // A generated TabId is a UUID v4.
    let tab = f.last_body("CreateSession")["TabId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(uuid::Uuid::parse_str(&tab).unwrap().get_version_num(), 4);

    // A bad TabId is a usage error, found before any request.
    for cmd in ["session", "connect"] {
        let out = f.run(&[cmd, "--tab-id", "not-a-uuid"]).await;
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(
            text(&out.stderr).contains(
                "invalid value 'not-a-uuid' for '--tab-id <TAB_ID>': \"not-a-uuid\" is not a UUID"
            ),
            "{cmd}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(f.last_body("CreateSession")["TabId"], json!(tab));

    let v = f.json(&["delete-session", sid]).await;
    assert_eq!(v["SessionId"], json!(sid));
    assert_eq!(
        f.last_body("DeleteSession"),
        json!({ "EnvironmentId": id, "SessionId": sid })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_once_reaches_the_emulator() {
    let f = fixture().await;
    let id = f.default_env().await;
    let before = f.emu.environment(&id).unwrap().heartbeats;
    let v = f.json(&["heartbeat"]).await;
    assert_eq!(v["EnvironmentId"], json!(id));
    assert_eq!(f.emu.environment(&id).unwrap().heartbeats, before + 1);
    assert_eq!(f.last_body("SendHeartBeat"), json!({ "EnvironmentId": id }));
    // --every needs a positive interval
    let out = f.run(&["heartbeat", "--every", "0"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_every_keeps_sending() {
    let f = fixture().await;
    let id = f.default_env().await;
    let mut events = f.emu.subscribe();
    let mut child = f
        .cmd()
        .args(["heartbeat", "--every", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (without sleeping blind) until two heartbeats have arrived.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while f.emu.environment(&id).unwrap().heartbeats < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeats arrived"
        );
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), events.recv()).await;
    }
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_urls_send_the_path_and_hide_the_key() {
    let f = fixture().await;
    let id = f.default_env().await;
    let v = f.json(&["upload-urls", "--path", "notes.txt"]).await;
    assert_eq!(
        f.last_body("GetFileUploadUrls"),
        json!({ "EnvironmentId": id, "FileUploadPath": "notes.txt" })
    );
    assert!(
        v["FileUploadPresignedUrl"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let fields = v["FileUploadPresignedFields"].as_object().unwrap();
    assert_eq!(
        fields["x-amz-server-side-encryption-customer-key"],
        json!("***")
    );
    assert_eq!(
        fields["x-amz-server-side-encryption-customer-algorithm"],
        json!("AES256")
    );
    assert_eq!(v["FileDownloadPresignedKey"], json!("***"));

    let v = f
        .json(&[
            "download",
            "--path",
            "/home/cloudshell-user/notes.txt",
            "--show-secrets",
        ])
        .await;
    assert_eq!(
        f.last_body("GetFileDownloadUrls"),
        json!({ "EnvironmentId": id, "FileDownloadPath": "/home/cloudshell-user/notes.txt" })
    );
    let key = v["FileDownloadPresignedKey"].as_str().unwrap();
    assert_eq!(
        v["FileUploadPresignedFields"]["x-amz-server-side-encryption-customer-key"],
        json!(key)
    );
    assert_eq!(key.len(), 44, "base64 of a 256-bit key");

    // The earlier tool's form, `download ENV`, still works: a default path is sent.
    let v = f.json(&["download", &id]).await;
    assert!(v["FileDownloadPresignedUrl"].is_string());
    assert_eq!(
        f.last_body("GetFileDownloadUrls"),
        json!({ "EnvironmentId": id, "FileDownloadPath": "download" })
    );
    let v = f.json(&["upload", &id]).await;
    assert!(v["FileUploadPresignedUrl"].is_string());
    assert_eq!(
        f.last_body("GetFileUploadUrls"),
        json!({ "EnvironmentId": id, "FileUploadPath": "upload" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_credentials_reads_the_token_from_stdin_only() {
    let f = fixture().await;
    let id = f.default_env().await;
    let mut child = f
        .cmd()
        .args(["put-credentials", "--key-base", "kb-123"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"refresh-token-not-from-redeem\n")
            .await
            .unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    // The emulator, like the service, refuses a token it did not issue.
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("TokenDecryptionException"), "{err}");
    assert!(
        !err.contains("refresh-token-not-from-redeem"),
        "secret in error: {err}"
    );
    assert_eq!(
        f.last_body("PutCredentials"),
        json!({ "EnvironmentId": id, "KeyBase": "kb-123", "RefreshToken": "refresh-token-not-from-redeem" })
    );
    // From the environment variable too.
    let out = f
        .cmd()
        .env("CLOUDSHELL_RS_REFRESH_TOKEN", "other-token")
        .args(["put-credentials", "--key-base", "kb"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        f.last_body("PutCredentials")["RefreshToken"],
        json!("other-token")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_errors_and_bad_credentials_are_reported_once() {
    let f = fixture().await;
    let out = f
        .cmd()
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
        .arg("describe")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("InvalidSignatureException"), "{err}");
    assert!(!err.contains("wrong-secret-value"));
    assert_eq!(
        err.matches("InvalidSignatureException").count(),
        1,
        "chain printed once: {err}"
    );
    assert!(
        err.starts_with("cloudshell-rs: DescribeEnvironments failed"),
        "{err}"
    );

    // --endpoint-url beats the environment variable.
    let out = f
        .cmd()
        .env("AWS_ENDPOINT_URL_CLOUDSHELL", "http://127.0.0.1:9")
        .args(["--endpoint-url", &f.emu.endpoint(), "describe"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_go_to_stderr_without_secrets() {
    let f = fixture().await;
    let id = f.default_env().await;
    let out = f
        .run(&["--debug", "--output", "json", "session", &id])
        .await;
    assert!(out.status.success());
    let log = text(&out.stderr);
    assert!(log.contains("CreateSession"), "no request logged: {log}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sid = v["SessionId"].as_str().unwrap();
    let token = f
        .emu
        .environment(&id)
        .unwrap()
        .sessions
        .into_iter()
        .find(|s| s.session_id == sid)
        .unwrap()
        .token
        .expose()
        .to_string();
    assert!(!log.contains(&token), "session token in the debug log");
    assert!(
        !log.contains(&f.creds.secret_access_key),
        "secret key in the debug log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_works_without_any_aws_configuration() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let run = |args: &[&str]| {
        let mut c = isolated(home.path());
        c.arg("--local").arg("--state-dir").arg(&state).args(args);
        c
    };
    let out = run(&["--output", "json", "create"]).output().await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["EnvironmentId"].as_str().unwrap().to_string();
    // A second process sees the same environment (state on disk).
    let out = run(&["--output", "json", "describe"])
        .output()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Environments"][0]["EnvironmentId"], json!(id));
    // The user's own environment credentials are accepted too; environments
    // belong to the principal that created them, so that one sees none yet.
    let out = run(&["describe"])
        .env("AWS_ACCESS_KEY_ID", "AKIAUSERKEY000000000")
        .env("AWS_SECRET_ACCESS_KEY", "user-secret")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "(none)\n");
}

/// Starts `cloudshell-rs emulator` through `cmd` and reads the exports it
/// prints until its "Press Ctrl-C" line.
async fn standalone_emulator(
    mut cmd: tokio::process::Command,
) -> (tokio::process::Child, Vec<(String, String)>) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut exports = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(kv) = line.strip_prefix("export ") {
            let (k, v) = kv.split_once('=').unwrap();
            exports.push((k.to_string(), v.to_string()));
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    (child, exports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_command_prints_a_usable_endpoint_and_credentials() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = isolated(home.path());
    cmd.args(["emulator", "--port", "0", "--state-dir"])
        .arg(home.path().join("state"));
    let (mut child, exports) = standalone_emulator(cmd).await;
    let keys: Vec<&str> = exports.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "AWS_ENDPOINT_URL_CLOUDSHELL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY"
        ]
    );
    assert!(exports[0].1.starts_with("http://127.0.0.1:"));
    let mut c = isolated(home.path());
    for (k, v) in &exports {
        c.env(k, v);
    }
    let out = c
        .args(["--output", "json", "create"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    child.kill().await.unwrap();
}

/// An emulator started in the background by a script inherits SIGINT and
/// SIGQUIT ignored (what a non-interactive shell does to `cmd &`). Its shells
/// must still start with every signal handled by default, or Ctrl-C and
/// `exec`'s interrupt would never reach a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_shells_get_default_signals_when_it_started_with_ctrl_c_ignored() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = isolated_program("sh", home.path());
    cmd.args([
        "-c",
        "trap '' INT QUIT; exec \"$0\" \"$@\"",
        BIN,
        "emulator",
        "--port",
        "0",
        "--state-dir",
    ])
    .arg(home.path().join("state"));
    let (mut child, exports) = standalone_emulator(cmd).await;
    let mut c = isolated(home.path());
    for (k, v) in &exports {
        c.env(k, v);
    }
    // The login shell's children get the dispositions the shell started with.
    let out = c
        .args(["exec", "--", "grep", "^SigIgn:", "/proc/self/status"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ignored = text(&out.stdout);
    let mask = u64::from_str_radix(ignored.trim().trim_start_matches("SigIgn:").trim(), 16)
        .unwrap_or_else(|_| panic!("{ignored:?}"));
    let (int, quit) = (1 << (libc::SIGINT - 1), 1 << (libc::SIGQUIT - 1));
    assert_eq!(mask & (int | quit), 0, "{ignored}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn usage_errors_exit_2_and_completions_work() {
    let home = tempfile::tempdir().unwrap();
    let out = isolated(home.path())
        .arg("no-such-command")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = isolated(home.path())
        .args(["--output", "yaml", "describe"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = isolated(home.path())
        .args(["completions", "bash"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("cloudshell-rs"));
    // emulator options are validated before anything starts
    for bad in [
        vec!["emulator", "--fault", "bogus"],
        vec!["emulator", "--session-mode", "nope"],
        vec!["emulator", "--handshake", "maybe"],
        vec!["emulator", "--chunk-size", "0"],
        // forward needs an agent that multiplexes, forward-basic one that does not
        vec![
            "emulator",
            "--session-mode",
            "forward:22",
            "--agent-version",
            "3.0.196.0",
        ],
        vec![
            "emulator",
            "--session-mode",
            "forward-basic:22",
            "--agent-version",
            "3.1.0.0",
        ],
    ] {
        let out = isolated(home.path())
            .args(&bad)
            .arg("--state-dir")
            .arg(home.path().join("s"))
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }
    // every subcommand has examples in its long help
    for sub in [
        "describe",
        "create",
        "status",
        "start",
        "stop",
        "delete",
        "session",
        "delete-session",
        "heartbeat",
        "upload-urls",
        "download-urls",
        "put-credentials",
        "completions",
        "emulator",
    ] {
        let out = isolated(home.path())
            .args([sub, "--help"])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{sub} --help");
        assert!(
            text(&out.stdout).contains("Example"),
            "{sub} --help has no examples"
        );
    }
}

#[tokio::test]
async fn no_region_anywhere_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = isolated(home.path())
        .env_remove("AWS_REGION")
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE000000000")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .arg("describe")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).to_lowercase().contains("region"),
        "{}",
        text(&out.stderr)
    );
}

/// The shared config files are read only when they can change the outcome:
/// with the region and credentials in the environment and the endpoint from
/// `--endpoint-url`, `AWS_ENDPOINT_URL_CLOUDSHELL` or `AWS_ENDPOINT_URL`,
/// aws-config is not loaded; a selected profile, or a profile `endpoint_url`
/// that would apply, still goes through the standard chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_config_is_loaded_only_when_it_can_matter() {
    const SKIPPED: &str = "region and credentials from the environment; shared config not loaded";
    const LOADED: &str = "loading the shared AWS configuration and credential chain";

    // Two principals: one given by environment variables, one by a profile.
    // Environments belong to the principal that created them, so what
    // `describe` prints tells which credentials were used.
    let dir = tempfile::tempdir().unwrap();
    let env_creds = AcceptedCredentials::generate();
    let profile_creds = AcceptedCredentials::generate();
    let config = EmulatorConfig::new(dir.path().join("state"))
        .with_credentials(env_creds.clone())
        .with_credentials(profile_creds.clone())
        .with_timings(Timings::instant());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emu = Emulator::start(config, listener).await.unwrap();
    let endpoint = emu.endpoint();
    let aws_config = dir.path().join("aws-config");
    std::fs::write(
        &aws_config,
        format!(
            "[default]\nendpoint_url = {endpoint}\n\n\
             [profile work]\nregion = us-east-1\nendpoint_url = {endpoint}\n\
             aws_access_key_id = {}\naws_secret_access_key = {}\n",
            profile_creds.access_key_id, profile_creds.secret_access_key
        ),
    )
    .unwrap();
    let with_env_creds = || {
        let mut c = isolated(dir.path());
        c.env("AWS_CONFIG_FILE", &aws_config)
            .env("AWS_ACCESS_KEY_ID", &env_creds.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &env_creds.secret_access_key);
        c
    };

    // The environment principal gets a default environment.
    let mut c = with_env_creds();
    c.env("AWS_ENDPOINT_URL_CLOUDSHELL", &endpoint);
    let (_, log) = run(c, &["create"]).await;
    assert!(log.contains(SKIPPED) && !log.contains(LOADED), "{log}");
    let envs = emu.environments();
    assert_eq!(envs.len(), 1);
    let env_id = &envs[0].environment_id;

    // Endpoint from AWS_ENDPOINT_URL_CLOUDSHELL, region from AWS_DEFAULT_REGION.
    let mut c = with_env_creds();
    c.env_remove("AWS_REGION")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_CLOUDSHELL", &endpoint);
    let (out, log) = run(c, &["describe"]).await;
    assert!(out.contains(env_id.as_str()), "{out}");
    assert!(log.contains(SKIPPED) && !log.contains(LOADED), "{log}");

    // Endpoint from AWS_ENDPOINT_URL.
    let mut c = with_env_creds();
    c.env("AWS_ENDPOINT_URL", &endpoint);
    let (out, log) = run(c, &["describe"]).await;
    assert!(out.contains(env_id.as_str()), "{out}");
    assert!(log.contains(SKIPPED) && !log.contains(LOADED), "{log}");

    // Endpoint from --endpoint-url, beating a dead AWS_ENDPOINT_URL_CLOUDSHELL.
    let mut c = with_env_creds();
    c.env("AWS_ENDPOINT_URL_CLOUDSHELL", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    let (out, log) = run(c, &["--endpoint-url", &endpoint, "describe"]).await;
    assert!(out.contains(env_id.as_str()), "{out}");
    assert!(log.contains(SKIPPED) && !log.contains(LOADED), "{log}");

    // No endpoint variable: the default profile's endpoint_url applies, so the
    // shared config is read (and the environment credentials still win).
    let (out, log) = run(with_env_creds(), &["describe"]).await;
    assert!(out.contains(env_id.as_str()), "{out}");
    assert!(log.contains(LOADED) && !log.contains(SKIPPED), "{log}");

    // AWS_PROFILE selects a profile: the standard chain is used, in which the
    // environment credentials come first.
    let mut c = with_env_creds();
    c.env("AWS_PROFILE", "work")
        .env("AWS_ENDPOINT_URL_CLOUDSHELL", &endpoint);
    let (out, log) = run(c, &["describe"]).await;
    assert!(out.contains(env_id.as_str()), "{out}");
    assert!(log.contains(LOADED) && !log.contains(SKIPPED), "{log}");

    // --profile without environment credentials: the profile's credentials
    // (another principal, with no environment yet) and endpoint are used.
    let mut c = isolated(dir.path());
    c.env("AWS_CONFIG_FILE", &aws_config);
    let (out, log) = run(c, &["--profile", "work", "describe"]).await;
    assert_eq!(out, "(none)\n");
    assert!(log.contains(LOADED) && !log.contains(SKIPPED), "{log}");
    let mut c = isolated(dir.path());
    c.env("AWS_CONFIG_FILE", &aws_config)
        .env("AWS_PROFILE", "work")
        .env("AWS_ENDPOINT_URL_CLOUDSHELL", &endpoint);
    let (out, _) = run(c, &["describe"]).await;
    assert_eq!(out, "(none)\n");

    // Incomplete environment credentials fall through to the chain.
    let mut c = isolated(dir.path());
    c.env("AWS_ACCESS_KEY_ID", &env_creds.access_key_id)
        .env("AWS_ENDPOINT_URL_CLOUDSHELL", &endpoint)
        .args(["--debug", "describe"]);
    let out = c.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out.stderr);
    assert!(log.contains(LOADED) && !log.contains(SKIPPED), "{log}");
    assert!(log.to_lowercase().contains("credentials"), "{log}");
}

/// A profile that is not defined is named in the error, with the profiles
/// that are, instead of aws-config's "no region" or empty credential chain;
/// `AWS_PROFILE` naming one is no error when the environment holds
/// credentials (they come first in the chain, as in the AWS SDKs).
#[tokio::test]
async fn undefined_profile_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let aws_config = dir.path().join("aws-config");
    std::fs::write(
        &aws_config,
        "[default]\nregion = us-east-1\n\n[profile work]\nregion = eu-west-1\n",
    )
    .unwrap();
    let expected = "the AWS profile \"wrok\" is not defined in the shared config or \
                    credentials file (profiles there: default, work)";
    for by_variable in [false, true] {
        let mut c = isolated(dir.path());
        c.env("AWS_CONFIG_FILE", &aws_config)
            .env_remove("AWS_REGION");
        if by_variable {
            c.env("AWS_PROFILE", "wrok").arg("describe");
        } else {
            c.args(["--profile", "wrok", "describe"]);
        }
        let out = c.output().await.unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains("region"), "{err}");
    }

    // With credentials in the environment, AWS_PROFILE naming an undefined
    // profile does not stop the command: the request is made (and here
    // refused by a closed port, which shows it was sent).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut c = isolated(dir.path());
    c.env("AWS_CONFIG_FILE", &aws_config)
        .env("AWS_PROFILE", "wrok")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        .env("AWS_MAX_ATTEMPTS", "1")
        .args([
            "--endpoint-url",
            &format!("http://127.0.0.1:{port}"),
            "describe",
        ]);
    let out = c.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("DescribeEnvironments: request to"), "{err}");
    assert!(!err.contains("not defined"), "{err}");
}

/// A profile that signs in through IAM Identity Center with no cached
/// sign-in fails before any request, with aws-config's reason and what to do
/// about it (both forms of SSO profile; nothing is sent anywhere).
#[tokio::test]
async fn missing_sso_sign_in_says_to_run_aws_sso_login() {
    let dir = tempfile::tempdir().unwrap();
    let aws_config = dir.path().join("aws-config");
    std::fs::write(
        &aws_config,
        "[profile corp]\nsso_session = corp-sso\nsso_account_id = 111122223333\n\
         sso_role_name = ReadOnly\nregion = us-east-1\n\n\
         [sso-session corp-sso]\nsso_start_url = https://example.awsapps.com/start\n\
         sso_region = us-east-1\n\n\
         [profile legacy]\nsso_start_url = https://example.awsapps.com/start\n\
         sso_region = us-east-1\nsso_account_id = 111122223333\n\
         sso_role_name = ReadOnly\nregion = us-east-1\n",
    )
    .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for profile in ["corp", "legacy"] {
        let mut c = isolated(dir.path());
        c.env("AWS_CONFIG_FILE", &aws_config).args([
            "--profile",
            profile,
            "--endpoint-url",
            &endpoint,
            "describe",
        ]);
        let out = c.output().await.unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = text(&out.stderr);
        assert!(err.contains("could not load AWS credentials"), "{err}");
        assert!(
            err.contains("run `aws sso login` with the same profile"),
            "{err}"
        );
        assert!(!err.contains("request to"), "{err}");
    }
    // Other credential failures get no such hint.
    let out = isolated(dir.path())
        .args(["--endpoint-url", &endpoint, "describe"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("could not load AWS credentials"), "{err}");
    assert!(!err.contains("aws sso login"), "{err}");
}

/// Runs `c` with `--debug` and `args`, expects success, returns stdout and stderr.
async fn run(mut c: tokio::process::Command, args: &[&str]) -> (String, String) {
    let out = c.arg("--debug").args(args).output().await.unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}
