use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    parcelwatch::telemetry::init();
    let tracker = tracker::from_env().await?;
    run(service_fn(|event| tracker::lambda(&tracker, event))).await
}
