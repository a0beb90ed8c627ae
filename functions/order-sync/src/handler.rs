//! Per shop: watermark → windows → pages → merge orders → plan → register / stop.
//!
//! Paging: a listing shrinks while we read it (an order modified meanwhile leaves the window),
//! and paging forwards then skips the order that slid onto a page already read. So a window
//! that spans several pages is read from its last page back to the first (the first page, read
//! once to learn the total, is read again last): a shrinking list can then only repeat an
//! order, never hide one. Orders are deduplicated by `tid` and processed by ascending `modified`.
//!
//! The watermark moves to a window's end only once the whole window is stored; a throttled or
//! failed window is pulled again by the next run (everything here is idempotent).

use crate::{OrderSyncConfig, ShopSpec};
use chrono::{DateTime, Duration, Utc};
use futures::{stream, StreamExt};
use parcelwatch::crypto::{Vault, VaultError};
use parcelwatch::domain::order::{
    plan_order, Order, Platform, SkipReason, StopReason, SubOrderPlan,
};
use parcelwatch::domain::{fmt_time, Locale, Priority, Recipient, Shipment, ShipmentId};
use parcelwatch::orders::{OrderError, OrderSource};
use parcelwatch::store::orders::{merge_order, OrderStore, SyncRunStats, SyncState};
use parcelwatch::store::{ShipmentStore, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Pages one window may take before the run gives up on it (a runaway total).
const MAX_PAGES_PER_WINDOW: u64 = 200;
/// Orders written at once within a window.
const ORDER_CONCURRENCY: usize = 16;
/// How long an order answered with blank fields holds the watermark back so that later runs
/// pull it again (platforms fill the fields in once a sales event's load passes).
pub const INCOMPLETE_RETRY_FOR: Duration = Duration::hours(6);
/// Attempts at stopping a shipment that another writer keeps changing.
const STOP_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShopReport {
    pub platform: String,
    pub shop: String,
    pub windows: u32,
    pub pages: u64,
    /// Distinct orders pulled and stored.
    pub orders: u64,
    pub shipments_registered: u64,
    pub already_tracked: u64,
    pub stopped: u64,
    pub already_stopped: u64,
    /// Stops asked for parcels we never tracked.
    pub stop_not_tracked: u64,
    /// Sub-orders with nothing to do, by reason (`not_shipped`, `incomplete`, …).
    pub skipped: BTreeMap<String, u64>,
    pub watermark_before: Option<String>,
    pub watermark_after: Option<String>,
    /// The watermark was held back at an order answered with blank fields, to pull it again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held_for_incomplete: bool,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

impl ShopReport {
    /// Add one order's counters (see `process_order`) to the shop's.
    fn absorb(&mut self, order: &ShopReport) {
        self.orders += order.orders;
        self.shipments_registered += order.shipments_registered;
        self.already_tracked += order.already_tracked;
        self.stopped += order.stopped;
        self.already_stopped += order.already_stopped;
        self.stop_not_tracked += order.stop_not_tracked;
        for (reason, n) in &order.skipped {
            *self.skipped.entry(reason.clone()).or_default() += n;
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub now: String,
    pub shops: Vec<ShopReport>,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Platform(#[from] OrderError),
    #[error("table: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Phone(#[from] VaultError),
    #[error("{0}")]
    Other(String),
}

/// Sync every configured shop. One shop's failure is reported and never stops the others.
pub async fn run_sync<F, T, O, S>(
    fw199: Option<&F>,
    top: Option<&T>,
    orders: &O,
    shipments: &S,
    vault: &Vault,
    cfg: &OrderSyncConfig,
    now: DateTime<Utc>,
) -> SyncReport
where
    F: OrderSource,
    T: OrderSource,
    O: OrderStore,
    S: ShipmentStore,
{
    let mut report = SyncReport {
        now: fmt_time(now),
        shops: Vec::with_capacity(cfg.shops.len()),
    };
    for spec in &cfg.shops {
        let shop_report = match spec.platform {
            Platform::Fw199 => match fw199 {
                Some(src) => sync_shop(src, orders, shipments, vault, cfg, spec, now).await,
                None => unconfigured(spec),
            },
            Platform::Top => match top {
                Some(src) => sync_shop(src, orders, shipments, vault, cfg, spec, now).await,
                None => unconfigured(spec),
            },
        };
        report.shops.push(shop_report);
    }
    report
}

fn unconfigured(spec: &ShopSpec) -> ShopReport {
    tracing::error!(platform = %spec.platform, shop = %spec.shop, "no client configured for the shop's platform");
    ShopReport {
        platform: spec.platform.to_string(),
        shop: spec.shop.clone(),
        error: Some(format!("no {} client configured", spec.platform)),
        retryable: Some(false),
        ..ShopReport::default()
    }
}

/// Sync one shop and report; errors end up in the report.
pub async fn sync_shop<P, O, S>(
    source: &P,
    orders: &O,
    shipments: &S,
    vault: &Vault,
    cfg: &OrderSyncConfig,
    spec: &ShopSpec,
    now: DateTime<Utc>,
) -> ShopReport
where
    P: OrderSource,
    O: OrderStore,
    S: ShipmentStore,
{
    let mut report = ShopReport {
        platform: spec.platform.to_string(),
        shop: spec.shop.clone(),
        ..ShopReport::default()
    };
    let sinks = Sinks {
        orders,
        shipments,
        vault,
    };
    let result = sync_windows(source, &sinks, cfg, spec, now, &mut report).await;
    if let Err(e) = result {
        let retry_after = match &e {
            SyncError::Platform(pe) => pe.retry_after(),
            _ => None,
        };
        let retryable = match &e {
            SyncError::Platform(pe) => pe.is_retryable(),
            SyncError::Store(se) => se.is_retryable(),
            SyncError::Phone(ve) => ve.is_retryable(),
            SyncError::Other(_) => false,
        };
        tracing::warn!(
            platform = %spec.platform,
            shop = %spec.shop,
            retryable,
            retry_after_seconds = retry_after.map(|d| d.as_secs()),
            watermark = report.watermark_after.as_deref().unwrap_or(""),
            error = %e,
            "order sync stopped; the window is pulled again next run"
        );
        report.error = Some(e.to_string());
        report.retryable = Some(retryable);
        report.retry_after_seconds = retry_after.map(|d| d.as_secs());
    }
    tracing::info!(
        platform = %spec.platform,
        shop = %spec.shop,
        windows = report.windows,
        pages = report.pages,
        orders = report.orders,
        registered = report.shipments_registered,
        already_tracked = report.already_tracked,
        stopped = report.stopped,
        skipped = report.skipped.values().sum::<u64>(),
        watermark = report.watermark_after.as_deref().unwrap_or(""),
        ok = report.error.is_none(),
        "order sync run"
    );
    report
}

/// Where a shop's orders and parcels are written, and the vault that seals their phones first.
struct Sinks<'a, O, S> {
    orders: &'a O,
    shipments: &'a S,
    vault: &'a Vault,
}

async fn sync_windows<P, O, S>(
    source: &P,
    sinks: &Sinks<'_, O, S>,
    cfg: &OrderSyncConfig,
    spec: &ShopSpec,
    now: DateTime<Utc>,
    report: &mut ShopReport,
) -> Result<(), SyncError>
where
    P: OrderSource,
    O: OrderStore,
    S: ShipmentStore,
{
    let Sinks {
        orders,
        shipments,
        vault,
    } = *sinks;
    let platform = spec.platform;
    let state = orders.sync_state(platform, &spec.shop).await?;
    let before = state.as_ref().map(|s| s.watermark);
    report.watermark_before = before.map(fmt_time);
    report.watermark_after = report.watermark_before.clone();

    let mut from = match before {
        Some(w) => w - cfg.overlap,
        None => now - Duration::days(1),
    }
    .min(now);
    let max_window = match platform.max_window() {
        Some(limit) => cfg.max_window.min(limit),
        None => cfg.max_window,
    }
    .max(Duration::minutes(1));
    let page_size = cfg
        .page_size
        .unwrap_or(platform.max_page_size())
        .clamp(1, platform.max_page_size());
    // This run's counters, kept on the watermark item.
    let mut stats = SyncRunStats::default();

    // At least one window, also when the overlap is zero and nothing has happened since.
    loop {
        let to = (from + max_window).min(now);
        report.windows += 1;
        let window = fetch_window(source, &spec.shop, from, to, page_size, report).await?;
        // An order answered with blanks (a sales-event answer: a sub-order shipped but without its
        // waybill or carrier) holds the watermark at its modified time, so the next runs pull it
        // again until the platform fills it in, for at most INCOMPLETE_RETRY_FOR.
        let mut hold: Option<DateTime<Utc>> = None;
        // Orders are independent (each its own items, each waybill registered insert-if-absent),
        // so a page's orders are written ORDER_CONCURRENCY at a time: the writes of one order
        // wait on DynamoDB, not on the other orders'.
        let pending: Vec<_> = window
            .iter()
            .map(|order| async move {
                let mut tally = ShopReport::default();
                let incomplete =
                    process_order(orders, shipments, vault, cfg, order, now, &mut tally).await?;
                Ok::<_, SyncError>((tally, incomplete, order.modified))
            })
            .collect();
        let done: Vec<_> = stream::iter(pending)
            .buffer_unordered(ORDER_CONCURRENCY)
            .collect()
            .await;
        for result in done {
            let (tally, incomplete, modified) = result?;
            report.absorb(&tally);
            match modified {
                Some(m) if incomplete && now - m < INCOMPLETE_RETRY_FOR => {
                    let at = m - Duration::seconds(1);
                    hold = Some(hold.map_or(at, |h| h.min(at)));
                }
                _ => {}
            }
        }
        let to = match hold {
            Some(h) if h < to => {
                tracing::info!(platform = %platform, shop = %spec.shop, hold_at = %fmt_time(h),
                    "incomplete orders: watermark held to pull them again");
                report.held_for_incomplete = true;
                // Never behind where this run started: the window still moves on from there.
                h.max(before.unwrap_or(h))
            }
            _ => to,
        };
        stats.pages = report.pages;
        stats.orders = report.orders;
        stats.registered = report.shipments_registered;
        stats.already_tracked = report.already_tracked;
        stats.stopped = report.stopped;
        stats.skipped = report.skipped.values().sum();
        orders
            .put_sync_state(&SyncState {
                platform,
                shop: spec.shop.clone(),
                watermark: to,
                updated_at: now,
                last_run: stats,
            })
            .await?;
        report.watermark_after = Some(fmt_time(to));
        if to >= now || hold.is_some() {
            return Ok(());
        }
        from = to;
    }
}

/// Every order of one window, once per `tid`, oldest first.
async fn fetch_window<P: OrderSource>(
    source: &P,
    shop: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    page_size: u32,
    report: &mut ShopReport,
) -> Result<Vec<Order>, SyncError> {
    // The same order read twice (paging backwards re-reads) is merged: the newer answer wins,
    // and a blank in one answer never hides what the other said.
    let mut seen: HashMap<String, Order> = HashMap::new();
    let mut keep = |batch: Vec<Order>| {
        for o in batch {
            let merged = merge_order(seen.get(&o.tid), &o);
            seen.insert(o.tid.clone(), merged);
        }
    };

    let first = source.page(shop, from, to, 1, page_size).await?;
    report.pages += 1;
    let mut next_forward = if !first.has_next {
        keep(first.orders);
        None
    } else if let Some(total) = first.total {
        let last = total.div_ceil(u64::from(page_size)).max(1);
        if last > MAX_PAGES_PER_WINDOW {
            return Err(SyncError::Other(format!(
                "window {}..{} holds {total} orders ({last} pages); lower ORDER_SYNC_MAX_WINDOW_HOURS",
                fmt_time(from),
                fmt_time(to)
            )));
        }
        // Backwards, page 1 again last; then on, should the list have grown meanwhile.
        let mut last_had_next = false;
        for page_no in (1..=last).rev() {
            let page = source
                .page(shop, from, to, page_no as u32, page_size)
                .await?;
            report.pages += 1;
            if page_no == last {
                last_had_next = page.has_next;
            }
            keep(page.orders);
        }
        last_had_next.then_some(last + 1)
    } else {
        // No total: forwards is all we can do.
        keep(first.orders);
        Some(2)
    };
    while let Some(page_no) = next_forward {
        if page_no > MAX_PAGES_PER_WINDOW {
            return Err(SyncError::Other(format!(
                "window {}..{} still has pages after {MAX_PAGES_PER_WINDOW}",
                fmt_time(from),
                fmt_time(to)
            )));
        }
        let page = source
            .page(shop, from, to, page_no as u32, page_size)
            .await?;
        report.pages += 1;
        next_forward = page.has_next.then_some(page_no + 1);
        keep(page.orders);
    }

    let mut list: Vec<Order> = seen.into_values().collect();
    list.sort_by(|a, b| a.modified.cmp(&b.modified).then_with(|| a.tid.cmp(&b.tid)));
    Ok(list)
}

async fn process_order<O: OrderStore, S: ShipmentStore>(
    orders: &O,
    shipments: &S,
    vault: &Vault,
    cfg: &OrderSyncConfig,
    order: &Order,
    now: DateTime<Utc>,
    report: &mut ShopReport,
) -> Result<bool, SyncError> {
    // The phone is sealed before the order is written; a masked or blank one is dropped.
    let mut order = order.clone();
    let sealed = match order.phone() {
        Some(p) => Some(vault.seal(&p).await?),
        None => None,
    };
    order.seal_phone(sealed);
    // Plan from the merged order: what a blank answer left out is still known.
    let merged = orders.upsert_order(&order, now).await?;
    let mut incomplete = false;
    report.orders += 1;
    let order_ref = merged.order_ref();
    for plan in plan_order(&merged) {
        match plan {
            SubOrderPlan::Track { id, oids, phone } => {
                let has_phone = phone.is_some();
                let mut shipment = Shipment::register(
                    id.clone(),
                    Priority::Normal,
                    cfg.default_provider.clone(),
                    Recipient {
                        phone,
                        locale: Locale::ZhCn,
                    },
                    Some(order_ref.clone()),
                    now,
                );
                // The route's destination is known from the order before any scan: the ETA and
                // the late threshold can use the route's history from the first check.
                shipment.destination = merged.destination_province().map(String::from);
                if shipments.create(&shipment).await? {
                    report.shipments_registered += 1;
                    tracing::info!(shipment = %id, order = %order_ref, sub_orders = ?oids, has_phone, "parcel registered from order");
                } else {
                    report.already_tracked += 1;
                }
            }
            SubOrderPlan::StopTracking { id, oids, reason } => {
                match stop_tracking(shipments, &id, &reason).await? {
                    StopOutcome::Stopped => {
                        report.stopped += 1;
                        tracing::info!(shipment = %id, order = %order_ref, sub_orders = ?oids, %reason, "tracking stopped");
                    }
                    StopOutcome::AlreadyStopped => report.already_stopped += 1,
                    StopOutcome::NotTracked => report.stop_not_tracked += 1,
                }
            }
            SubOrderPlan::Skip { oid, reason } => {
                incomplete |= matches!(reason, SkipReason::Incomplete(_));
                *report.skipped.entry(reason.code().to_string()).or_default() += 1;
                tracing::debug!(order = %order_ref, sub_order = %oid, %reason, "sub-order skipped");
            }
        }
    }
    Ok(incomplete)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    Stopped,
    /// Not being checked any more (stopped before, or reached a final status).
    AlreadyStopped,
    NotTracked,
}

/// Stop checking a shipment: no next check (it leaves the due index), the reason kept in
/// `last_error`. Idempotent; retried when another writer got in between.
pub async fn stop_tracking<S: ShipmentStore>(
    shipments: &S,
    id: &ShipmentId,
    reason: &StopReason,
) -> Result<StopOutcome, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(held) = shipments.get(id).await? else {
            return Ok(StopOutcome::NotTracked);
        };
        if held.next_check_at.is_none() {
            return Ok(StopOutcome::AlreadyStopped);
        }
        let mut s = held.clone();
        s.next_check_at = None;
        s.last_error = Some(format!("tracking stopped: {reason}"));
        match shipments.save(&held, &s, &[]).await {
            Ok(_) => return Ok(StopOutcome::Stopped),
            Err(StoreError::Conflict(_)) if attempt < STOP_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::eventbridge::EventBridgeEvent;
    use parcelwatch::domain::order::{SubOrder, TradeStatus};
    use parcelwatch::orders::OrderPage;
    use parcelwatch::store::orders::MemoryOrderStore;
    use parcelwatch::store::MemoryStore;
    use std::sync::Mutex;
    use std::time::Duration as StdDuration;

    const EVENT: &str = include_str!("../../../events/order-sync/scheduled.json");

    fn event_now() -> DateTime<Utc> {
        let ev: EventBridgeEvent = serde_json::from_str(EVENT).unwrap();
        ev.time.unwrap()
    }

    /// (page_no, from, to) of one page request.
    type Call = (u32, DateTime<Utc>, DateTime<Utc>);

    /// An order platform over a list, filtering and paging like the real ones (newest first or
    /// oldest first), with scripted throttling and an order that leaves the window mid-read.
    struct FakeSource {
        platform: Platform,
        newest_first: bool,
        orders: Mutex<Vec<Order>>,
        throttle_next: Mutex<u32>,
        /// After the first call, this order is modified again (leaves every past window).
        touch_after_first_call: Mutex<Option<String>>,
        calls: Mutex<Vec<Call>>,
    }

    impl FakeSource {
        fn new(platform: Platform, orders: Vec<Order>) -> Self {
            FakeSource {
                platform,
                newest_first: platform == Platform::Top,
                orders: Mutex::new(orders),
                throttle_next: Mutex::new(0),
                touch_after_first_call: Mutex::new(None),
                calls: Mutex::new(Vec::new()),
            }
        }
        fn set_orders(&self, orders: Vec<Order>) {
            *self.orders.lock().unwrap() = orders;
        }
    }

    impl OrderSource for FakeSource {
        fn platform(&self) -> Platform {
            self.platform
        }
        async fn page(
            &self,
            shop: &str,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
            page_no: u32,
            page_size: u32,
        ) -> Result<OrderPage, OrderError> {
            let call_no = {
                let mut calls = self.calls.lock().unwrap();
                calls.push((page_no, from, to));
                calls.len()
            };
            {
                let mut t = self.throttle_next.lock().unwrap();
                if *t > 0 {
                    *t -= 1;
                    return Err(OrderError::Retryable {
                        reason: "This ban will last for 9 more seconds".into(),
                        retry_after: Some(StdDuration::from_secs(9)),
                    });
                }
            }
            let mut all = self.orders.lock().unwrap();
            let mut list: Vec<Order> = all
                .iter()
                .filter(|o| o.shop == shop && o.modified.is_some_and(|m| m >= from && m <= to))
                .cloned()
                .collect();
            list.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.tid.cmp(&b.tid)));
            if self.newest_first {
                list.reverse();
            }
            let total = list.len() as u64;
            let start = ((page_no - 1) * page_size) as usize;
            let page: Vec<Order> = list
                .into_iter()
                .skip(start)
                .take(page_size as usize)
                .collect();
            if call_no == 1 {
                if let Some(tid) = self.touch_after_first_call.lock().unwrap().take() {
                    for o in all.iter_mut().filter(|o| o.tid == tid) {
                        o.modified = Some(to + Duration::hours(1));
                    }
                }
            }
            Ok(OrderPage {
                orders: page,
                has_next: u64::from(page_no * page_size) < total,
                total: Some(total),
            })
        }
    }

    fn cfg(shops: &[(Platform, &str)], page_size: Option<u32>) -> OrderSyncConfig {
        OrderSyncConfig {
            shops: shops
                .iter()
                .map(|(p, s)| ShopSpec {
                    platform: *p,
                    shop: s.to_string(),
                })
                .collect(),
            overlap: Duration::seconds(300),
            page_size,
            max_window: Duration::hours(24),
            default_provider: "kdniao".into(),
        }
    }

    fn shipped(oid: &str, company: &str, no: &str) -> SubOrder {
        let mut s = SubOrder::new(oid, TradeStatus::WaitBuyerConfirmGoods);
        s.logistics_company = Some(company.into());
        s.invoice_no = Some(no.into());
        s
    }

    fn order(
        platform: Platform,
        tid: &str,
        status: TradeStatus,
        modified: DateTime<Utc>,
        subs: Vec<SubOrder>,
    ) -> Order {
        Order {
            platform,
            shop: "kingdo".into(),
            tid: tid.into(),
            status,
            created: Some(modified - Duration::hours(2)),
            modified: Some(modified),
            receiver_mobile: Some("13812345678".into()),
            receiver_state: Some("浙江省".into()),
            receiver_city: Some("杭州市".into()),
            orders: subs,
        }
    }

    fn sid(c: &str, n: &str) -> ShipmentId {
        ShipmentId::parse(c, n).unwrap()
    }

    struct World {
        orders: MemoryOrderStore,
        shipments: MemoryStore,
        vault: Vault,
    }

    impl World {
        fn new() -> Self {
            World {
                orders: MemoryOrderStore::new(),
                shipments: MemoryStore::new(4),
                vault: Vault::ephemeral(),
            }
        }
        async fn run(
            &self,
            fw: &FakeSource,
            top: &FakeSource,
            cfg: &OrderSyncConfig,
            now: DateTime<Utc>,
        ) -> SyncReport {
            run_sync(
                Some(fw),
                Some(top),
                &self.orders,
                &self.shipments,
                &self.vault,
                cfg,
                now,
            )
            .await
        }
    }

    fn empty(p: Platform) -> FakeSource {
        FakeSource::new(p, vec![])
    }

    #[tokio::test]
    async fn registers_parcels_and_a_rerun_changes_nothing() {
        let now = event_now();
        let w = World::new();
        let fw = FakeSource::new(
            Platform::Fw199,
            vec![order(
                Platform::Fw199,
                "1",
                TradeStatus::WaitBuyerConfirmGoods,
                now - Duration::hours(1),
                vec![shipped("11", "顺丰速运", "SF1234567890123")],
            )],
        );
        let cfg = cfg(&[(Platform::Fw199, "kingdo")], None);
        let r = w.run(&fw, &empty(Platform::Top), &cfg, now).await;
        let shop = &r.shops[0];
        assert_eq!(shop.error, None);
        assert_eq!((shop.orders, shop.shipments_registered), (1, 1));
        assert_eq!(shop.watermark_before, None);
        assert_eq!(shop.watermark_after, Some(fmt_time(now)));
        let s = w.shipments.shipment(&sid("SF", "SF1234567890123")).unwrap();
        assert_eq!(s.order_ref.as_deref(), Some("fw199:kingdo:1"));
        assert_eq!(s.provider, "kdniao");
        assert_eq!(s.recipient.phone.as_ref().map(|p| p.last4()), Some("5678"));
        assert_eq!(s.next_check_at, Some(now));
        // The receiver's province is the route's destination from the start.
        assert_eq!(s.destination.as_deref(), Some("浙江"));
        assert_eq!(s.origin, None);
        // First run looks back one day.
        let calls = fw.calls.lock().unwrap().clone();
        assert_eq!(calls[0].1, now - Duration::days(1));
        assert_eq!(calls[0].0, 1);
        assert_eq!(calls[0].2, now);

        // Ten minutes later, with the overlap, the same order is seen again: nothing new.
        let later = now + Duration::minutes(10);
        let r = w.run(&fw, &empty(Platform::Top), &cfg, later).await;
        let shop = &r.shops[0];
        assert_eq!(
            (shop.shipments_registered, shop.already_tracked),
            (0, 0),
            "the order is outside [watermark - overlap, now]"
        );
        assert_eq!(shop.watermark_before, Some(fmt_time(now)));
        let last_call = *fw.calls.lock().unwrap().last().unwrap();
        assert_eq!(last_call.1, now - Duration::seconds(300));
        // A rerun of the very same tick re-reads it and only finds it known.
        w.orders.sync.lock().unwrap().clear();
        let r = w.run(&fw, &empty(Platform::Top), &cfg, now).await;
        assert_eq!(
            (r.shops[0].shipments_registered, r.shops[0].already_tracked),
            (0, 1)
        );
        assert_eq!(w.shipments.shipments.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn split_shared_and_part_shipped_orders() {
        let now = event_now();
        let w = World::new();
        let m = now - Duration::hours(1);
        let mut waiting = SubOrder::new("32", TradeStatus::WaitSellerSendGoods);
        waiting.logistics_company = None;
        let top = FakeSource::new(
            Platform::Top,
            vec![
                order(
                    Platform::Top,
                    "1",
                    TradeStatus::WaitBuyerConfirmGoods,
                    m,
                    vec![
                        shipped("11", "圆通速递", "YT1234567890123"),
                        shipped("12", "中通快递", "731234567890123"),
                    ],
                ),
                order(
                    Platform::Top,
                    "2",
                    TradeStatus::WaitBuyerConfirmGoods,
                    m,
                    vec![
                        shipped("21", "韵达快递", "4312345678901"),
                        shipped("22", "韵达速递", "4312345678901"),
                    ],
                ),
                order(
                    Platform::Top,
                    "3",
                    TradeStatus::SellerConsignedPart,
                    m,
                    vec![shipped("31", "极兔速递", "JT1234567890123"), waiting],
                ),
            ],
        );
        let r = w
            .run(
                &empty(Platform::Fw199),
                &top,
                &cfg(&[(Platform::Top, "kingdo")], None),
                now,
            )
            .await;
        let shop = &r.shops[0];
        assert_eq!(shop.error, None);
        assert_eq!(shop.orders, 3);
        assert_eq!(shop.shipments_registered, 4, "2 split + 1 shared + 1 part");
        assert_eq!(shop.skipped.get("not_shipped"), Some(&1));
        for id in [
            sid("YTO", "YT1234567890123"),
            sid("ZTO", "731234567890123"),
            sid("YD", "4312345678901"),
            sid("JTSD", "JT1234567890123"),
        ] {
            let s = w.shipments.shipment(&id).expect("registered");
            assert!(s.order_ref.as_deref().unwrap().starts_with("top:kingdo:"));
        }
        let stored = w.orders.get(Platform::Top, "kingdo", "3").unwrap();
        assert_eq!(stored.orders.len(), 2);
    }

    #[tokio::test]
    async fn closing_and_refunds_stop_tracking() {
        let now = event_now();
        let w = World::new();
        let m = now - Duration::hours(3);
        let fw = FakeSource::new(
            Platform::Fw199,
            vec![
                order(
                    Platform::Fw199,
                    "1",
                    TradeStatus::WaitBuyerConfirmGoods,
                    m,
                    vec![shipped("11", "圆通速递", "YT1234567890123")],
                ),
                order(
                    Platform::Fw199,
                    "2",
                    TradeStatus::WaitBuyerConfirmGoods,
                    m,
                    vec![
                        shipped("21", "中通快递", "731234567890123"),
                        shipped("22", "申通快递", "771234567890123"),
                    ],
                ),
            ],
        );
        let c = cfg(&[(Platform::Fw199, "kingdo")], None);
        let r = w.run(&fw, &empty(Platform::Top), &c, now).await;
        assert_eq!(r.shops[0].shipments_registered, 3);

        // Order 1 closed; order 2's sub-order 22 refunded.
        let later = now + Duration::minutes(5);
        let mut closed = order(
            Platform::Fw199,
            "1",
            TradeStatus::TradeClosed,
            later,
            vec![shipped("11", "圆通速递", "YT1234567890123")],
        );
        closed.orders[0].status = TradeStatus::TradeClosed;
        let mut refunded = shipped("22", "申通快递", "771234567890123");
        refunded.refund_status = Some("SUCCESS".into());
        refunded.status = TradeStatus::TradeClosed;
        fw.set_orders(vec![
            closed,
            order(
                Platform::Fw199,
                "2",
                TradeStatus::WaitBuyerConfirmGoods,
                later,
                vec![shipped("21", "中通快递", "731234567890123"), refunded],
            ),
        ]);
        let r = w.run(&fw, &empty(Platform::Top), &c, later).await;
        let shop = &r.shops[0];
        assert_eq!(shop.error, None);
        assert_eq!((shop.stopped, shop.already_tracked), (2, 1));
        for (id, why) in [
            (sid("YTO", "YT1234567890123"), "order TRADE_CLOSED"),
            (sid("STO", "771234567890123"), "refund succeeded"),
        ] {
            let s = w.shipments.shipment(&id).unwrap();
            assert_eq!(s.next_check_at, None, "{id}");
            assert_eq!(
                s.last_error.as_deref(),
                Some(format!("tracking stopped: {why}").as_str())
            );
        }
        let live = w
            .shipments
            .shipment(&sid("ZTO", "731234567890123"))
            .unwrap();
        assert!(live.next_check_at.is_some());

        // Stopping is idempotent.
        w.orders.sync.lock().unwrap().clear();
        let r = w.run(&fw, &empty(Platform::Top), &c, later).await;
        assert_eq!((r.shops[0].stopped, r.shops[0].already_stopped), (0, 2));
    }

    #[tokio::test]
    async fn blank_answers_never_overwrite_nor_stop() {
        let now = event_now();
        let w = World::new();
        let m = now - Duration::hours(3);
        let top = FakeSource::new(
            Platform::Top,
            vec![order(
                Platform::Top,
                "1",
                TradeStatus::WaitBuyerConfirmGoods,
                m,
                vec![shipped("11", "圆通速递", "YT1234567890123")],
            )],
        );
        let c = cfg(&[(Platform::Top, "kingdo")], None);
        w.run(&empty(Platform::Fw199), &top, &c, now).await;

        // A sales-event answer: same order, newer, waybill, company, status and phone blank.
        let later = now + Duration::minutes(5);
        let mut blank = order(
            Platform::Top,
            "1",
            TradeStatus::default(),
            later,
            vec![SubOrder::new("11", TradeStatus::WaitBuyerConfirmGoods)],
        );
        blank.receiver_mobile = Some(String::new());
        top.set_orders(vec![blank]);
        let r = w.run(&empty(Platform::Fw199), &top, &c, later).await;
        let shop = &r.shops[0];
        assert_eq!(shop.error, None);
        assert_eq!((shop.stopped, shop.already_tracked), (0, 1));
        let stored = w.orders.get(Platform::Top, "kingdo", "1").unwrap();
        assert_eq!(stored.status, TradeStatus::WaitBuyerConfirmGoods);
        // Kept sealed (never in clear), and the parcel was told its last four digits.
        let kept = stored.sealed_phone().expect("the stored phone, sealed");
        assert_eq!(kept.last4(), "5678");
        assert_eq!(
            w.vault.open(&kept).await.unwrap().expose(),
            "+8613812345678"
        );
        assert!(!stored
            .receiver_mobile
            .as_deref()
            .unwrap_or("")
            .contains("13812345678"));
        assert_eq!(
            stored.orders[0].invoice_no.as_deref(),
            Some("YT1234567890123")
        );
        assert_eq!(stored.modified, Some(later));
        let s = w
            .shipments
            .shipment(&sid("YTO", "YT1234567890123"))
            .unwrap();
        assert!(s.next_check_at.is_some());

        // Never seen before and blank: incomplete, nothing registered.
        let mut fresh = SubOrder::new("21", TradeStatus::WaitBuyerConfirmGoods);
        fresh.consign_time = Some(later);
        top.set_orders(vec![order(
            Platform::Top,
            "2",
            TradeStatus::WaitBuyerConfirmGoods,
            later,
            vec![fresh],
        )]);
        let r = w.run(&empty(Platform::Fw199), &top, &c, later).await;
        assert_eq!(r.shops[0].skipped.get("incomplete"), Some(&1));
        assert_eq!(r.shops[0].shipments_registered, 0);
        assert!(r.shops[0].held_for_incomplete);

        // An hour on, the platform has filled the waybill in (its modified time unchanged):
        // the held watermark pulls the order again and its parcel is registered.
        let mut filled = shipped("21", "中通快递", "780000000000021");
        filled.consign_time = Some(later);
        top.set_orders(vec![order(
            Platform::Top,
            "2",
            TradeStatus::WaitBuyerConfirmGoods,
            later,
            vec![filled],
        )]);
        let r = w
            .run(
                &empty(Platform::Fw199),
                &top,
                &c,
                later + Duration::hours(1),
            )
            .await;
        assert_eq!(r.shops[0].shipments_registered, 1, "{:?}", r.shops[0]);
        assert!(!r.shops[0].held_for_incomplete);
        assert!(w
            .shipments
            .shipment(&sid("ZTO", "780000000000021"))
            .is_some());
    }

    #[tokio::test]
    async fn throttling_keeps_the_watermark_and_other_shops_go_on() {
        let now = event_now();
        let w = World::new();
        let m = now - Duration::hours(1);
        let fw = FakeSource::new(
            Platform::Fw199,
            vec![order(
                Platform::Fw199,
                "1",
                TradeStatus::WaitBuyerConfirmGoods,
                m,
                vec![shipped("11", "圆通速递", "YT1234567890123")],
            )],
        );
        let top = FakeSource::new(
            Platform::Top,
            vec![order(
                Platform::Top,
                "2",
                TradeStatus::WaitBuyerConfirmGoods,
                m,
                vec![shipped("21", "中通快递", "731234567890123")],
            )],
        );
        let c = cfg(
            &[(Platform::Fw199, "kingdo"), (Platform::Top, "kingdo")],
            None,
        );
        w.run(&fw, &top, &c, now).await;
        let before = w.orders.watermark(Platform::Fw199, "kingdo");
        assert_eq!(before, Some(now));

        *fw.throttle_next.lock().unwrap() = 1;
        let later = now + Duration::minutes(5);
        let r = w.run(&fw, &top, &c, later).await;
        let (f, t) = (&r.shops[0], &r.shops[1]);
        assert_eq!(f.retryable, Some(true));
        assert_eq!(f.retry_after_seconds, Some(9));
        assert!(f.error.as_deref().unwrap().contains("ban"));
        assert_eq!(f.watermark_after, Some(fmt_time(now)));
        assert_eq!(w.orders.watermark(Platform::Fw199, "kingdo"), before);
        assert_eq!(t.error, None);
        assert_eq!(w.orders.watermark(Platform::Top, "kingdo"), Some(later));

        // The next run pulls the same window again.
        let r = w.run(&fw, &top, &c, later).await;
        assert_eq!(r.shops[0].error, None);
        assert_eq!(w.orders.watermark(Platform::Fw199, "kingdo"), Some(later));
    }

    #[tokio::test]
    async fn pages_backwards_so_a_shrinking_list_hides_nothing() {
        let now = event_now();
        for platform in Platform::ALL {
            let w = World::new();
            let orders: Vec<Order> = (0..7)
                .map(|i| {
                    order(
                        platform,
                        &format!("{}", 100 + i),
                        TradeStatus::WaitBuyerConfirmGoods,
                        now - Duration::minutes(60 - i),
                        vec![shipped(
                            &format!("{}", 1000 + i),
                            "圆通速递",
                            &format!("YT{:013}", i),
                        )],
                    )
                })
                .collect();
            let src = FakeSource::new(platform, orders);
            // The newest order (on the first page TOP returns) is modified again mid-read.
            *src.touch_after_first_call.lock().unwrap() = Some("106".into());
            let c = cfg(&[(platform, "kingdo")], Some(3));
            let other = empty(match platform {
                Platform::Fw199 => Platform::Top,
                Platform::Top => Platform::Fw199,
            });
            let r = match platform {
                Platform::Fw199 => w.run(&src, &other, &c, now).await,
                Platform::Top => w.run(&other, &src, &c, now).await,
            };
            let shop = &r.shops[0];
            assert_eq!(shop.error, None);
            // Probe, then pages 3, 2, 1.
            let pages: Vec<u32> = src.calls.lock().unwrap().iter().map(|c| c.0).collect();
            assert_eq!(pages, [1, 3, 2, 1], "{platform}");
            assert_eq!(shop.pages, 4);
            // Every order but the one that left the window (it is next run's).
            assert_eq!(shop.shipments_registered, 6, "{platform}");
            for i in 0..6 {
                assert!(
                    w.shipments
                        .shipment(&sid("YTO", &format!("YT{:013}", i)))
                        .is_some(),
                    "{platform}: order {i} missed"
                );
            }
        }
    }

    #[tokio::test]
    async fn long_gaps_are_pulled_in_windows_top_at_most_a_day() {
        let now = event_now();
        let w = World::new();
        let c = cfg(&[(Platform::Top, "kingdo")], None);
        w.orders
            .put_sync_state(&SyncState {
                platform: Platform::Top,
                shop: "kingdo".into(),
                watermark: now - Duration::hours(50),
                updated_at: now - Duration::hours(50),
                last_run: SyncRunStats::default(),
            })
            .await
            .unwrap();
        let top = FakeSource::new(
            Platform::Top,
            vec![order(
                Platform::Top,
                "1",
                TradeStatus::WaitBuyerConfirmGoods,
                now - Duration::hours(40),
                vec![shipped("11", "圆通速递", "YT1234567890123")],
            )],
        );
        let r = w.run(&empty(Platform::Fw199), &top, &c, now).await;
        let shop = &r.shops[0];
        assert_eq!(shop.error, None);
        assert_eq!(shop.windows, 3);
        let calls = top.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3);
        assert_eq!(
            calls[0].1,
            now - Duration::hours(50) - Duration::seconds(300)
        );
        for (i, (_, from, to)) in calls.iter().enumerate() {
            assert!(*to - *from <= Duration::days(1));
            if i > 0 {
                assert_eq!(*from, calls[i - 1].2, "windows are contiguous");
            }
        }
        assert_eq!(calls[2].2, now);
        assert_eq!(shop.shipments_registered, 1);
        let st = w.orders.sync.lock().unwrap()[&(Platform::Top, "kingdo".to_string())].clone();
        assert_eq!(st.watermark, now);
        assert_eq!(st.last_run.registered, 1);
    }

    #[tokio::test]
    async fn a_missing_client_is_reported_not_fatal() {
        let now = event_now();
        let w = World::new();
        let top = empty(Platform::Top);
        let r = run_sync::<FakeSource, FakeSource, _, _>(
            None,
            Some(&top),
            &w.orders,
            &w.shipments,
            &w.vault,
            &cfg(&[(Platform::Fw199, "a"), (Platform::Top, "b")], None),
            now,
        )
        .await;
        assert_eq!(r.shops.len(), 2);
        assert!(r.shops[0].error.as_deref().unwrap().contains("fw199"));
        assert_eq!(r.shops[1].error, None);
        assert_eq!(r.shops[1].watermark_after, Some(fmt_time(now)));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["shops"][1]["shop"], "b");
    }
}
