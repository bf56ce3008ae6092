//! The command tree. Each subcommand's work lives in its own module as the
//! project grows; commands that are not built yet say so in one line and
//! exit non-zero.

use std::fmt;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Key management service for confidential VMs (Intel TDX, AMD SEV-SNP):
/// one attestation path, one policy and one key derivation for every platform.
#[derive(Debug, Parser)]
#[command(name = "kms", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC key service.
    Serve,
    /// Verify evidence offline and print the verified identity as JSON.
    Verify,
    /// Parse evidence without checking signatures; replay its event log.
    Inspect,
    /// Compute reference measurements (launch digests) of an OS image.
    Measure,
    /// Manage the image registry (measurement -> os_image_hash).
    Image,
    /// Check and explain policies.
    Policy,
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Serve => "serve",
            Command::Verify => "verify",
            Command::Inspect => "inspect",
            Command::Measure => "measure",
            Command::Image => "image",
            Command::Policy => "policy",
        }
    }
}

/// A command-level failure, printed as `error: <message>`.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let cmd = cli.command;
    Err(CliError(format!(
        "`kms {}` is not implemented yet",
        cmd.name()
    )))
}
