//! The `cloudshell-rs` command-line tool. All logic lives in `cli/`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
