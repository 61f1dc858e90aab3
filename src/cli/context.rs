//! Builds the API client for a command: from the AWS configuration, or
//! against an in-process emulator with `--local`.

use cloudshell_rs::{Client, types::Environment};

use super::{CliError, CliResult, GlobalArgs, chain};

/// Everything a subcommand needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Keeps the in-process emulator alive for the command's lifetime.
    #[cfg(feature = "local")]
    _emulator: Option<cloudshell_emulator::EmulatorHandle>,
}

impl Context {
    /// Builds the client described by the global options.
    pub async fn new(global: &GlobalArgs) -> CliResult<Self> {
        if global.local {
            #[cfg(feature = "local")]
            return local(global).await;
            #[cfg(not(feature = "local"))]
            return Err(CliError::with_code(
                "--local needs a build with the `local` feature (the default)",
                2,
            ));
        }
        let mut builder = Client::builder();
        if let Some(r) = &global.region {
            builder = builder.region(r.clone());
        }
        if let Some(p) = &global.profile {
            builder = builder.profile(p.clone());
        }
        if let Some(e) = &global.endpoint_url {
            builder = builder.endpoint_url(e.clone());
        }
        let client = builder
            .build()
            .await
            .map_err(|e| CliError::new(chain(&e)))?;
        Ok(Self {
            client,
            #[cfg(feature = "local")]
            _emulator: None,
        })
    }

    /// The environment the user named, by id or name
    /// ([`Client::resolve_environment`](cloudshell_rs::Client::resolve_environment)).
    pub async fn resolve_env(&self, env: String) -> CliResult<String> {
        self.client
            .resolve_environment(&env)
            .await
            .map_err(|e| match e {
                cloudshell_rs::Error::UnknownEnvironment { .. } => {
                    CliError::new(format!("{e}; `cloudshell-rs describe` lists them"))
                }
                e => e.into(),
            })
    }

    /// The given environment (id or name), or the default (non-VPC)
    /// environment's id. Fails with a hint when there is no default
    /// environment yet.
    pub async fn env_or_default(&self, env: Option<String>) -> CliResult<String> {
        if let Some(env) = env {
            return self.resolve_env(env).await;
        }
        let out = self.client.describe_environments().send().await?;
        default_environment(&out.environments)
            .map(|e| e.environment_id.clone())
            .ok_or_else(|| {
                CliError::new(
                    "no default environment in this region; create it with `cloudshell-rs create`",
                )
            })
    }

    /// The given environment (id or name), or the default environment,
    /// created if needed.
    pub async fn env_or_create_default(&self, env: Option<String>) -> CliResult<String> {
        match env {
            Some(env) => self.resolve_env(env).await,
            None => Ok(self.client.find_or_create_default().await?),
        }
    }
}

/// The default environment: the one without a VPC configuration.
pub fn default_environment(envs: &[Environment]) -> Option<&Environment> {
    envs.iter().find(|e| e.is_default())
}

#[cfg(feature = "local")]
fn region_for_local(global: &GlobalArgs) -> String {
    global
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".to_string())
}

#[cfg(feature = "local")]
fn state_dir(global: &GlobalArgs) -> CliResult<std::path::PathBuf> {
    global
        .state_dir
        .clone()
        .or_else(cloudshell_emulator::default_state_dir)
        .ok_or_else(|| {
            CliError::new("cannot find a data directory for the emulator state; pass --state-dir")
        })
}

/// Credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
/// `AWS_SESSION_TOKEN`), if set. Local mode never walks the rest of the chain,
/// so it needs no network and no AWS configuration.
#[cfg(feature = "local")]
fn env_credentials() -> Option<(String, String, Option<String>)> {
    let id = std::env::var("AWS_ACCESS_KEY_ID")
        .ok()
        .filter(|s| !s.is_empty())?;
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
        .ok()
        .filter(|s| !s.is_empty())?;
    let token = std::env::var("AWS_SESSION_TOKEN")
        .ok()
        .filter(|s| !s.is_empty());
    Some((id, secret, token))
}

#[cfg(feature = "local")]
async fn start_emulator(
    global: &GlobalArgs,
    port: u16,
    extra: Option<cloudshell_emulator::AcceptedCredentials>,
    realistic: bool,
    sessions: Option<cloudshell_emulator::gateway::SessionOptions>,
) -> CliResult<(
    cloudshell_emulator::EmulatorHandle,
    cloudshell_emulator::AcceptedCredentials,
    String,
)> {
    use cloudshell_emulator::{Emulator, EmulatorConfig, Timings, load_or_create_credentials};
    let dir = state_dir(global)?;
    std::fs::create_dir_all(&dir).map_err(|e| {
        CliError::new(format!(
            "cannot create the emulator state directory {}: {e}",
            dir.display()
        ))
    })?;
    let own = load_or_create_credentials(&dir).map_err(|e| {
        CliError::new(format!(
            "cannot read or create the emulator credentials in {}: {e}",
            dir.display()
        ))
    })?;
    let region = region_for_local(global);
    let mut config = EmulatorConfig::new(dir);
    config.region = region.clone();
    config.timings = if realistic {
        Timings::realistic()
    } else {
        Timings::fast()
    };
    config.credentials = vec![own.clone()];
    if let Some(options) = sessions {
        config = config.with_session_defaults(options);
    }
    if let Some(extra) = extra {
        config.credentials.push(extra);
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| CliError::new(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let handle = Emulator::start(config, listener)
        .await
        .map_err(|e| CliError::new(format!("cannot start the emulator: {}", chain(&e))))?;
    Ok((handle, own, region))
}

#[cfg(feature = "local")]
async fn local(global: &GlobalArgs) -> CliResult<Context> {
    use aws_credential_types::Credentials;
    use cloudshell_emulator::AcceptedCredentials;
    let user = env_credentials();
    let extra = user.as_ref().map(|(id, secret, _)| AcceptedCredentials {
        access_key_id: id.clone(),
        secret_access_key: secret.clone(),
    });
    let (handle, own, region) = start_emulator(global, 0, extra, false, None).await?;
    let credentials = match user {
        Some((id, secret, token)) => Credentials::new(id, secret, token, None, "environment"),
        None => Credentials::new(
            own.access_key_id.clone(),
            own.secret_access_key.clone(),
            None,
            None,
            "cloudshell-rs-emulator",
        ),
    };
    // The emulator is in this process, on loopback: a proxy from the
    // environment (HTTP_PROXY, ALL_PROXY) could not reach it.
    let client = Client::builder()
        .region(region)
        .endpoint_url(handle.endpoint())
        .credentials(credentials)
        .no_proxy()
        .build()
        .await
        .map_err(|e| CliError::new(chain(&e)))?;
    Ok(Context {
        client,
        _emulator: Some(handle),
    })
}

/// `cloudshell-rs emulator`: run the emulator in the foreground until Ctrl-C.
#[cfg(feature = "local")]
pub async fn run_emulator(global: &GlobalArgs, args: &super::args::EmulatorArgs) -> CliResult {
    use cloudshell_emulator::gateway::{FaultSpec, SessionOptions};
    use std::io::Write as _;
    let faults = if args.fault.is_empty() {
        FaultSpec::default()
    } else {
        args.fault
            .join(",")
            .parse::<FaultSpec>()
            .map_err(|e| CliError::with_code(format!("--fault: {e}"), 2))?
    };
    let mut options = SessionOptions::default()
        .with_mode(args.session_mode.clone())
        .with_handshake(args.handshake.clone())
        .with_faults(faults);
    if let Some(size) = args.chunk_size {
        if size == 0 {
            return Err(CliError::with_code("--chunk-size must be at least 1", 2));
        }
        options = options.with_chunk_size(size);
    }
    if let Some(version) = &args.agent_version {
        options = options.with_agent_version(version.trim());
    }
    options
        .check()
        .map_err(|e| CliError::with_code(format!("--agent-version: {e}"), 2))?;
    let (handle, own, region) =
        start_emulator(global, args.port, None, args.realistic, Some(options)).await?;
    if args.tmux {
        let mut config = handle.gateway().config();
        config.tmux = true;
        handle.gateway().set_config(config);
    }
    let endpoint = handle.endpoint();
    let dir = state_dir(global)?;
    let mut stdout = std::io::stdout().lock();
    // The emulator's own credentials are printed on purpose: they are local
    // test keys that only this emulator accepts, and the user asked for them.
    writeln!(
        stdout,
        "CloudShell emulator listening on {endpoint} (region {region})\n\
         State directory: {}\n\
         Point the AWS tooling at it with:\n\n\
         export AWS_ENDPOINT_URL_CLOUDSHELL={endpoint}\n\
         export AWS_REGION={region}\n\
         export AWS_ACCESS_KEY_ID={}\n\
         export AWS_SECRET_ACCESS_KEY={}\n\n\
         Press Ctrl-C to stop.",
        dir.display(),
        own.access_key_id,
        own.secret_access_key,
    )?;
    stdout.flush()?;
    drop(stdout);
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}
