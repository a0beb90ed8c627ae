use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    parcelwatch::telemetry::init();
    let deps = scheduler::Deps::from_env().await?;
    run(service_fn(|event| scheduler::lambda(&deps, event))).await
}
