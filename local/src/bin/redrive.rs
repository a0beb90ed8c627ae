//! `redrive tracking|notify [--apply]`: replay the tracking DLQ or the notifier's on-failure
//! records safely. See `parcelwatch_local::redrive`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    parcelwatch::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = std::env::vars().collect();
    match parcelwatch_local::redrive::cli(&args, &env).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
