//! `cloudshell-rs cp [-r] [-p] [-q] [--via auto|in-band|s3] SRC... DST`: copy files
//! and trees between this machine and an environment (see
//! `cloudshell_rs::transfer`).

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use cloudshell_rs::exec::Interrupt;
use cloudshell_rs::transfer::{
    self, Location, Progress, TransferError, TransferOptions, TransferReport, Transport,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::context::Context;
use super::output::{printable, status_line};
use super::{CliError, CliResult, GlobalArgs, OutputFormat, chain};

/// Arguments of `cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Copy directories (recursively, as trees).
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// Keep access and modification times (modes are always kept).
    #[arg(short = 'p', long)]
    pub preserve: bool,

    /// No progress bar.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// How the data travels: in-band through the session (works without
    /// internet access in the environment), through S3 presigned URLs as the
    /// AWS Console does, or `auto`: a file or tree of 1 MiB or more to or from
    /// the public environment through S3 (in-band if S3 fails), the rest in-band.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    pub via: Via,

    /// SRC... DST: sources, then the destination. `ENV:PATH` is a path in
    /// environment ENV (an id or a VPC environment's name), `:PATH` a path in
    /// the default environment; anything else is local. A remote source may
    /// be a pattern (`:'logs/*.txt'`, quoted so that the local shell leaves
    /// it alone): the environment's shell expands it.
    #[arg(value_name = "PATHS", required = true, num_args = 2..)]
    pub paths: Vec<OsString>,
}

/// `--via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// Through the data channel.
    InBand,
    /// Through S3 presigned URLs.
    S3,
    /// S3 for a file or tree of 1 MiB or more to or from the public environment, else in-band.
    Auto,
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::with_code(msg, 2)
}

fn parse(arg: &OsString) -> CliResult<Location> {
    match arg.to_str() {
        Some(s) => transfer::parse_location(s).map_err(|e| usage(chain(&e))),
        // Not UTF-8: can only be a local path.
        None => Ok(Location::Local(PathBuf::from(arg))),
    }
}

/// `cp`.
pub async fn run(ctx: &Context, global: &GlobalArgs, args: CpArgs) -> CliResult {
    let mut locs = args
        .paths
        .iter()
        .map(parse)
        .collect::<CliResult<Vec<_>>>()?;
    let Some(dst) = locs.pop() else {
        return Err(usage("cp needs a source and a destination"));
    };
    let upload = dst.is_remote();
    if locs.iter().any(|l| l.is_remote() == upload) {
        return Err(usage(if upload {
            "all sources must be local when the destination is remote (ENV:PATH)"
        } else {
            "all sources must be remote (ENV:PATH or :PATH) when the destination is local; \
             write ./NAME for a local path containing ':'"
        }));
    }
    // The one environment involved.
    let env_spec = match (&dst, locs.first()) {
        (Location::Remote { environment, .. }, _) => environment.clone(),
        (_, Some(Location::Remote { environment, .. })) => environment.clone(),
        _ => None,
    };
    for l in &locs {
        if let Location::Remote { environment, .. } = l
            && *environment != env_spec
        {
            return Err(usage("all remote sources must be in the same environment"));
        }
    }
    // The data channel's connection is made while the API calls are.
    let session_options = super::connect::session_options(global, &ctx.client);
    cloudshell_rs::session::preconnect(&session_options);
    // By id or name as in every command; like the Console (and `exec`), the
    // default environment is created on first use.
    let env = ctx.env_or_create_default(env_spec).await?;

    let show = !args.quiet && std::io::stderr().is_terminal();
    let interrupt = Interrupt::new();
    let base = TransferOptions::new()
        .recursive(args.recursive)
        .preserve_times(args.preserve)
        .transport(match args.via {
            Via::InBand => Transport::InBand,
            Via::S3 => Transport::S3,
            Via::Auto => Transport::Auto,
        })
        .interrupt(interrupt.clone())
        .session_options(session_options);

    // One progress bar and, with --output json, one line per file. Several
    // sources go into one directory through one session (in-band files).
    let mut labels: Vec<String> = locs
        .iter()
        .map(|l| match l {
            Location::Local(p) => p.display().to_string(),
            Location::Remote { path, .. } => path.clone(),
        })
        .collect();
    if !upload && labels.iter().any(|l| transfer::is_pattern(l)) {
        labels = expand_patterns(ctx, &env, labels, &base, &interrupt).await?;
    }
    let base = base.into_directory(labels.len() > 1);
    let locals: Vec<PathBuf> = locs
        .iter()
        .filter_map(|l| match l {
            Location::Local(p) => Some(p.clone()),
            Location::Remote { .. } => None,
        })
        .collect();
    let bar = show.then(|| match &labels[..] {
        [one] => new_bar(one),
        many => new_bar(&format!("{} files", many.len())),
    });
    let opts = with_bar(base, bar.as_ref());
    let client = &ctx.client;
    let copy: Pin<Box<dyn Future<Output = Results>>> = match (&dst, &locals[..], &labels[..]) {
        (Location::Remote { path: remote, .. }, [local], _) => {
            Box::pin(async { vec![transfer::upload(client, &env, local, remote, &opts).await] })
        }
        (Location::Remote { path: remote, .. }, _, _) => {
            Box::pin(transfer::upload_files(client, &env, &locals, remote, &opts))
        }
        (Location::Local(local), _, [remote]) => {
            Box::pin(async { vec![transfer::download(client, &env, remote, local, &opts).await] })
        }
        (Location::Local(local), _, _) => Box::pin(transfer::download_files(
            client, &env, &labels, local, &opts,
        )),
    };
    copy_many(&labels, copy, bar, global, &interrupt).await
}

/// The remote `sources` with each pattern (`ENV:'logs/*.txt'`) replaced by
/// the paths it matches in the environment, as scp lets the remote side
/// expand its patterns; one remote command for all the patterns.
async fn expand_patterns(
    ctx: &Context,
    env: &str,
    sources: Vec<String>,
    options: &TransferOptions,
    interrupt: &Interrupt,
) -> CliResult<Vec<String>> {
    let patterns: Vec<&String> = sources.iter().filter(|s| transfer::is_pattern(s)).collect();
    let found = with_ctrl_c(
        interrupt,
        transfer::glob(&ctx.client, env, &patterns, options),
    )
    .await
    .unwrap_or(Err(TransferError::Interrupted))
    .map_err(failure)?;
    let mut found = found.into_iter();
    Ok(sources
        .into_iter()
        .flat_map(|s| {
            if transfer::is_pattern(&s) {
                found.next().unwrap_or_default()
            } else {
                vec![s]
            }
        })
        .collect())
}

/// How the CLI reports a failed copy.
fn failure(e: TransferError) -> CliError {
    if matches!(e, TransferError::Interrupted) {
        CliError::with_code("interrupted", 130)
    } else {
        CliError::new(chain(&e))
    }
}

/// Waits for `copy` (one result per source attempted: a single copy, or
/// [`transfer::upload_files`] / [`transfer::download_files`]), then finishes
/// the bar or reports the first failure; one JSON line per file with
/// `--output json`.
async fn copy_many(
    sources: &[String],
    copy: impl Future<Output = Results>,
    bar: Option<ProgressBar>,
    global: &GlobalArgs,
    interrupt: &Interrupt,
) -> CliResult {
    let Some(results) = with_ctrl_c(interrupt, copy).await else {
        stop(bar);
        return Err(CliError::with_code("interrupted", 130));
    };
    let mut total = 0;
    let mut done = 0;
    for (source, result) in sources.iter().zip(results) {
        match result {
            Ok(report) => {
                total += report.bytes;
                done += 1;
                if let Some(why) = &report.s3_fallback {
                    let line = format!(
                        "{}: S3 could not be used ({}); copied in-band",
                        printable(source),
                        printable(why)
                    );
                    match &bar {
                        Some(b) => b.suspend(|| status_line(&line)),
                        None => status_line(&line),
                    }
                }
                if global.output == OutputFormat::Json {
                    // The bar (on stderr) steps aside while the line is
                    // written, so that a terminal shows no stale bar.
                    match &bar {
                        Some(b) => b.suspend(|| print_json(source, &report))?,
                        None => print_json(source, &report)?,
                    }
                }
            }
            Err(e) => {
                stop(bar);
                return Err(failure(e));
            }
        }
    }
    if done < sources.len() {
        // Not expected: every source has a result until the first failure.
        return Err(CliError::new("the copy ended before every file was copied"));
    }
    if let Some(bar) = bar {
        finish(&bar, total);
    }
    Ok(())
}

/// `options` reporting progress to `bar`, if any.
fn with_bar(options: TransferOptions, bar: Option<&ProgressBar>) -> TransferOptions {
    match bar {
        Some(bar) => {
            let b = bar.clone();
            options.progress(Arc::new(move |p: Progress| update(&b, p)))
        }
        None => options,
    }
}

fn print_json(source: &str, r: &TransferReport) -> CliResult {
    let v = serde_json::json!({
        "Source": source,
        "Destination": r.destination,
        "Bytes": r.bytes,
        "Files": r.files,
        "Tree": r.tree,
        "Sha256": r.sha256,
        "Transport": r.transport.to_string(),
        "ChannelBytesSent": r.channel_bytes_sent,
        "ChannelBytesReceived": r.channel_bytes_received,
        "HttpBytes": r.http_bytes,
        "SessionIds": r.session_ids,
        "S3Fallback": r.s3_fallback,
    });
    super::output::write_stdout(&format!("{v}\n"))
}

/// One result per source attempted, in order.
type Results = Vec<Result<TransferReport, TransferError>>;

/// Runs `fut`; the first Ctrl-C interrupts the remote command (its trap
/// cleans up and the transfer ends with an error), a second one gives up at
/// once (`None`).
async fn with_ctrl_c<T>(interrupt: &Interrupt, fut: impl Future<Output = T>) -> Option<T> {
    tokio::pin!(fut);
    let mut presses = 0;
    loop {
        tokio::select! {
            r = &mut fut => return Some(r),
            c = tokio::signal::ctrl_c() => {
                if c.is_err() {
                    // No signal handling available: just wait for the transfer.
                    return Some(fut.await);
                }
                presses += 1;
                if presses >= 2 {
                    return None;
                }
                interrupt.interrupt();
            }
        }
    }
}

fn new_bar(label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(spinner_style());
    bar.set_message(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {wide_msg} {bytes} {binary_bytes_per_sec} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{wide_msg} [{bar:25}] {percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn update(bar: &ProgressBar, p: Progress) {
    if let Some(t) = p.total
        && bar.length() != Some(t)
    {
        bar.set_length(t);
        bar.set_style(bar_style());
    }
    bar.set_position(p.bytes);
}

/// After a failure: the bar stays where it stopped, to show how far the
/// copy got, unless nothing moved (then it would only say "0 B").
fn stop(bar: Option<ProgressBar>) {
    match bar {
        Some(bar) if bar.position() > 0 => bar.abandon(),
        Some(bar) => bar.finish_and_clear(),
        None => {}
    }
}

fn finish(bar: &ProgressBar, bytes: u64) {
    bar.set_length(bytes);
    bar.set_position(bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{wide_msg} {bytes} {binary_bytes_per_sec} {elapsed} verified",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.finish();
}
