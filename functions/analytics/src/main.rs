use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    parcelwatch::telemetry::init();
    let deps = analytics::from_env().await?;
    run(service_fn(|event| analytics::lambda(&deps, event))).await
}
