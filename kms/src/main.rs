//! `kms`: the key management service for confidential VMs, and the operator
//! tools around it (verify and inspect evidence, compute reference
//! measurements, manage the image registry, test policies).
#![forbid(unsafe_code)]

#[cfg(feature = "demo")]
mod bench_cmd;
mod cli;
#[cfg(feature = "demo")]
mod demo_cmd;
mod evidence_cmd;
mod image_cmd;
mod policy_cmd;
mod serve_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code)
        }
    }
}
