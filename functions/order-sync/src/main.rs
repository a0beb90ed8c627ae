use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    parcelwatch::telemetry::init();
    let deps = order_sync::Deps::from_env().await?;
    run(service_fn(|event| order_sync::lambda(&deps, event))).await
}
