//! The `ghrunner-vm` binary: parse the command line, set up logging, run, map the outcome to an
//! exit code. All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;
use ghrunner_vm::cli::Cli;
use ghrunner_vm::exit::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    ghrunner_vm::cli::init_tracing(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitStatus::Error.into();
        }
    };
    match runtime.block_on(ghrunner_vm::cli::run(cli)) {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitStatus::Error.into()
        }
    }
}
