//! Environment subcommands: describe, create, status, start, stop, delete.

use std::time::Duration;

use cloudshell_rs::types::{Environment, VpcConfig};
use serde_json::{Value, json};

use super::args::{CreateArgs, StartArgs};
use super::context::Context;
use super::output::{Printer, Record, status_line};
use super::{CliError, CliResult};

fn vpc_json(vpc: &Option<VpcConfig>) -> Option<Value> {
    vpc.as_ref().map(|v| {
        json!({
            "VpcId": v.vpc_id,
            "SubnetIds": v.subnet_ids,
            "SecurityGroupIds": v.security_group_ids,
        })
    })
}

fn environment_json(e: &Environment) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("EnvironmentId".into(), json!(e.environment_id));
    if let Some(n) = &e.environment_name {
        m.insert("EnvironmentName".into(), json!(n));
    }
    if let Some(s) = &e.status {
        m.insert("Status".into(), json!(s.as_str()));
    }
    if let Some(r) = &e.status_reason {
        m.insert("StatusReason".into(), json!(r));
    }
    if let Some(v) = vpc_json(&e.vpc_config) {
        m.insert("VpcConfig".into(), v);
    }
    Value::Object(m)
}

/// `describe`
pub async fn describe(ctx: &Context, out: &Printer) -> CliResult {
    let resp = ctx.client.describe_environments().send().await?;
    let records: Vec<Record> = resp
        .environments
        .iter()
        .map(|e| {
            vec![
                ("EnvironmentId", e.environment_id.clone()),
                (
                    "Name",
                    e.environment_name.clone().unwrap_or_else(|| {
                        if e.is_default() {
                            "(default)".into()
                        } else {
                            "-".into()
                        }
                    }),
                ),
                (
                    "Status",
                    e.status
                        .as_ref()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
                (
                    "Vpc",
                    e.vpc_config
                        .as_ref()
                        .map(|v| v.vpc_id.clone())
                        .unwrap_or_else(|| "-".into()),
                ),
            ]
        })
        .collect();
    let envs: Vec<Value> = resp.environments.iter().map(environment_json).collect();
    out.records(&records, json!({ "Environments": envs }))
}

/// `create`
pub async fn create(ctx: &Context, out: &Printer, args: CreateArgs) -> CliResult {
    let mut req = ctx.client.create_environment();
    if let Some(name) = &args.name {
        req = req.environment_name(name.clone());
    }
    if let Some(vpc_id) = args.vpc_id {
        req = req.vpc_config(VpcConfig::new(
            vpc_id,
            args.subnet_ids,
            args.security_group_ids,
        ));
    }
    let resp = req.send().await?;
    let messages: Vec<Value> = resp
        .start_screen_messages
        .iter()
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
        .collect();
    let record: Record = vec![
        ("EnvironmentId", resp.environment_id.clone()),
        ("Status", resp.status.as_str().to_string()),
    ];
    out.record(
        &record,
        json!({
            "EnvironmentId": resp.environment_id,
            "Status": resp.status.as_str(),
            "StartScreenMessages": messages,
        }),
    )
}

/// `status`
pub async fn status(ctx: &Context, out: &Printer, env: Option<String>) -> CliResult {
    let env = ctx.env_or_default(env).await?;
    let resp = ctx
        .client
        .get_environment_status()
        .environment_id(env.clone())
        .send()
        .await?;
    let id = resp.environment_id.clone().unwrap_or(env);
    let mut record: Record = vec![
        ("EnvironmentId", id.clone()),
        ("Status", resp.status.as_str().to_string()),
    ];
    let mut j = serde_json::Map::new();
    j.insert("EnvironmentId".into(), json!(id));
    j.insert("Status".into(), json!(resp.status.as_str()));
    if let Some(n) = &resp.environment_name {
        record.push(("EnvironmentName", n.clone()));
        j.insert("EnvironmentName".into(), json!(n));
    }
    if let Some(r) = &resp.status_reason {
        record.push(("StatusReason", r.clone()));
        j.insert("StatusReason".into(), json!(r));
    }
    if let Some(v) = vpc_json(&resp.vpc_config) {
        record.push((
            "VpcId",
            resp.vpc_config
                .as_ref()
                .map(|v| v.vpc_id.clone())
                .unwrap_or_default(),
        ));
        j.insert("VpcConfig".into(), v);
    }
    out.record(&record, Value::Object(j))
}

/// `start`
pub async fn start(ctx: &Context, out: &Printer, args: StartArgs) -> CliResult {
    let env = ctx.env_or_create_default(args.env).await?;
    if args.wait {
        let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let status = ctx
            .client
            .wait_until_running(&env, Duration::from_secs(args.timeout_secs), |s| {
                if interactive || out.format() == super::OutputFormat::Table {
                    status_line(&format!("{env}: {s}"));
                }
            })
            .await?;
        return out.record(
            &vec![
                ("EnvironmentId", env.clone()),
                ("Status", status.to_string()),
            ],
            json!({ "EnvironmentId": env, "Status": status.as_str() }),
        );
    }
    let resp = ctx
        .client
        .start_environment()
        .environment_id(env.clone())
        .send()
        .await
        .map_err(|e| {
            if e.is_invalid_status() {
                CliError::new(format!(
                    "{}\nhint: only a SUSPENDED environment can be started; `cloudshell-rs start --wait` waits for it instead",
                    super::chain(&e)
                ))
            } else {
                e.into()
            }
        })?;
    let id = resp.environment_id.unwrap_or(env);
    out.record(
        &vec![("EnvironmentId", id.clone()), ("Status", "RESUMING".into())],
        json!({ "EnvironmentId": id }),
    )
}

/// `stop`
pub async fn stop(ctx: &Context, out: &Printer, env: Option<String>) -> CliResult {
    let env = ctx.env_or_default(env).await?;
    let resp = ctx
        .client
        .stop_environment()
        .environment_id(env.clone())
        .send()
        .await?;
    let id = resp.environment_id.unwrap_or(env);
    out.record(
        &vec![
            ("EnvironmentId", id.clone()),
            ("Status", "SUSPENDING".into()),
        ],
        json!({ "EnvironmentId": id }),
    )
}

/// `delete`
pub async fn delete(ctx: &Context, out: &Printer, env: String) -> CliResult {
    let env = ctx.resolve_env(env).await?;
    ctx.client
        .delete_environment()
        .environment_id(env.clone())
        .send()
        .await?;
    out.record(
        &vec![
            ("EnvironmentId", env.clone()),
            ("Status", "DELETING".into()),
        ],
        json!({ "EnvironmentId": env }),
    )
}
