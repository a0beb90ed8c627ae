//! `make soak`: thousands of parcels through the whole product under injected faults; prints
//! the verdict and exits non-zero unless nothing was lost and nothing sent twice.
use parcelwatch_local::soak::{run, SoakArgs};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // Logs (JSON, stderr) default to warnings: the faults make plenty of them.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    parcelwatch::telemetry::init();
    let args = match SoakArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: soak [--parcels N] [--days D] [--seed S] [--tick-minutes M] [--provider-errors F] [--garbage F] [--sns-throttle F] [--dynamo-throttle F] [--dynamo-lost-answer F] [--sqs-errors F] [--kill F] [--duplicate F] [--poison N] [--polled-every N]");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(report) => {
            println!("{report}");
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("soak failed: {e}");
            ExitCode::FAILURE
        }
    }
}
