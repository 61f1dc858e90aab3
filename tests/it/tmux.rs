//! `exec` and `cp` through tmux, as CloudShell runs its shells: what comes
//! back is tmux's rendering of the terminal, which drops output and redraws
//! the screen when its client falls behind.

use crate::exec_support::start_emulator_in_tmux;
use cloudshell_rs::exec::{self, ExecOptions};
use cloudshell_rs::transfer::{self, TransferOptions};

fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    v
}

#[tokio::test]
async fn tmux_exec_output_arrives_intact_with_its_status() {
    let emu = start_emulator_in_tmux().await;
    let home = emu.emulator.gateway().home_dir(&emu.env);
    std::fs::create_dir_all(&home).unwrap();
    // Several screens' worth of each stream: far more than tmux passes on
    // to a client that falls behind.
    let out = random_bytes(6 << 20);
    let err = random_bytes(1 << 20);
    std::fs::write(home.join("out.bin"), &out).unwrap();
    std::fs::write(home.join("err.bin"), &err).unwrap();
    let run = exec::run(
        &emu.client,
        &emu.env,
        &["bash", "-c", "cat out.bin; cat err.bin >&2; exit 5"],
        ExecOptions::new(),
    )
    .await
    .unwrap();
    assert!(
        run.stdout == out,
        "stdout differs ({} bytes)",
        run.stdout.len()
    );
    assert!(
        run.stderr == err,
        "stderr differs ({} bytes)",
        run.stderr.len()
    );
    assert_eq!(run.status.code(), 5);
}

#[tokio::test]
async fn tmux_exec_with_stdin_then_output_arrives_intact() {
    let emu = start_emulator_in_tmux().await;
    let home = emu.emulator.gateway().home_dir(&emu.env);
    std::fs::create_dir_all(&home).unwrap();
    let input = random_bytes(300 << 10);
    let out = random_bytes(4 << 20);
    std::fs::write(home.join("out.bin"), &out).unwrap();
    let run = exec::run(
        &emu.client,
        &emu.env,
        &["bash", "-c", "cat; cat out.bin"],
        ExecOptions::new().stdin(input.clone()),
    )
    .await
    .unwrap();
    let mut expected = input;
    expected.extend_from_slice(&out);
    assert!(
        run.stdout == expected,
        "stdout differs ({} bytes)",
        run.stdout.len()
    );
    assert_eq!(run.status.code(), 0);
}

#[tokio::test]
async fn tmux_cp_both_ways_is_intact() {
    let emu = start_emulator_in_tmux().await;
    let local = tempfile::tempdir().unwrap();
    let data = random_bytes(5 << 20);
    let src = local.path().join("up.bin");
    std::fs::write(&src, &data).unwrap();
    let opts = TransferOptions::new();
    transfer::upload(&emu.client, &emu.env, &src, "up.bin", &opts)
        .await
        .unwrap();
    let home = emu.emulator.gateway().home_dir(&emu.env);
    assert!(std::fs::read(home.join("up.bin")).unwrap() == data);
    let back = local.path().join("back.bin");
    transfer::download(&emu.client, &emu.env, "up.bin", &back, &opts)
        .await
        .unwrap();
    assert!(std::fs::read(&back).unwrap() == data);
}
