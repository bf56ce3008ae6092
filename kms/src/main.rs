//! `kms`: the key management service for confidential VMs, and the operator
//! tools around it (verify and inspect evidence, compute reference
//! measurements, manage the image registry, test policies).

mod cli;

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
