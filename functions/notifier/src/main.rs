use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    parcelwatch::telemetry::init();
    let notifier = notifier::from_env().await?;
    run(service_fn(|event| notifier::lambda(&notifier, event))).await
}
