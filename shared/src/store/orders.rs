//! Orders and the incremental-sync watermark, in the shipments' table.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | order | `ORDER#{platform}#{shop}#{tid}` | `META` |
//! | sub-order | `ORDER#{platform}#{shop}#{tid}` | `SUB#{oid}` (with `shipment_pk` = `SHIP#{carrier}#{number}`) |
//! | sync watermark | `SYNC#{platform}#{shop}` | `META` |
//!
//! An upsert merges: a field the platform left blank never overwrites a stored value (sales-event
//! answers come back with empty waybills and phones), and an answer older than the stored one
//! (by `modified`) changes nothing. The upsert returns the merged order, which is what the sync
//! plans from.

use super::dynamo::classify;
use super::record::META;
use super::StoreError;
use crate::domain::order::{Order, Platform, SubOrder, TradeStatus};
use crate::domain::{fmt_time, parse_time};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

/// Counters of the last sync run, kept on the watermark item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncRunStats {
    #[serde(default)]
    pub pages: u64,
    #[serde(default)]
    pub orders: u64,
    #[serde(default)]
    pub registered: u64,
    #[serde(default)]
    pub already_tracked: u64,
    #[serde(default)]
    pub stopped: u64,
    #[serde(default)]
    pub skipped: u64,
}

/// Where the incremental sync of one shop stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub platform: Platform,
    pub shop: String,
    /// Every order modified up to here has been pulled.
    pub watermark: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_run: SyncRunStats,
}

pub fn sync_pk(platform: Platform, shop: &str) -> String {
    format!("SYNC#{platform}#{shop}")
}

pub fn order_pk(platform: Platform, shop: &str, tid: &str) -> String {
    format!("ORDER#{platform}#{shop}#{tid}")
}

pub fn sub_sk(oid: &str) -> String {
    format!("SUB#{oid}")
}

/// Orders and sync watermarks.
pub trait OrderStore: Send + Sync {
    fn sync_state(
        &self,
        platform: Platform,
        shop: &str,
    ) -> impl Future<Output = Result<Option<SyncState>, StoreError>> + Send;

    fn put_sync_state(
        &self,
        state: &SyncState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Merge `order` into what is stored (see the module doc) and return the merged order.
    fn upsert_order(
        &self,
        order: &Order,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Order, StoreError>> + Send;

    fn order(
        &self,
        platform: Platform,
        shop: &str,
        tid: &str,
    ) -> impl Future<Output = Result<Option<Order>, StoreError>> + Send;
}

/// The order as a store may keep it: its phone only when sealed. A clear number must not be
/// stored, and a masked or blank one is no use (the stored sealed phone then stays).
fn only_sealed_phone(order: &Order) -> Order {
    let mut o = order.clone();
    o.receiver_mobile = order.sealed_phone().map(String::from);
    o
}

fn pick(new: &Option<String>, old: &Option<String>) -> Option<String> {
    match new.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Some(s.to_string()),
        _ => old.clone(),
    }
}

fn pick_status(new: &TradeStatus, old: &TradeStatus) -> TradeStatus {
    if new.is_blank() {
        old.clone()
    } else {
        new.clone()
    }
}

fn merge_sub(old: Option<&SubOrder>, new: &SubOrder) -> SubOrder {
    let Some(old) = old else {
        return new.clone();
    };
    SubOrder {
        oid: new.oid.clone(),
        status: pick_status(&new.status, &old.status),
        refund_status: pick(&new.refund_status, &old.refund_status),
        logistics_company: pick(&new.logistics_company, &old.logistics_company),
        invoice_no: pick(&new.invoice_no, &old.invoice_no),
        consign_time: new.consign_time.or(old.consign_time),
    }
}

/// The pure merge both adapters implement: blanks never overwrite, an older answer (by
/// `modified`) changes nothing, sub-orders are merged by `oid` and never dropped.
pub fn merge_order(stored: Option<&Order>, new: &Order) -> Order {
    let Some(old) = stored else {
        return new.clone();
    };
    if is_stale(old.modified, new.modified) {
        return old.clone();
    }
    let mut orders: Vec<SubOrder> = old
        .orders
        .iter()
        .map(|o| match new.orders.iter().find(|n| n.oid == o.oid) {
            Some(n) => merge_sub(Some(o), n),
            None => o.clone(),
        })
        .collect();
    for n in &new.orders {
        if !n.oid.trim().is_empty() && !old.orders.iter().any(|o| o.oid == n.oid) {
            orders.push(n.clone());
        }
    }
    Order {
        platform: new.platform,
        shop: new.shop.clone(),
        tid: new.tid.clone(),
        status: pick_status(&new.status, &old.status),
        created: new.created.or(old.created),
        modified: new.modified.or(old.modified),
        receiver_mobile: pick(&new.receiver_mobile, &old.receiver_mobile),
        receiver_state: pick(&new.receiver_state, &old.receiver_state),
        receiver_city: pick(&new.receiver_city, &old.receiver_city),
        orders,
    }
}

fn is_stale(stored: Option<DateTime<Utc>>, new: Option<DateTime<Utc>>) -> bool {
    matches!((stored, new), (Some(s), Some(n)) if n < s)
}

// ---------------------------------------------------------------------------------------------
// In memory
// ---------------------------------------------------------------------------------------------

type OrderKey = (Platform, String, String);

/// In-memory [`OrderStore`] for handler tests, with the same merge semantics.
#[derive(Debug, Default)]
pub struct MemoryOrderStore {
    pub orders: Mutex<BTreeMap<OrderKey, Order>>,
    pub sync: Mutex<BTreeMap<(Platform, String), SyncState>>,
    /// Upserts so far (also the ones that changed nothing).
    pub upserts: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryOrderStore {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, platform: Platform, shop: &str, tid: &str) -> Option<Order> {
        lock(&self.orders)
            .get(&(platform, shop.to_string(), tid.to_string()))
            .cloned()
    }
    pub fn watermark(&self, platform: Platform, shop: &str) -> Option<DateTime<Utc>> {
        lock(&self.sync)
            .get(&(platform, shop.to_string()))
            .map(|s| s.watermark)
    }
}

impl OrderStore for MemoryOrderStore {
    async fn sync_state(
        &self,
        platform: Platform,
        shop: &str,
    ) -> Result<Option<SyncState>, StoreError> {
        Ok(lock(&self.sync).get(&(platform, shop.to_string())).cloned())
    }

    async fn put_sync_state(&self, state: &SyncState) -> Result<(), StoreError> {
        lock(&self.sync).insert((state.platform, state.shop.clone()), state.clone());
        Ok(())
    }

    async fn upsert_order(&self, order: &Order, _now: DateTime<Utc>) -> Result<Order, StoreError> {
        *lock(&self.upserts) += 1;
        let key = (order.platform, order.shop.clone(), order.tid.clone());
        let mut m = lock(&self.orders);
        let merged = merge_order(m.get(&key), &only_sealed_phone(order));
        m.insert(key, merged.clone());
        Ok(merged)
    }

    async fn order(
        &self,
        platform: Platform,
        shop: &str,
        tid: &str,
    ) -> Result<Option<Order>, StoreError> {
        Ok(self.get(platform, shop, tid))
    }
}

// ---------------------------------------------------------------------------------------------
// DynamoDB
// ---------------------------------------------------------------------------------------------

/// [`OrderStore`] on the shipments' DynamoDB table.
#[derive(Clone)]
pub struct DynamoOrderStore {
    client: Client,
    table: String,
}

impl DynamoOrderStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoOrderStore {
            client,
            table: table.into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SyncRecord {
    pk: String,
    sk: String,
    platform: String,
    shop: String,
    watermark: String,
    updated_at: String,
    #[serde(default)]
    last_run: SyncRunStats,
}

#[derive(Debug, Default, Deserialize)]
struct OrderRecord {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    modified: Option<String>,
    /// The receiver's phone, sealed (`pw1.<last4>.…`).
    #[serde(default)]
    receiver_phone_enc: Option<String>,
    #[serde(default)]
    receiver_state: Option<String>,
    #[serde(default)]
    receiver_city: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SubRecord {
    #[serde(default)]
    oid: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    refund_status: Option<String>,
    #[serde(default)]
    logistics_company: Option<String>,
    #[serde(default)]
    invoice_no: Option<String>,
    #[serde(default)]
    consign_time: Option<String>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn bad(pk: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::BadRecord(super::BadRecord {
        pk: pk.to_string(),
        reason: reason.to_string(),
    })
}

/// `SET` only the present, non-blank values; `modified` guards against older answers.
struct Update {
    sets: Vec<(&'static str, String)>,
}

impl Update {
    fn new() -> Self {
        Update { sets: Vec::new() }
    }
    fn set(&mut self, name: &'static str, v: Option<String>) -> &mut Self {
        if let Some(v) = v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
            self.sets.push((name, v));
        }
        self
    }
}

impl DynamoOrderStore {
    /// `Ok(false)` when the stored item is newer (nothing written).
    async fn update(
        &self,
        pk: &str,
        sk: &str,
        u: &Update,
        modified: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk));
        let mut parts = Vec::with_capacity(u.sets.len());
        for (i, (name, v)) in u.sets.iter().enumerate() {
            parts.push(format!("#a{i} = :v{i}"));
            req = req
                .expression_attribute_names(format!("#a{i}"), *name)
                .expression_attribute_values(format!(":v{i}"), s(v.clone()));
        }
        req = req.update_expression(format!("SET {}", parts.join(", ")));
        if let Some(m) = modified {
            req = req
                .condition_expression("attribute_not_exists(#modified) OR #modified <= :modified")
                .expression_attribute_names("#modified", "modified")
                .expression_attribute_values(":modified", s(m));
        }
        match req.send().await.map_err(classify) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn read_order(
        &self,
        platform: Platform,
        shop: &str,
        tid: &str,
    ) -> Result<Option<Order>, StoreError> {
        let pk = order_pk(platform, shop, tid);
        let mut items: Vec<HashMap<String, AttributeValue>> = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        let mut meta: Option<OrderRecord> = None;
        let mut subs = Vec::new();
        for item in items {
            let sk = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            if sk == META {
                meta = Some(serde_dynamo::from_item(item).map_err(|e| bad(&pk, e))?);
            } else if sk.starts_with("SUB#") {
                let r: SubRecord = serde_dynamo::from_item(item).map_err(|e| bad(&pk, e))?;
                subs.push(SubOrder {
                    oid: r.oid,
                    status: TradeStatus::parse(r.status.as_deref().unwrap_or("")),
                    refund_status: r.refund_status,
                    logistics_company: r.logistics_company,
                    invoice_no: r.invoice_no,
                    consign_time: r.consign_time.as_deref().and_then(parse_time),
                });
            }
        }
        let Some(meta) = meta else {
            return Ok(None);
        };
        Ok(Some(Order {
            platform,
            shop: shop.to_string(),
            tid: tid.to_string(),
            status: TradeStatus::parse(meta.status.as_deref().unwrap_or("")),
            created: meta.created.as_deref().and_then(parse_time),
            modified: meta.modified.as_deref().and_then(parse_time),
            receiver_mobile: meta.receiver_phone_enc,
            receiver_state: meta.receiver_state,
            receiver_city: meta.receiver_city,
            orders: subs,
        }))
    }
}

impl OrderStore for DynamoOrderStore {
    async fn sync_state(
        &self,
        platform: Platform,
        shop: &str,
    ) -> Result<Option<SyncState>, StoreError> {
        let pk = sync_pk(platform, shop);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk.clone()))
            .key("sk", s(META))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let rec: SyncRecord = serde_dynamo::from_item(item).map_err(|e| bad(&pk, e))?;
        let watermark = parse_time(&rec.watermark).ok_or_else(|| {
            bad(
                &pk,
                format!("watermark `{}` is not RFC 3339", rec.watermark),
            )
        })?;
        Ok(Some(SyncState {
            platform,
            shop: shop.to_string(),
            watermark,
            updated_at: parse_time(&rec.updated_at).unwrap_or(watermark),
            last_run: rec.last_run,
        }))
    }

    async fn put_sync_state(&self, state: &SyncState) -> Result<(), StoreError> {
        let rec = SyncRecord {
            pk: sync_pk(state.platform, &state.shop),
            sk: META.to_string(),
            platform: state.platform.as_str().to_string(),
            shop: state.shop.clone(),
            watermark: fmt_time(state.watermark),
            updated_at: fmt_time(state.updated_at),
            last_run: state.last_run,
        };
        let item = serde_dynamo::to_item(&rec)
            .map_err(|e| StoreError::Permanent(format!("encode: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn upsert_order(&self, order: &Order, now: DateTime<Utc>) -> Result<Order, StoreError> {
        let pk = order_pk(order.platform, &order.shop, &order.tid);
        let modified = order.modified.map(fmt_time);
        let mut meta = Update::new();
        meta.set("platform", Some(order.platform.as_str().to_string()))
            .set("shop", Some(order.shop.clone()))
            .set("tid", Some(order.tid.clone()))
            .set("updated_at", Some(fmt_time(now)))
            .set("status", Some(order.status.as_str().to_string()))
            .set("created", order.created.map(fmt_time))
            .set("modified", modified.clone())
            .set("receiver_phone_enc", order.sealed_phone().map(String::from))
            .set("receiver_state", order.receiver_state.clone())
            .set("receiver_city", order.receiver_city.clone());
        // The order first: when it is older than what we hold, none of its sub-orders are written.
        if self.update(&pk, META, &meta, modified.as_deref()).await? {
            for sub in order.orders.iter().filter(|o| !o.oid.trim().is_empty()) {
                let mut u = Update::new();
                u.set("oid", Some(sub.oid.clone()))
                    .set("updated_at", Some(fmt_time(now)))
                    .set("status", Some(sub.status.as_str().to_string()))
                    .set("refund_status", sub.refund_status.clone())
                    .set("logistics_company", sub.logistics_company.clone())
                    .set("invoice_no", sub.invoice_no.clone())
                    .set("consign_time", sub.consign_time.map(fmt_time))
                    .set("modified", modified.clone())
                    .set("shipment_pk", sub.shipment_id().ok().map(|id| id.pk()));
                self.update(&pk, &sub_sk(&sub.oid), &u, modified.as_deref())
                    .await?;
            }
        }
        self.read_order(order.platform, &order.shop, &order.tid)
            .await?
            .ok_or_else(|| StoreError::Retryable(format!("{pk} not readable after its upsert")))
    }

    async fn order(
        &self,
        platform: Platform,
        shop: &str,
        tid: &str,
    ) -> Result<Option<Order>, StoreError> {
        self.read_order(platform, shop, tid).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEALED: &str = "pw1.5678.d3JhcHBlZA.bm9uY2U.Y2lwaGVy";
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 11, h, 0, 0).unwrap()
    }

    fn shipped(oid: &str, company: &str, no: &str) -> SubOrder {
        let mut s = SubOrder::new(oid, TradeStatus::WaitBuyerConfirmGoods);
        s.logistics_company = Some(company.into());
        s.invoice_no = Some(no.into());
        s.consign_time = Some(t(2));
        s
    }

    fn order(modified: u32, subs: Vec<SubOrder>) -> Order {
        Order {
            platform: Platform::Top,
            shop: "kingdo".into(),
            tid: "100".into(),
            status: TradeStatus::WaitBuyerConfirmGoods,
            created: Some(t(1)),
            modified: Some(t(modified)),
            receiver_mobile: Some(SEALED.into()),
            receiver_state: Some("浙江省".into()),
            receiver_city: None,
            orders: subs,
        }
    }

    #[test]
    fn keys() {
        assert_eq!(sync_pk(Platform::Fw199, "kingdo"), "SYNC#fw199#kingdo");
        assert_eq!(order_pk(Platform::Top, "kingdo", "1"), "ORDER#top#kingdo#1");
        assert_eq!(sub_sk("11"), "SUB#11");
    }

    #[test]
    fn blanks_never_overwrite_and_sub_orders_are_kept() {
        let stored = order(3, vec![shipped("1", "圆通速递", "YT1234567890123")]);
        let mut blank = order(3, vec![SubOrder::new("1", TradeStatus::default())]);
        blank.status = TradeStatus::default();
        blank.receiver_mobile = Some("".into());
        blank.receiver_state = Some(" ".into());
        blank.created = None;
        let merged = merge_order(Some(&stored), &blank);
        assert_eq!(merged, stored);

        // A newer answer changes what it carries and adds sub-orders.
        let mut newer = order(
            4,
            vec![SubOrder::new("2", TradeStatus::WaitSellerSendGoods)],
        );
        newer.status = TradeStatus::SellerConsignedPart;
        newer.receiver_mobile = None;
        let merged = merge_order(Some(&stored), &newer);
        assert_eq!(merged.status, TradeStatus::SellerConsignedPart);
        assert_eq!(merged.modified, Some(t(4)));
        assert_eq!(merged.receiver_mobile.as_deref(), Some(SEALED));
        let oids: Vec<&str> = merged.orders.iter().map(|o| o.oid.as_str()).collect();
        assert_eq!(oids, ["1", "2"]);
        assert_eq!(
            merged.orders[0].invoice_no.as_deref(),
            Some("YT1234567890123")
        );
    }

    #[test]
    fn an_older_answer_changes_nothing() {
        let mut stored = order(5, vec![shipped("1", "圆通速递", "YT1234567890123")]);
        stored.status = TradeStatus::TradeClosed;
        let older = order(4, vec![shipped("1", "中通快递", "731234567890123")]);
        assert_eq!(merge_order(Some(&stored), &older), stored);
        assert_eq!(merge_order(None, &older), older);
    }

    #[tokio::test]
    async fn the_memory_store_merges_and_keeps_watermarks() {
        let store = MemoryOrderStore::new();
        let first = order(3, vec![shipped("1", "圆通速递", "YT1234567890123")]);
        assert_eq!(store.upsert_order(&first, t(3)).await.unwrap(), first);
        let mut blank_sub = SubOrder::new("1", TradeStatus::WaitBuyerConfirmGoods);
        blank_sub.logistics_company = Some(" ".into());
        let merged = store
            .upsert_order(&order(3, vec![blank_sub]), t(4))
            .await
            .unwrap();
        assert_eq!(
            merged.orders[0].logistics_company.as_deref(),
            Some("圆通速递")
        );
        // A clear or masked number is never stored; the sealed one stays.
        let other = MemoryOrderStore::new();
        other.upsert_order(&first, t(3)).await.unwrap();
        let mut clear = order(3, vec![]);
        clear.receiver_mobile = Some("13812345678".into());
        let kept = other.upsert_order(&clear, t(5)).await.unwrap();
        assert_eq!(kept.receiver_mobile.as_deref(), Some(SEALED));
        clear.tid = "101".into();
        let dropped = other.upsert_order(&clear, t(5)).await.unwrap();
        assert_eq!(dropped.receiver_mobile, None);
        clear.receiver_mobile = Some("*******5678".into());
        let dropped = other.upsert_order(&clear, t(5)).await.unwrap();
        assert_eq!(dropped.receiver_mobile, None);
        assert_eq!(
            store.order(Platform::Top, "kingdo", "100").await.unwrap(),
            Some(merged)
        );
        assert_eq!(
            store.sync_state(Platform::Top, "kingdo").await.unwrap(),
            None
        );
        let st = SyncState {
            platform: Platform::Top,
            shop: "kingdo".into(),
            watermark: t(5),
            updated_at: t(5),
            last_run: SyncRunStats {
                orders: 2,
                ..Default::default()
            },
        };
        store.put_sync_state(&st).await.unwrap();
        assert_eq!(
            store.sync_state(Platform::Top, "kingdo").await.unwrap(),
            Some(st)
        );
    }
}
