//! `make demo`: N parcels through the whole product on the local stack, then the table.
use parcelwatch_local::demo::{run, DemoArgs};

#[tokio::main]
async fn main() {
    let args = match DemoArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: demo [--shipments N] [--days D] [--seed S] [--tick-minutes M] [--routes SPEC] [--push] [--kdniao-fails-after-hours H]");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}
