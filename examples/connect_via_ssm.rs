//! The earlier `cloudshell-rs`'s `connect_via_ssm` example, under its name and
//! with its flags:
//!
//! ```text
//! cargo run --example connect_via_ssm -- --profile myprofile --region us-east-1
//! cargo run --example connect_via_ssm -- --profile myprofile --inject-credentials true
//! ```
//!
//! That example spawned `session-manager-plugin`; this one is
//! [`connect_native`](connect_native.rs): the Session Manager data channel is
//! spoken natively and no plugin needs to be installed. It also takes
//! `--endpoint-url` (an emulator) and `--env ENV_ID`.

#[path = "connect_native.rs"]
mod connect_native;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    connect_native::main()
}
