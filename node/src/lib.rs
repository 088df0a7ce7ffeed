//! # hearth-node
//!
//! The only crate that does I/O: the `hearth` binary's commands, the passphrase-sealed
//! keystore on disk, the sled backend of [`hearth_core::store::Store`], and the daemon
//! (`hearth run`: libp2p sync driver in [`live`], local HTTP API in [`api`], command
//! forwarding in [`client`]). The binary
//! (`src/main.rs`) is a thin wrapper around [`main_with`].
//!
//! Layout of a node's home folder: see [`home`]. Exit codes: see [`fail`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The command line, above the commands, above the application layer, above the engine.
pub mod cli;
pub mod cmd;
pub mod web;

pub mod app;
pub mod break_glass;

pub mod api;
pub mod client;
pub mod daemon;
pub mod fail;
#[cfg(feature = "test-utils")]
pub mod fuzzing;
pub mod home;
pub mod link;
pub mod live;
pub mod logs;
pub mod metrics;
pub mod org_log;
pub mod os;
pub mod recover;
pub mod runtime;
pub mod sled_store;
pub mod status;

use clap::Parser;
use std::process::ExitCode;

/// Parses the command line, runs the command, prints a one-line reason on failure and returns
/// the exit code.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    // Whatever the user's umask, nothing this process creates is readable by others.
    home::private_umask();
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let default_filter = if matches!(cli.command, cli::Command::Run(_)) {
        logs::DAEMON_FILTER
    } else {
        logs::COMMAND_FILTER
    };
    let log_format = match &cli.command {
        cli::Command::Run(run) => run.log_format,
        _ => logs::LogFormat::from_env(),
    };
    logs::init(log_format, default_filter);
    // While the daemon runs it holds the store: send the command to it.
    if let Some(code) = cli::forward(&cli, &args) {
        return code;
    }
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            logs::print_failure(log_format, &f.message, f.code);
            ExitCode::from(f.code)
        }
    }
}
