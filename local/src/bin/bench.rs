//! `make bench`: every figure in one table, written to bench/results.{md,json}. See
//! `parcelwatch_local::bench`.
use parcelwatch_local::bench::{run, BenchArgs};

const USAGE: &str = "usage: bench [--parcels N] [--hours H] [--coldstart-runs N] [--journeys N] [--orders N] [--pushes K] [--deployed-parcels N] [--deployed-rechecks N] [--bin-dir DIR] [--criterion-dir DIR] [--out DIR] [--only cpu,deployed,coldstart,throughput,schedule,orders,push]";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = BenchArgs::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            eprintln!("{USAGE}");
            std::process::exit(2);
        };
        let n = value.parse::<usize>().ok();
        match (flag.as_str(), n) {
            ("--orders", Some(n)) => args.orders = n,
            ("--pushes", Some(n)) => args.pushes = n,
            ("--parcels", Some(n)) => args.parcels = n,
            ("--hours", Some(n)) => args.hours = n as i64,
            ("--coldstart-runs", Some(n)) => args.coldstart_runs = n,
            ("--journeys", Some(n)) => args.journeys = n,
            ("--deployed-parcels", Some(n)) => args.deployed_parcels = n,
            ("--deployed-rechecks", Some(n)) => args.deployed_rechecks = n,
            ("--bin-dir", _) => args.bin_dir = value.into(),
            ("--criterion-dir", _) => args.criterion_dir = value.into(),
            ("--out", _) => args.out_dir = value.into(),
            ("--only", _) => args.only = value.split(',').map(str::to_owned).collect(),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    if let Err(e) = run(args).await {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}
