//! `make bench`: order-sync throughput and push-to-SMS latency on the local stack.
use parcelwatch_local::bench::{run, BenchArgs};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = BenchArgs::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<usize>().ok());
        match (flag.as_str(), value) {
            ("--orders", Some(n)) => args.orders = n,
            ("--pushes", Some(n)) => args.pushes = n,
            _ => {
                eprintln!("usage: bench [--orders N] [--pushes K]");
                std::process::exit(2);
            }
        }
    }
    if let Err(e) = run(args).await {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}
