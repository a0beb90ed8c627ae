//! Orders in, buyers told: orders created on the sandbox's order platforms (fw199 enhanced list
//! and TOP increment, real signatures) are pulled by the order-sync function on its schedule,
//! their waybills registered, tracked through the Kdniao sandbox and notified through SNS — with
//! closed and refunded orders stopping their parcels, a throttled platform retried, and blank
//! promotion-time answers never overwriting what was stored.

use chrono::Duration;
use parcelwatch::domain::order::Platform;
use parcelwatch::domain::{ShipmentId, Status};
use parcelwatch::store::orders::OrderStore;
use parcelwatch_local::pipeline::{expected_sms, Parcel, Pipeline, PipelineOptions};
use std::collections::{BTreeSet, HashMap};

const FW_SHOP: &str = "pw-fw-shop";
const TOP_SHOP: &str = "pw-top-shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_from_both_platforms_are_synced_tracked_and_every_buyer_told_once() {
    let mut p = Pipeline::start(PipelineOptions {
        seed: 31,
        shops: vec![format!("fw199:{FW_SHOP}"), format!("top:{TOP_SHOP}")],
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");
    let created = p.now() - Duration::hours(3);
    let fw_orders = p
        .sandbox
        .generate_orders(FW_SHOP, Platform::Fw199, 9, created);
    let top_orders = p
        .sandbox
        .generate_orders(TOP_SHOP, Platform::Top, 7, created);

    // Every distinct waybill on a shipped sub-order, and the phone it belongs to.
    let mut waybills: HashMap<ShipmentId, String> = HashMap::new();
    for o in fw_orders.iter().chain(&top_orders) {
        for s in &o.orders {
            if let Ok(id) = s.shipment_id() {
                let phone = o.phone().expect("the sandbox's orders carry a phone");
                waybills.insert(id, phone.expose().to_string());
            }
        }
    }
    assert!(
        waybills.len() > fw_orders.len(),
        "split parcels give more waybills than orders"
    );

    // The first tick pulls both shops and registers every waybill once.
    let first = p.tick().await.expect("tick");
    let report = first.order_sync.expect("order-sync ran");
    assert_eq!(report.shops.len(), 2);
    for shop in &report.shops {
        assert_eq!(shop.error, None, "{shop:?}");
        assert!(shop.watermark_after.is_some());
    }
    let registered: u64 = report.shops.iter().map(|s| s.shipments_registered).sum();
    assert_eq!(registered as usize, waybills.len());
    let ids: BTreeSet<ShipmentId> = p
        .shipments()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, waybills.keys().cloned().collect::<BTreeSet<_>>());

    // The TOP platform throttles the next run: its window is kept and retried, fw199 goes on.
    let top_before = report
        .shops
        .iter()
        .find(|s| s.platform == "top")
        .and_then(|s| s.watermark_after.clone());
    p.sandbox.set_throttle(Platform::Top, 1, 120);
    let throttled = p.tick().await.expect("tick").order_sync.expect("ran");
    let top = throttled
        .shops
        .iter()
        .find(|s| s.platform == "top")
        .unwrap();
    assert!(top.error.is_some(), "{top:?}");
    assert_eq!(top.retryable, Some(true));
    assert_eq!(
        top.watermark_after, top_before,
        "watermark kept for the retry"
    );
    let fw = throttled
        .shops
        .iter()
        .find(|s| s.platform == "fw199")
        .unwrap();
    assert_eq!(fw.error, None);

    // A buyer cancels an order (closed) and another gets a refund: their parcels stop.
    let closed = &fw_orders[0];
    p.sandbox.close_order(Platform::Fw199, FW_SHOP, &closed.tid);
    let refunded = top_orders
        .iter()
        .find(|o| o.orders.len() == 1 && o.orders[0].shipment_id().is_ok())
        .expect("a single-parcel TOP order");
    p.sandbox.refund_sub_order(
        Platform::Top,
        TOP_SHOP,
        &refunded.tid,
        &refunded.orders[0].oid,
    );
    let mut stopped: BTreeSet<ShipmentId> = BTreeSet::new();
    for s in closed.orders.iter().chain(&refunded.orders) {
        if let Ok(id) = s.shipment_id() {
            stopped.insert(id);
        }
    }
    // The next answers come back blank (a sales-event answer): nothing stored is overwritten.
    p.sandbox.blank_fields_next(3);

    p.run_until_settled(9).await.expect("run");
    let now = p.now();
    assert_eq!(
        p.totals.shipments_from_orders as usize,
        waybills.len(),
        "re-runs over overlapping windows registered nothing twice"
    );

    let shipments: HashMap<ShipmentId, _> = p
        .shipments()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    assert_eq!(shipments.len(), waybills.len());
    let mut expected_by_phone: HashMap<String, usize> = HashMap::new();
    for (id, phone) in &waybills {
        let ours = &shipments[id];
        assert!(ours.order_ref.is_some(), "{id} linked to its order");
        if stopped.contains(id) {
            assert_eq!(ours.next_check_at, None, "{id} stopped");
            assert!(
                ours.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("stopped")),
                "{id}: {:?}",
                ours.last_error
            );
            continue;
        }
        let journey = p
            .sandbox
            .journey(id.carrier.as_str(), id.number.as_str())
            .unwrap();
        let truth = journey.truth_statuses(now).last().map(|(_, s)| *s);
        assert_eq!(Some(ours.status), truth, "{id} ({:?})", journey.kind);
        let parcel = Parcel {
            id: id.clone(),
            // Stored sealed: the notifier's vault opens it to the order's number.
            phone: p
                .notifier
                .vault
                .open(ours.recipient.phone.as_ref().expect("phone from the order"))
                .await
                .expect("the sealed phone opens"),
            journey,
        };
        assert_eq!(parcel.phone.expose(), phone.as_str());
        *expected_by_phone.entry(phone.clone()).or_default() += expected_sms(&parcel, now);
    }

    // Exactly one SMS per notifiable transition for every parcel still tracked, read back from
    // the local SNS (phones of stopped parcels were told up to their stop and are not counted).
    let stopped_phones: BTreeSet<&str> = stopped
        .iter()
        .filter_map(|id| waybills.get(id).map(String::as_str))
        .collect();
    let sms = p.sent_sms().await.unwrap();
    let mut by_phone: HashMap<&str, usize> = HashMap::new();
    for m in &sms {
        *by_phone.entry(m.phone_number.as_str()).or_default() += 1;
    }
    for (phone, expected) in &expected_by_phone {
        if stopped_phones.contains(phone.as_str()) {
            continue;
        }
        assert_eq!(
            by_phone.get(phone.as_str()).copied().unwrap_or(0),
            *expected,
            "SMS to {phone}"
        );
    }
    assert!(
        shipments.values().any(|s| s.status == Status::Delivered),
        "parcels were delivered"
    );

    // Orders are stored with their sub-orders; blank answers did not erase what was known.
    let stored = p
        .order_sync
        .as_ref()
        .unwrap()
        .orders
        .order(Platform::Fw199, FW_SHOP, &fw_orders[1].tid)
        .await
        .unwrap()
        .expect("order stored");
    for s in &stored.orders {
        if s.invoice_no.is_some() {
            assert!(s
                .logistics_company
                .as_deref()
                .is_some_and(|c| !c.is_empty()));
        }
    }
    assert_eq!(stored.orders.len(), fw_orders[1].orders.len());
}
