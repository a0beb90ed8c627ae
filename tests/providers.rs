//! The whole pipeline with each provider selected: Kuaidi100 alone (its one-query-per-30-minutes
//! rule kept by the schedule), Taobao TOP for a Taobao shop's parcels, and Kdniao failing over to
//! Kuaidi100 in the middle of the run. Each run uses moto, the sandbox over real HTTP with real
//! signatures, and the functions with Lambda's event-source semantics.

use chrono::Duration;
use parcelwatch::domain::order::Platform;
use parcelwatch::domain::{Shipment, ShipmentId, Status};
use parcelwatch_local::pipeline::{expected_sms, Parcel, Pipeline, PipelineOptions};
use std::collections::HashMap;

fn options(seed: u64, routes: &str) -> PipelineOptions {
    let mut o = PipelineOptions {
        seed,
        ..PipelineOptions::default()
    };
    o.env.push(("PROVIDER_ROUTES".into(), routes.into()));
    o
}

/// Run until every shipment settled (or `days`), then every shipment by id.
async fn run_to_the_end(p: &mut Pipeline, days: i64) -> HashMap<ShipmentId, Shipment> {
    p.run_until_settled(days).await.expect("run");
    p.shipments()
        .await
        .expect("scan")
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect()
}

/// Nobody is told more than the truth holds: per phone, no more SMS than the notifiable
/// transitions of the simulator's journeys (a provider with a coarser vocabulary, or one that is
/// asked less often, may tell less, never more), and every final status told exactly once. Only
/// this test's phones count (the tests of this file share one moto).
async fn assert_never_told_more_than_the_truth(
    p: &Pipeline,
    shipments: &HashMap<ShipmentId, Shipment>,
) {
    let now = p.now();
    let mut expected: HashMap<String, usize> = HashMap::new();
    for s in shipments.values() {
        let Some(sealed) = &s.recipient.phone else {
            continue;
        };
        let phone = p.notifier.vault.open(sealed).await.expect("opens");
        let journey = p
            .sandbox
            .journey(s.id.carrier.as_str(), s.id.number.as_str())
            .expect("journey");
        let parcel = Parcel {
            id: s.id.clone(),
            phone: phone.clone(),
            journey,
        };
        *expected.entry(phone.expose().to_string()).or_default() += expected_sms(&parcel, now);
    }
    let sms: Vec<_> = p
        .sent_sms()
        .await
        .expect("sms")
        .into_iter()
        .filter(|m| expected.contains_key(&m.phone_number))
        .collect();
    assert!(!sms.is_empty());
    let mut got: HashMap<&str, usize> = HashMap::new();
    for m in &sms {
        *got.entry(m.phone_number.as_str()).or_default() += 1;
    }
    for (phone, n) in &got {
        assert!(
            *n <= expected[*phone],
            "{phone}: {n} SMS, the truth has {} notifiable transitions",
            expected[*phone]
        );
    }
    let ledger = p.sms_ledger().await.expect("ledger");
    let told: Vec<Status> = sms
        .iter()
        .map(|m| {
            *ledger
                .get(&m.message_id)
                .expect("every SMS has a ledger entry")
        })
        .collect();
    let finals_told = told
        .iter()
        .filter(|s| matches!(s, Status::Delivered | Status::Returned))
        .count();
    let finals = shipments
        .values()
        .filter(|s| matches!(s.status, Status::Delivered | Status::Returned))
        .filter(|s| s.recipient.phone.is_some())
        .count();
    assert_eq!(finals_told, finals, "every final status told exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuaidi100_alone_tracks_every_parcel_and_is_never_asked_twice_in_thirty_minutes() {
    let mut p = Pipeline::start(options(51, "default=kuaidi100"))
        .await
        .expect("local stack starts");
    let parcels = p
        .register_demo_parcels(12, Duration::hours(6))
        .await
        .expect("register");
    let shipments = run_to_the_end(&mut p, 9).await;
    let now = p.now();
    for pc in &parcels {
        let ours = &shipments[&pc.id];
        let truth = pc.journey.truth_statuses(now).last().map(|(_, s)| *s);
        assert_eq!(
            Some(ours.status),
            truth,
            "{} ({:?})",
            pc.id,
            pc.journey.kind
        );
        assert_eq!(
            ours.last_provider.as_deref(),
            Some("kuaidi100"),
            "{}",
            pc.id
        );
        let lines = pc.journey.visible_at(now).traces.len();
        assert_eq!(ours.event_count as usize, lines, "{}", pc.id);
        assert!(
            ours.sub_status
                .as_ref()
                .is_some_and(|s| s.provider == "kuaidi100"),
            "{}: {:?}",
            pc.id,
            ours.sub_status
        );
    }
    let k100 = p.sandbox.kuaidi100_stats();
    assert!(k100.answered > 0);
    assert_eq!(
        k100.too_frequent, 0,
        "the schedule kept the 30-minute rule: {k100:?}"
    );
    assert_eq!(k100.bad_sign, 0);
    let kdniao = p.sandbox.stats();
    assert_eq!(
        kdniao.requests_8001 + kdniao.requests_1002,
        0,
        "Kdniao not asked"
    );
    assert_never_told_more_than_the_truth(&p, &shipments).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taobao_shop_is_tracked_through_top_and_split_parcels_fall_back_to_kdniao() {
    let shop = "pw-tb-shop";
    let mut o = options(53, &format!("shop:{shop}=taobao,kdniao"));
    o.shops = vec![format!("top:{shop}")];
    let mut p = Pipeline::start(o).await.expect("local stack starts");
    let created = p.now() - Duration::hours(3);
    let orders = p.sandbox.generate_orders(shop, Platform::Top, 8, created);
    let shipments = run_to_the_end(&mut p, 9).await;
    let now = p.now();
    assert!(!shipments.is_empty());
    let (trace_calls, trace_rejected) = p.sandbox.top_trace_requests();
    assert!(trace_calls > 0);
    assert_eq!(
        trace_rejected, 0,
        "every TOP trace call signed and in session"
    );
    for o in &orders {
        // TOP's trace search describes a trade's first shipped parcel; a second parcel of a split
        // trade is refused by the Taobao client ("ships under …") and Kdniao takes it.
        let Some(first) = o.orders.iter().find_map(|s| s.shipment_id().ok()) else {
            continue;
        };
        for sub in &o.orders {
            let Ok(id) = sub.shipment_id() else { continue };
            let ours = &shipments[&id];
            let journey = p
                .sandbox
                .journey(id.carrier.as_str(), id.number.as_str())
                .expect("journey");
            let truth = journey.truth_statuses(now).last().map(|(_, s)| *s);
            if matches!(truth, Some(Status::Delivered | Status::Returned)) {
                assert_eq!(Some(ours.status), truth, "{id} ({:?})", journey.kind);
            }
            let expected = if id == first { "taobao" } else { "kdniao" };
            assert_eq!(ours.last_provider.as_deref(), Some(expected), "{id}");
        }
    }
    assert_never_told_more_than_the_truth(&p, &shipments).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_kdniao_fails_mid_run_kuaidi100_takes_over_and_nobody_is_told_twice() {
    let mut p = Pipeline::start(options(57, "default=kdniao,kuaidi100"))
        .await
        .expect("local stack starts");
    let parcels = p
        .register_demo_parcels(12, Duration::hours(6))
        .await
        .expect("register");
    for _ in 0..18 {
        p.tick().await.expect("tick");
    }
    let before_switch = p.sandbox.stats().requests_8001;
    assert!(before_switch > 0, "Kdniao served the first three hours");
    assert_eq!(p.sandbox.kuaidi100_stats().requests, 0);
    let failovers_before = parcelwatch::metrics::count_of(
        "ProviderFailover",
        &[("From", "kdniao"), ("To", "kuaidi100")],
    );
    // Kdniao's daily quota runs out: it answers every query with its quota error.
    p.sandbox.set_kdniao_quota_exhausted(true);
    let shipments = run_to_the_end(&mut p, 9).await;
    let now = p.now();
    for pc in &parcels {
        let ours = &shipments[&pc.id];
        let truth = pc.journey.truth_statuses(now).last().map(|(_, s)| *s);
        assert_eq!(
            Some(ours.status),
            truth,
            "{} ({:?})",
            pc.id,
            pc.journey.kind
        );
        let lines = pc.journey.visible_at(now).traces.len();
        assert_eq!(ours.event_count as usize, lines, "{}: lines once", pc.id);
    }
    let failovers = parcelwatch::metrics::count_of(
        "ProviderFailover",
        &[("From", "kdniao"), ("To", "kuaidi100")],
    ) - failovers_before;
    assert!(failovers > 0, "the switch was counted");
    let k100 = p.sandbox.kuaidi100_stats();
    assert!(k100.answered > 0, "Kuaidi100 took over");
    assert_eq!(k100.too_frequent, 0);
    // Kdniao's quota answer says when to come back: the tracker stops asking it meanwhile.
    let kdniao_after = p.sandbox.stats().requests_8001 - before_switch;
    assert!(
        (kdniao_after as usize) < parcels.len() * 3,
        "{kdniao_after} Kdniao queries after its quota ran out"
    );
    assert!(p
        .peek_queue(&p.stack.tracking_dlq_url)
        .await
        .unwrap()
        .is_empty());
    assert_never_told_more_than_the_truth(&p, &shipments).await;
}
