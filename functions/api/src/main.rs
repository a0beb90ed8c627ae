use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    parcelwatch::telemetry::init();
    let api = api::from_env().await?;
    run(service_fn(|event| api::lambda(&api, event))).await
}
