//! The small soak inside `make test`: a few dozen parcels under every kind of injected fault
//! (the same harness `make soak` runs with thousands). Nothing lost, nothing sent twice, every
//! final status right, every poison message in the DLQ with its reason.

use parcelwatch_local::soak::{run, SoakArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_faults_nothing_is_lost_and_nothing_is_sent_twice() {
    let report = run(SoakArgs {
        parcels: 40,
        days: 6,
        // Harder than `make soak` so that a small run still meets every fault kind.
        provider_errors: 0.10,
        garbage: 0.04,
        sns_throttle: 0.15,
        dynamo_throttle: 0.03,
        dynamo_lost_answer: 0.02,
        sqs_errors: 0.03,
        kill: 0.05,
        duplicate: 0.08,
        poison: 8,
        // A quarter of the parcels polled (the query path meets the provider faults), on the
        // 10-minute ticks the polling tests use.
        polled_every: 4,
        tick_minutes: 10,
        own_moto: false,
        ..SoakArgs::default()
    })
    .await
    .expect("soak runs");
    println!("{report}");
    assert!(report.transitions >= 150, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.duplicates, 0, "{report}");
    assert!(report.wrong_final.is_empty(), "{report}");
    assert_eq!(report.unledgered, 0, "{report}");
    assert_eq!(report.poison_in_dlq, report.poison_sent, "{report}");
    assert_eq!(report.sent, report.expected_notifications, "{report}");
    // Polled parcels: never told more than the truth holds (see SoakReport::polled_sent).
    assert!(
        report.polled > 0 && report.polled_sent <= report.polled_expected,
        "{report}"
    );
    // Every kind of fault actually happened (a soak that injected nothing proves nothing).
    for kind in [
        "aws.sns.publish.throttle",
        "runner.tracker.killed",
        "runner.notifier.killed",
        "runner.notifier.duplicated",
        "runner.tracker.duplicated",
        "provider.kdniao.query.http_5xx",
        "provider.push.garbage",
        "aws.dynamodb.write.lost_response",
    ] {
        assert!(
            report.faults.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} injected\n{report}"
        );
    }
}
