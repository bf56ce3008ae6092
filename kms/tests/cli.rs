//! The `kms` command tree: help lists it, and no subcommand panics.

use std::process::Command;

fn kms(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(args)
        .output()
        .expect("run kms")
}

#[test]
fn help_lists_the_command_tree() {
    let out = kms(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "verify", "inspect", "measure", "image", "policy"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(cmd)),
            "`kms --help` does not list {cmd}:\n{text}"
        );
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = kms(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

#[test]
fn incomplete_commands_fail_cleanly() {
    // Without arguments every operator command fails with a one-line
    // message (usage or "not implemented"), never a panic.
    for cmd in ["verify", "inspect", "measure", "image", "policy"] {
        let out = kms(&[cmd]);
        assert!(
            !out.status.success(),
            "kms {cmd} succeeded without arguments"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "kms {cmd}: {err}");
        assert!(
            err.starts_with("error:") || err.starts_with("Usage:"),
            "kms {cmd}: {err}"
        );
    }
}
