//! The delivery history: route and stage aggregates kept up to date from the table's stream,
//! read back with one Query per partition.
//!
//! | item | pk | sk | holds |
//! |---|---|---|---|
//! | route | `STATS#ROUTE#{carrier}` | `{origin}#{destination}` (provinces, `-` unknown) | `finished`, `delivered`, `exceptions`, `d000`…`d137` (first scan → delivered histogram) |
//! | stage | `STATS#STAGE` | `{carrier}#{Status}` | `t000`… (time in stage), `g000`… (quiet gaps between trace lines) |
//! | per-shipment state | `SHIP#{carrier}#{number}` | `STATS` | `applied_version` (the last shipment version counted), `exception` (went through one) |
//!
//! Each stream record's contribution is one `TransactWriteItems`: the per-shipment state item,
//! conditional on `applied_version` being older than the record's shipment version, and `ADD`s
//! on the aggregate items. A redelivered record fails the condition and adds nothing, so the
//! aggregates count every shipment change exactly once. Histogram buckets are top-level number
//! attributes because `ADD` only works on those (a nested map path must exist before it can be
//! updated), and the fixed bucket layout (`domain::stats`) makes them addable across items.

use super::dynamo::classify;
use super::StoreError;
use crate::domain::stats::{AggregateUpdate, Histogram, RouteKey, RouteStats, StageStats, BUCKETS};
use crate::domain::{ShipmentId, Status};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// What [`AnalyticsStore::load_history`] returns (a pure domain value: stall detection and the
/// ETA read it without I/O).
pub use crate::domain::stats::HistorySnapshot;

/// Partition of every stage aggregate.
pub const STAGE_PK: &str = "STATS#STAGE";
/// Sort key of a shipment's analytics state item.
pub const STATE_SK: &str = "STATS";

/// Partition of one carrier's route aggregates.
pub fn route_pk(carrier: &str) -> String {
    format!("STATS#ROUTE#{carrier}")
}

/// Attribute name of bucket `i` of the histogram with prefix `p` (`d`, `t`, `g`).
pub fn bucket_attr(p: char, i: usize) -> String {
    format!("{p}{i:03}")
}

/// What applying one shipment change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Added to the aggregates now.
    Added,
    /// This version (or a later one) was counted before: a redelivery.
    AlreadyCounted,
    /// The change adds nothing to any aggregate.
    Nothing,
}

/// The analytics port: count a shipment change once, read the history back.
pub trait AnalyticsStore: Send + Sync {
    /// Add `update`, the change of shipment `id` to `version`, unless that version (or a later
    /// one) was already counted.
    fn count(
        &self,
        id: &ShipmentId,
        version: u64,
        update: &AggregateUpdate,
    ) -> impl Future<Output = Result<Counted, StoreError>> + Send;

    /// Every route and stage aggregate: one Query for the stages, one per carrier seen there.
    fn load_history(&self) -> impl Future<Output = Result<HistorySnapshot, StoreError>> + Send;

    /// One carrier's aggregates (two Queries).
    fn load_carrier_history(
        &self,
        carrier: &str,
    ) -> impl Future<Output = Result<HistorySnapshot, StoreError>> + Send;
}

// ---------------------------------------------------------------------------------------------
// DynamoDB
// ---------------------------------------------------------------------------------------------

/// The aggregates in the shipment table.
#[derive(Clone)]
pub struct DynamoAnalytics {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// One `Update` of a transaction, built from its parts.
struct UpdateBuilder {
    pk: String,
    sk: String,
    set: Vec<String>,
    add: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    condition: Option<String>,
}

impl UpdateBuilder {
    fn new(pk: String, sk: String) -> Self {
        UpdateBuilder {
            pk,
            sk,
            set: Vec::new(),
            add: Vec::new(),
            names: HashMap::new(),
            values: HashMap::new(),
            condition: None,
        }
    }

    fn placeholder(&mut self, attr: &str, v: AttributeValue) -> (String, String) {
        let k = self.names.len();
        let (name, value) = (format!("#a{k}"), format!(":v{k}"));
        self.names.insert(name.clone(), attr.to_string());
        self.values.insert(value.clone(), v);
        (name, value)
    }

    fn set(&mut self, attr: &str, v: AttributeValue) {
        let (name, value) = self.placeholder(attr, v);
        self.set.push(format!("{name} = {value}"));
    }

    fn add(&mut self, attr: &str, by: u64) {
        let (name, value) = self.placeholder(attr, n(by));
        self.add.push(format!("{name} {value}"));
    }

    fn build(self, table: &str) -> Result<TransactWriteItem, StoreError> {
        let mut expr = String::new();
        if !self.set.is_empty() {
            expr.push_str(&format!("SET {}", self.set.join(", ")));
        }
        if !self.add.is_empty() {
            if !expr.is_empty() {
                expr.push(' ');
            }
            expr.push_str(&format!("ADD {}", self.add.join(", ")));
        }
        let update = Update::builder()
            .table_name(table)
            .key("pk", s(self.pk))
            .key("sk", s(self.sk))
            .update_expression(expr)
            .set_expression_attribute_names(Some(self.names))
            .set_expression_attribute_values(Some(self.values))
            .set_condition_expression(self.condition)
            .build()
            .map_err(|e| StoreError::Permanent(format!("transaction item: {e}")))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// The transaction items of one change (the state item first).
fn transaction(
    table: &str,
    id: &ShipmentId,
    version: u64,
    update: &AggregateUpdate,
    had_exception: bool,
) -> Result<Vec<TransactWriteItem>, StoreError> {
    let mut items = Vec::with_capacity(3);
    let mut state = UpdateBuilder::new(id.pk(), STATE_SK.to_string());
    state.set("applied_version", n(version));
    if update.entered_exception {
        state.set("exception", AttributeValue::Bool(true));
    }
    let (name, value) = state.placeholder("applied_version", n(version));
    state.condition = Some(format!("attribute_not_exists({name}) OR {name} < {value}"));
    items.push(state.build(table)?);

    if let Some(f) = &update.finished {
        let k = &f.key;
        let mut route = UpdateBuilder::new(
            route_pk(&k.carrier),
            format!("{}#{}", k.origin, k.destination),
        );
        route.set("carrier", s(&k.carrier));
        route.set("origin", s(&k.origin));
        route.set("destination", s(&k.destination));
        route.add("finished", 1);
        if f.delivered {
            route.add("delivered", 1);
        }
        if had_exception || update.entered_exception {
            route.add("exceptions", 1);
        }
        if let Some(d) = f.delivery_time {
            let mut h = Histogram::new();
            h.record(d);
            for (i, c) in h.counts() {
                route.add(&bucket_attr('d', i), c);
            }
        }
        items.push(route.build(table)?);
    }
    for st in &update.stages {
        let mut stage =
            UpdateBuilder::new(STAGE_PK.to_string(), format!("{}#{}", st.carrier, st.stage));
        stage.set("carrier", s(&st.carrier));
        stage.set("stage", s(st.stage.as_str()));
        for (prefix, sample) in [('t', st.time_in_stage), ('g', st.quiet_gap)] {
            if let Some(d) = sample {
                let mut h = Histogram::new();
                h.record(d);
                for (i, c) in h.counts() {
                    stage.add(&bucket_attr(prefix, i), c);
                }
            }
        }
        items.push(stage.build(table)?);
    }
    Ok(items)
}

impl DynamoAnalytics {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoAnalytics {
            client,
            table: table.into(),
        }
    }

    /// The shipment's state item: (last version counted, went through an exception).
    async fn state(&self, id: &ShipmentId) -> Result<(Option<u64>, bool), StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(id.pk()))
            .key("sk", s(STATE_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        let item = out.item.unwrap_or_default();
        let version = item
            .get("applied_version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok());
        let exception = matches!(item.get("exception"), Some(AttributeValue::Bool(true)));
        Ok((version, exception))
    }

    /// Every item of one partition (optionally only sort keys starting with `prefix`).
    async fn query_all(
        &self,
        pk: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(pk))
                .set_exclusive_start_key(start.take());
            req = match prefix {
                Some(p) => req
                    .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                    .expression_attribute_values(":p", s(p)),
                None => req.key_condition_expression("pk = :pk"),
            };
            let page = req.send().await.map_err(classify)?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    async fn load_routes(
        &self,
        carrier: &str,
        into: &mut HistorySnapshot,
    ) -> Result<(), StoreError> {
        for item in self.query_all(&route_pk(carrier), None).await? {
            let (key, stats) = decode_route(carrier, &item)?;
            into.routes.insert(key, stats);
        }
        Ok(())
    }

    async fn load_stages(
        &self,
        carrier: Option<&str>,
        into: &mut HistorySnapshot,
    ) -> Result<(), StoreError> {
        let prefix = carrier.map(|c| format!("{c}#"));
        for item in self.query_all(STAGE_PK, prefix.as_deref()).await? {
            let (key, stats) = decode_stage(&item)?;
            into.stages.insert(key, stats);
        }
        Ok(())
    }
}

fn bad(pk: &str, reason: impl Into<String>) -> StoreError {
    StoreError::BadRecord(super::BadRecord {
        pk: pk.to_string(),
        reason: reason.into(),
    })
}

fn str_attr<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn num_attr(item: &HashMap<String, AttributeValue>, k: &str) -> u64 {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The histogram stored under `prefix` + three digits. A bucket outside the layout is refused.
fn histogram(
    pk: &str,
    item: &HashMap<String, AttributeValue>,
    prefix: char,
) -> Result<Histogram, StoreError> {
    let pairs = item.iter().filter_map(|(k, v)| {
        let digits = k.strip_prefix(prefix)?;
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let i: usize = digits.parse().ok()?;
        let c: u64 = v.as_n().ok()?.parse().ok()?;
        Some((i, c))
    });
    Histogram::from_counts(pairs.collect::<Vec<_>>()).map_err(|i| {
        bad(
            pk,
            format!("bucket {prefix}{i:03} is outside the {BUCKETS}-bucket layout"),
        )
    })
}

fn decode_route(
    carrier: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<(RouteKey, RouteStats), StoreError> {
    let pk = route_pk(carrier);
    let sk = str_attr(item, "sk").unwrap_or_default();
    let (origin, destination) = sk.split_once('#').ok_or_else(|| {
        bad(
            &pk,
            format!("route sort key `{sk}` is not origin#destination"),
        )
    })?;
    Ok((
        RouteKey {
            carrier: carrier.to_string(),
            origin: origin.to_string(),
            destination: destination.to_string(),
        },
        RouteStats {
            finished: num_attr(item, "finished"),
            delivered: num_attr(item, "delivered"),
            exceptions: num_attr(item, "exceptions"),
            delivery: histogram(&pk, item, 'd')?,
        },
    ))
}

fn decode_stage(
    item: &HashMap<String, AttributeValue>,
) -> Result<((String, Status), StageStats), StoreError> {
    let sk = str_attr(item, "sk").unwrap_or_default();
    let (carrier, stage) = sk.rsplit_once('#').ok_or_else(|| {
        bad(
            STAGE_PK,
            format!("stage sort key `{sk}` is not carrier#stage"),
        )
    })?;
    let stage: Status = stage
        .parse()
        .map_err(|e: crate::domain::status::UnknownStatus| bad(STAGE_PK, e.to_string()))?;
    Ok((
        (carrier.to_string(), stage),
        StageStats {
            time_in_stage: histogram(STAGE_PK, item, 't')?,
            quiet_gap: histogram(STAGE_PK, item, 'g')?,
        },
    ))
}

impl AnalyticsStore for DynamoAnalytics {
    async fn count(
        &self,
        id: &ShipmentId,
        version: u64,
        update: &AggregateUpdate,
    ) -> Result<Counted, StoreError> {
        if update.is_empty() {
            return Ok(Counted::Nothing);
        }
        // Whether a finishing parcel counts as an exception depends on its earlier changes,
        // which its state item remembers. Read only when needed: most changes do not finish.
        let mut had_exception = false;
        if update.finished.is_some() {
            let (applied, exception) = self.state(id).await?;
            if applied.is_some_and(|v| v >= version) {
                return Ok(Counted::AlreadyCounted);
            }
            had_exception = exception;
        }
        let items = transaction(&self.table, id, version, update, had_exception)?;
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match res {
            Ok(_) => Ok(Counted::Added),
            Err(e) => {
                let code = e.as_service_error().and_then(|se| {
                    aws_sdk_dynamodb::error::ProvideErrorMetadata::code(se).map(str::to_string)
                });
                let err = classify(e);
                // A cancelled transaction: the only condition is the state item's version. If
                // it now holds this version or a later one, this is a redelivery; otherwise the
                // cancellation was a conflict with a concurrent write, worth retrying.
                if code.as_deref() == Some("TransactionCanceledException") {
                    let (applied, _) = self.state(id).await?;
                    if applied.is_some_and(|v| v >= version) {
                        return Ok(Counted::AlreadyCounted);
                    }
                    return Err(StoreError::Retryable(err.to_string()));
                }
                Err(err)
            }
        }
    }

    async fn load_history(&self) -> Result<HistorySnapshot, StoreError> {
        let mut h = HistorySnapshot::default();
        self.load_stages(None, &mut h).await?;
        // Every finished parcel also closed a stage of its carrier on the same change, so the
        // stage partition lists every carrier that has routes.
        for carrier in h.carriers() {
            self.load_routes(&carrier, &mut h).await?;
        }
        Ok(h)
    }

    async fn load_carrier_history(&self, carrier: &str) -> Result<HistorySnapshot, StoreError> {
        let mut h = HistorySnapshot::default();
        self.load_routes(carrier, &mut h).await?;
        self.load_stages(Some(carrier), &mut h).await?;
        Ok(h)
    }
}

// ---------------------------------------------------------------------------------------------
// In memory (handler tests)
// ---------------------------------------------------------------------------------------------

/// The same counting rules in memory, for handler tests.
#[derive(Default)]
pub struct MemoryAnalytics {
    pub history: Mutex<HistorySnapshot>,
    /// Shipment pk → (last version counted, went through an exception).
    pub state: Mutex<HashMap<String, (u64, bool)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AnalyticsStore for MemoryAnalytics {
    async fn count(
        &self,
        id: &ShipmentId,
        version: u64,
        update: &AggregateUpdate,
    ) -> Result<Counted, StoreError> {
        if update.is_empty() {
            return Ok(Counted::Nothing);
        }
        let mut state = lock(&self.state);
        let entry = state.entry(id.pk()).or_insert((0, false));
        if entry.0 >= version && entry.0 > 0 {
            return Ok(Counted::AlreadyCounted);
        }
        let had_exception = entry.1;
        *entry = (version, had_exception || update.entered_exception);
        let mut h = lock(&self.history);
        if let Some(f) = &update.finished {
            let r = h.routes.entry(f.key.clone()).or_default();
            r.finished += 1;
            r.delivered += u64::from(f.delivered);
            r.exceptions += u64::from(had_exception || update.entered_exception);
            if let Some(d) = f.delivery_time {
                r.delivery.record(d);
            }
        }
        for st in &update.stages {
            let s = h.stages.entry((st.carrier.clone(), st.stage)).or_default();
            if let Some(d) = st.time_in_stage {
                s.time_in_stage.record(d);
            }
            if let Some(d) = st.quiet_gap {
                s.quiet_gap.record(d);
            }
        }
        Ok(Counted::Added)
    }

    async fn load_history(&self) -> Result<HistorySnapshot, StoreError> {
        Ok(lock(&self.history).clone())
    }

    async fn load_carrier_history(&self, carrier: &str) -> Result<HistorySnapshot, StoreError> {
        let h = lock(&self.history);
        Ok(HistorySnapshot {
            routes: h
                .routes
                .iter()
                .filter(|(k, _)| k.carrier == carrier)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            stages: h
                .stages
                .iter()
                .filter(|((c, _), _)| c == carrier)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::stats::{RouteDelta, StageDelta};
    use chrono::Duration;

    fn update(finished: bool, exception: bool) -> AggregateUpdate {
        AggregateUpdate {
            finished: finished.then(|| RouteDelta {
                key: RouteKey {
                    carrier: "YTO".into(),
                    origin: "浙江".into(),
                    destination: "北京".into(),
                },
                delivered: true,
                delivery_time: Some(Duration::hours(30)),
            }),
            stages: vec![StageDelta {
                carrier: "YTO".into(),
                stage: Status::InTransit,
                time_in_stage: Some(Duration::hours(20)),
                quiet_gap: Some(Duration::hours(4)),
            }],
            entered_exception: exception,
        }
    }

    #[test]
    fn the_transaction_guards_the_version_and_adds_one_bucket_per_sample() {
        let id = ShipmentId::parse("YTO", "YT7412345678901").unwrap();
        let items = transaction("t", &id, 7, &update(true, false), true).unwrap();
        assert_eq!(items.len(), 3);
        let state = items[0].update().unwrap();
        assert_eq!(state.key()["sk"], s(STATE_SK));
        let cond = state.condition_expression().unwrap();
        assert!(cond.starts_with("attribute_not_exists(#a"), "{cond}");
        assert!(state
            .expression_attribute_values()
            .unwrap()
            .values()
            .any(|v| *v == n(7)));
        let route = items[1].update().unwrap();
        assert_eq!(route.key()["pk"], s("STATS#ROUTE#YTO"));
        assert_eq!(route.key()["sk"], s("浙江#北京"));
        let names: Vec<&String> = route
            .expression_attribute_names()
            .unwrap()
            .values()
            .collect();
        for want in ["finished", "delivered", "exceptions"] {
            assert!(
                names.iter().any(|n| n.as_str() == want),
                "{want}: {names:?}"
            );
        }
        let bucket = crate::domain::stats::bucket_of(30.0 * 60.0);
        assert!(names.contains(&&bucket_attr('d', bucket)));
        let stage = items[2].update().unwrap();
        assert_eq!(stage.key()["sk"], s("YTO#InTransit"));
        let expr = stage.update_expression();
        assert!(expr.starts_with("SET ") && expr.contains(" ADD "), "{expr}");
    }

    #[test]
    fn stored_items_decode_and_foreign_buckets_are_refused() {
        let mut item: HashMap<String, AttributeValue> = HashMap::new();
        item.insert("sk".into(), s("浙江#北京"));
        item.insert("finished".into(), n(3));
        item.insert("delivered".into(), n(2));
        item.insert("exceptions".into(), n(1));
        item.insert("d090".into(), n(2));
        item.insert("destination".into(), s("北京"));
        let (k, r) = decode_route("YTO", &item).unwrap();
        assert_eq!(
            (k.origin.as_str(), k.destination.as_str()),
            ("浙江", "北京")
        );
        assert_eq!((r.finished, r.delivered, r.exceptions), (3, 2, 1));
        assert_eq!(r.delivery.counts().collect::<Vec<_>>(), vec![(90, 2)]);
        item.insert("d999".into(), n(1));
        assert!(matches!(
            decode_route("YTO", &item),
            Err(StoreError::BadRecord(_))
        ));

        let mut st: HashMap<String, AttributeValue> = HashMap::new();
        st.insert("sk".into(), s("JTSD#OutForDelivery"));
        st.insert("g050".into(), n(4));
        st.insert("stage".into(), s("OutForDelivery"));
        let ((c, stage), stats) = decode_stage(&st).unwrap();
        assert_eq!((c.as_str(), stage), ("JTSD", Status::OutForDelivery));
        assert_eq!(stats.quiet_gap.total(), 4);
        st.insert("sk".into(), s("JTSD#Teleported"));
        assert!(decode_stage(&st).is_err());
    }

    #[tokio::test]
    async fn memory_counts_each_version_once_and_remembers_exceptions() {
        let m = MemoryAnalytics::default();
        let id = ShipmentId::parse("YTO", "YT7412345678901").unwrap();
        assert_eq!(
            m.count(&id, 3, &AggregateUpdate::default()).await.unwrap(),
            Counted::Nothing
        );
        assert_eq!(
            m.count(&id, 4, &update(false, true)).await.unwrap(),
            Counted::Added
        );
        assert_eq!(
            m.count(&id, 4, &update(false, true)).await.unwrap(),
            Counted::AlreadyCounted
        );
        assert_eq!(
            m.count(&id, 9, &update(true, false)).await.unwrap(),
            Counted::Added
        );
        let h = m.load_history().await.unwrap();
        let r = h.route("YTO", None, None);
        assert_eq!((r.finished, r.delivered, r.exceptions), (1, 1, 1));
        assert_eq!(
            h.stages[&("YTO".to_string(), Status::InTransit)]
                .quiet_gap
                .total(),
            2
        );
        assert!(m
            .load_carrier_history("SF")
            .await
            .unwrap()
            .routes
            .is_empty());
    }
}

/// The history a long-lived container holds: replaced whole by a refresh, read by every check
/// (the tracker's stall and delay thresholds follow it as deliveries land).
#[derive(Default)]
pub struct SharedHistory {
    held: std::sync::RwLock<HistorySnapshot>,
    loaded: std::sync::atomic::AtomicBool,
    first_load: tokio::sync::Notify,
}

impl SharedHistory {
    pub fn replace(&self, history: HistorySnapshot) {
        // A poisoned lock means a reader panicked; the snapshot itself is plain data.
        match self.held.write() {
            Ok(mut held) => *held = history,
            Err(poisoned) => *poisoned.into_inner() = history,
        }
        self.release_first_load_waiters();
    }

    fn release_first_load_waiters(&self) {
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        self.first_load.notify_waiters();
    }

    /// Wait (at most `max`) until the history has been loaded once. A container's first
    /// decisions must not be taken without the history its other containers decide with: a
    /// push decided without it would clear a `late` flag the next poll raises again (a second
    /// alert). On Lambda the background load only runs during an invocation, so the handler
    /// waits here before its first decision; afterwards this returns at once.
    pub async fn wait_loaded(&self, max: std::time::Duration) {
        use std::sync::atomic::Ordering;
        if self.loaded.load(Ordering::Acquire) {
            return;
        }
        let notified = self.first_load.notified();
        if self.loaded.load(Ordering::Acquire) {
            return;
        }
        if tokio::time::timeout(max, notified).await.is_err() {
            tracing::warn!(
                waited_ms = max.as_millis() as u64,
                "delivery history not loaded yet; deciding on what is held"
            );
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HistorySnapshot> {
        self.held.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every history [`SharedHistory::refreshed`] made in this process, for [`history_loaded`].
static LIVE: std::sync::Mutex<Vec<std::sync::Weak<SharedHistory>>> =
    std::sync::Mutex::new(Vec::new());

/// Wait (at most `max` each) until every refreshed history of this process has loaded once:
/// what a function's handler awaits before its decisions ([`SharedHistory::wait_loaded`]).
pub async fn history_loaded(max: std::time::Duration) {
    let live: Vec<std::sync::Arc<SharedHistory>> = LIVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    for h in live {
        h.wait_loaded(max).await;
    }
}

/// How often a container re-reads the delivery history.
pub const HISTORY_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

impl SharedHistory {
    /// The history `store` holds, loaded now and every [`HISTORY_REFRESH`] in the background
    /// (a few Queries on the `STATS#` partitions), for every decision a container takes (the
    /// tracker's checks and the api's pushes alike). Until the first load, and while a load
    /// fails, decisions use what is held (at first: the stages' fallbacks). Needs a Tokio runtime.
    pub fn refreshed<A: AnalyticsStore + 'static>(store: A) -> std::sync::Arc<SharedHistory> {
        let shared = std::sync::Arc::new(SharedHistory::default());
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(std::sync::Arc::downgrade(&shared));
        let target = shared.clone();
        tokio::spawn(async move {
            loop {
                match store.load_history().await {
                    Ok(h) => target.replace(h),
                    Err(e) => {
                        tracing::warn!(error = %e, "delivery history not refreshed");
                        // A failed first load must not hold every invocation: decide on what
                        // is held (the fallbacks) until a refresh succeeds.
                        target.release_first_load_waiters();
                    }
                }
                tokio::time::sleep(HISTORY_REFRESH).await;
            }
        });
        shared
    }
}

impl crate::domain::StageHistory for SharedHistory {
    fn quiet_gap_quantile(
        &self,
        carrier: &str,
        stage: Status,
        q: f64,
    ) -> Option<(chrono::Duration, u64)> {
        self.read().quiet_gap_quantile(carrier, stage, q)
    }
    fn delivery_time_quantile(
        &self,
        carrier: &str,
        origin: Option<&str>,
        destination: Option<&str>,
        q: f64,
    ) -> Option<(chrono::Duration, u64)> {
        self.read()
            .delivery_time_quantile(carrier, origin, destination, q)
    }
}

#[cfg(test)]
mod shared_history_tests {
    use super::*;
    use crate::domain::StageHistory;

    #[test]
    fn a_refresh_replaces_what_checks_read() {
        let shared = SharedHistory::default();
        assert_eq!(
            shared.quiet_gap_quantile("ZTO", Status::InTransit, 0.95),
            None
        );
        let mut h = HistorySnapshot::default();
        let mut stage = StageStats::default();
        for m in [60, 120, 240] {
            stage.quiet_gap.record(chrono::Duration::minutes(m));
        }
        h.stages.insert(("ZTO".into(), Status::InTransit), stage);
        shared.replace(h);
        let (_, n) = shared
            .quiet_gap_quantile("ZTO", Status::InTransit, 0.95)
            .expect("history after the refresh");
        assert_eq!(n, 3);
    }
}
