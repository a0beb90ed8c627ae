//! Standalone carrier sandbox: `cargo run -p parcelwatch-local --bin sandbox -- --port 9100
//! --seed 7 --speed 600`. Simulated time starts now and runs `--speed` times faster; register
//! waybills with `POST /sandbox/waybills` and point a Kdniao client at the printed endpoint.

use parcelwatch_local::clock::AcceleratedClock;
use parcelwatch_local::sandbox::{Sandbox, SandboxConfig};
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str =
    "usage: sandbox [--port N] [--seed N] [--speed X] [--ebusiness-id ID] [--app-key KEY]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(SandboxConfig, f64), String> {
    let mut cfg = SandboxConfig::default();
    let mut speed: f64 = 1.0;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => cfg.port = Some(value()?.parse().map_err(|e| format!("--port: {e}"))?),
            "--seed" => cfg.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--speed" => {
                speed = value()?.parse().map_err(|e| format!("--speed: {e}"))?;
                if !(speed.is_finite() && speed > 0.0) {
                    return Err("--speed must be a positive number".into());
                }
            }
            "--ebusiness-id" => cfg.ebusiness_id = value()?,
            "--app-key" => cfg.app_key = value()?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((cfg, speed))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (cfg, speed) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (seed, ebusiness_id) = (cfg.seed, cfg.ebusiness_id.clone());
    let clock = Arc::new(AcceleratedClock::new(chrono::Utc::now(), speed));
    let sandbox = match Sandbox::start(cfg, clock).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "sandbox: {e}: {}",
                std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
            );
            return ExitCode::FAILURE;
        }
    };
    println!("Kdniao endpoint: {}", sandbox.kdniao_endpoint());
    println!(
        "admin: {}/sandbox/waybills  seed {seed}  speed {speed}x  EBusinessID {ebusiness_id}",
        sandbox.base_url()
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("sandbox: cannot wait for Ctrl-C: {e}");
    }
    sandbox.shutdown().await;
    ExitCode::SUCCESS
}
