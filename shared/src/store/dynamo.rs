//! DynamoDB adapter of the store ports.

use super::record::{
    EventRecord, SchedRecord, ShipmentRecord, WatermarkRecord, META, SCHED, WATERMARK_PK,
};
use super::{
    Claim, DueEntry, DueIndex, DuePosition, ItemKey, Ledger, Saved, ShipmentStore, StoreError,
    Watermarks, WriteKind,
};
use crate::domain::{fmt_time, EventKey, Shipment, ShipmentId, TraceEvent};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, PutRequest, ReturnValuesOnConditionCheckFailure,
    WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;

pub const DUE_INDEX: &str = "due-index";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    due_shards: u32,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>, due_shards: u32) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            due_shards: due_shards.max(1),
        }
    }
    pub fn table(&self) -> &str {
        &self.table
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// Classify an SDK failure once: lost condition → Conflict; throttling, 5xx, timeouts → Retryable.
pub(crate) fn classify<E>(
    err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let f = crate::aws_error::read(&err);
    match f.code.as_str() {
        "ConditionalCheckFailedException" | "TransactionConflictException" => {
            StoreError::Conflict(f.message)
        }
        _ if f.transient => StoreError::Retryable(f.message),
        _ => StoreError::Permanent(f.message),
    }
}

fn to_item<T: serde::Serialize>(v: &T) -> Result<HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(v).map_err(|e| StoreError::Permanent(format!("encode: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(
    item: HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    let pk = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    serde_dynamo::from_item(item).map_err(|e| {
        super::BadRecord {
            pk,
            reason: e.to_string(),
        }
        .into()
    })
}

fn key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

impl ShipmentStore for DynamoStore {
    /// [`ShipmentStore::get_many`] of one: one `BatchGetItem` of its `META` and `SCHED` items.
    /// (A Query cannot name two sort keys; one over `META`..`SCHED` would read the `NOTE#`
    /// ledger items between them too.)
    async fn get(&self, id: &ShipmentId) -> Result<Option<Shipment>, StoreError> {
        Ok(self.get_many(std::slice::from_ref(id)).await?.remove(id))
    }

    /// One `BatchGetItem` per 50 ids (their `META` and `SCHED` items, strongly consistent),
    /// unprocessed keys asked again with back-off; each `META` with its `SCHED` laid over it.
    async fn get_many(
        &self,
        ids: &[ShipmentId],
    ) -> Result<HashMap<ShipmentId, Shipment>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(50) {
            let mut keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .flat_map(|id| [key(id.pk(), META), key(id.pk(), SCHED)])
                .collect();
            let mut heads: HashMap<String, ShipmentRecord> = HashMap::new();
            let mut scheds: HashMap<String, SchedRecord> = HashMap::new();
            for attempt in 0..6u32 {
                if keys.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
                }
                let ask = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Permanent(e.to_string()))?;
                let answer = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ask)
                    .send()
                    .await
                    .map_err(classify)?;
                for item in answer
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    match item
                        .get("sk")
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str)
                    {
                        Some(SCHED) => {
                            let rec: SchedRecord = decode(item)?;
                            scheds.insert(rec.pk.clone(), rec);
                        }
                        _ => {
                            let rec: ShipmentRecord = decode(item)?;
                            heads.insert(rec.pk.clone(), rec);
                        }
                    }
                }
                keys = answer
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
            if !keys.is_empty() {
                return Err(StoreError::Retryable(format!(
                    "{} shipment items still unread after retries",
                    keys.len()
                )));
            }
            // A SCHED item without its META (none is written so) is no shipment.
            for (pk, head) in heads {
                let shipment = super::record::shipment_from_items(head, scheds.get(&pk))?;
                out.insert(shipment.id.clone(), shipment);
            }
        }
        Ok(out)
    }

    async fn create(&self, shipment: &Shipment) -> Result<bool, StoreError> {
        let item = to_item(&ShipmentRecord::from_shipment(shipment, self.due_shards))?;
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res.map_err(classify) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn trace(
        &self,
        id: &ShipmentId,
        limit: usize,
    ) -> Result<Vec<(EventKey, TraceEvent)>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :evt)")
                .expression_attribute_values(":pk", s(id.pk()))
                .expression_attribute_values(":evt", s("EVT#"))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            for item in page.items.unwrap_or_default() {
                let rec: EventRecord =
                    serde_dynamo::from_item(item).map_err(|e| super::BadRecord {
                        pk: id.pk(),
                        reason: e.to_string(),
                    })?;
                out.push(rec.into_event()?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn save(
        &self,
        held: &Shipment,
        updated: &Shipment,
        new_events: &[(EventKey, TraceEvent)],
    ) -> Result<Saved, StoreError> {
        let kind = match new_events.is_empty() {
            true => WriteKind::of(held, updated),
            false => WriteKind::Full,
        };
        let mut next = updated.clone();
        next.sched_version = held.sched_version + 1;
        next.version = match kind {
            WriteKind::Hot => held.version,
            WriteKind::Full => held.version + 1,
        };

        if kind == WriteKind::Full {
            // Trace lines first: their keys are deterministic, so a retried or lost-race write
            // of the same lines rewrites identical items and never double-records an event.
            let mut requests = Vec::with_capacity(new_events.len());
            for (k, e) in new_events {
                let item = to_item(&EventRecord::new(&next.id, k, e, &next.provider))?;
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| StoreError::Permanent(e.to_string()))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            for chunk in requests.chunks(25) {
                self.batch_write(chunk.to_vec()).await?;
            }
        }

        // SCHED, conditional on its `sv`: the hot write's only item, and the lock a full write
        // takes before META (a writer that read the shipment before it loses here).
        let item = to_item(&SchedRecord::from_shipment(&next, self.due_shards))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::None);
        let put = if held.sched_version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("#sv = :sv")
                .expression_attribute_names("#sv", "sv")
                .expression_attribute_values(
                    ":sv",
                    AttributeValue::N(held.sched_version.to_string()),
                )
        };
        put.send().await.map_err(classify)?;

        if kind == WriteKind::Full {
            // META, whole (hot fields too, as decided: the stream's consumers see one consistent
            // shipment), without the due-index keys. A shipment created with them on META (or
            // written before the split) has two index entries between the SCHED write above
            // and this one: at worst a duplicate check, never a lost one. Should this write
            // fail, SCHED is ahead of META (`version`) and the next write is a full one.
            let item =
                to_item(&ShipmentRecord::from_shipment(&next, self.due_shards).without_due_keys())?;
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(
                    ":expected",
                    AttributeValue::N(held.version.to_string()),
                )
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::None)
                .send()
                .await
                .map_err(classify)?;
        }
        Ok(Saved {
            kind,
            version: next.version,
            sched_version: next.sched_version,
        })
    }
}

impl DynamoStore {
    /// BatchWriteItem with the unprocessed items retried (bounded, with back-off).
    async fn batch_write(&self, mut pending: Vec<WriteRequest>) -> Result<(), StoreError> {
        for attempt in 0..6u32 {
            if pending.is_empty() {
                return Ok(());
            }
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(classify)?;
            pending = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&self.table))
                .unwrap_or_default();
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            }
        }
        if pending.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Retryable(format!(
                "{} trace lines still unprocessed after retries",
                pending.len()
            )))
        }
    }
}

impl DueIndex for DynamoStore {
    fn shards(&self) -> u32 {
        self.due_shards
    }

    async fn due_between(
        &self,
        shard: u32,
        after: Option<&DuePosition>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueEntry>, StoreError> {
        let due_pk = format!("DUE#{shard}");
        let until = fmt_time(until);
        // The lower bound. Inside a second (`pk` given): that second, and DynamoDB's own paging
        // resumes after the entry (a GSI's ExclusiveStartKey is the index key plus the table
        // key; it must lie within the key condition). After a whole second: from the next one
        // (`due_sk` is whole-second RFC 3339, so the next second is the next possible value).
        let (from, mut start) = match after {
            None => (None, None),
            Some(DuePosition {
                due_sk,
                key: Some(ItemKey { pk, sk }),
            }) => {
                let key = HashMap::from([
                    ("due_pk".to_string(), s(&due_pk)),
                    ("due_sk".to_string(), s(due_sk)),
                    ("pk".to_string(), s(pk)),
                    ("sk".to_string(), s(sk)),
                ]);
                (Some(due_sk.clone()), Some(key))
            }
            Some(DuePosition { due_sk, key: None }) => {
                let next = crate::domain::parse_time(due_sk)
                    .and_then(|t| t.checked_add_signed(chrono::Duration::seconds(1)))
                    .map(fmt_time)
                    // Not ours (every due time is written by fmt_time): include that second again
                    // rather than skip anything.
                    .unwrap_or_else(|| due_sk.clone());
                (Some(next), None)
            }
        };
        if from.as_ref().is_some_and(|f| *f > until) {
            // An empty range (BETWEEN with its bounds crossed is a ValidationException).
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .expression_attribute_values(":p", s(&due_pk))
                .expression_attribute_values(":until", s(&until))
                .limit(((limit - out.len()).min(1000)) as i32)
                .set_exclusive_start_key(start.take());
            q = match &from {
                None => q.key_condition_expression("due_pk = :p AND due_sk <= :until"),
                Some(from) => q
                    .key_condition_expression("due_pk = :p AND due_sk BETWEEN :from AND :until")
                    .expression_attribute_values(":from", s(from)),
            };
            let page = q.send().await.map_err(classify)?;
            for item in page.items() {
                let attr = |k: &str| item.get(k).and_then(|v| v.as_s().ok());
                match (attr("pk"), attr("sk"), attr("due_sk")) {
                    (Some(pk), Some(sk), Some(due)) => match ShipmentId::from_pk(pk) {
                        Ok(id) => out.push(DueEntry {
                            id,
                            sk: sk.clone(),
                            due_sk: due.clone(),
                        }),
                        Err(e) => {
                            tracing::warn!(pk = %pk, error = %e, "due index entry with a bad key skipped")
                        }
                    },
                    _ => tracing::warn!("due index entry without pk/sk/due_sk skipped"),
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn watermarks(&self) -> Result<Watermarks, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(WATERMARK_PK))
            .key("sk", s(META))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        let Some(item) = out.item else {
            return Ok(Watermarks::default());
        };
        let rec: WatermarkRecord = serde_dynamo::from_item(item).map_err(|e| super::BadRecord {
            pk: WATERMARK_PK.to_string(),
            reason: e.to_string(),
        })?;
        Ok(rec.into_watermarks()?)
    }

    async fn advance(&self, expected_run: u64, next: &Watermarks) -> Result<bool, StoreError> {
        let mut next = next.clone();
        next.run = expected_run + 1;
        // When the write lands but its answer is lost, the SDK sends the same request again: the
        // token lets that retry recognise its own write instead of reporting the race lost.
        let token = claim_token();
        let item = to_item(&WatermarkRecord::from_watermarks(&next, &token))?;
        let condition = if expected_run == 0 {
            "attribute_not_exists(pk) OR (#run = :next AND #token = :token)"
        } else {
            "#run = :expected OR (#run = :next AND #token = :token)"
        };
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#run", "run")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":next", AttributeValue::N(next.run.to_string()))
            .expression_attribute_values(":token", s(&token));
        if expected_run > 0 {
            put = put.expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_run.to_string()),
            );
        }
        match put.send().await.map_err(classify) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A token unique to one claim attempt: process id, wall-clock nanoseconds and a counter.
fn claim_token() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

impl Ledger for DynamoStore {
    async fn claim(
        &self,
        id: &ShipmentId,
        note: &str,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> Result<Claim, StoreError> {
        let stale =
            now - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::minutes(5));
        // This claim's owner token. When the write succeeds but its answer is lost, the SDK's
        // retry sends the same request again: the condition recognises the claim as its own
        // instead of reporting it in flight elsewhere (which would hold the send back until the
        // claim goes stale).
        let owner = claim_token();
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(id.pk()))
            .item("sk", s(note))
            .item("state", s("sending"))
            .item("claimed_at", s(fmt_time(now)))
            .item("owner", s(&owner))
            .condition_expression(
                "attribute_not_exists(pk) OR #st = :failed OR (#st = :sending AND (claimed_at < :stale OR #owner = :owner))",
            )
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(&owner))
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":stale", s(fmt_time(stale)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(Claim::Claimed),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                let state = match se.err() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => c
                        .item()
                        .and_then(|i| i.get("state"))
                        .and_then(|v| v.as_s().ok())
                        .cloned(),
                    _ => None,
                };
                Ok(match state.as_deref() {
                    Some("sending") => Claim::InFlight,
                    _ => Claim::AlreadySent,
                })
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn complete(
        &self,
        id: &ShipmentId,
        note: &str,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(id.pk()))
            .key("sk", s(note))
            .update_expression("SET #st = :sent, message_id = :mid, sent_at = :now")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":sent", s("sent"))
            .expression_attribute_values(":mid", s(message_id))
            .expression_attribute_values(":now", s(fmt_time(now)))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn release(&self, id: &ShipmentId, note: &str, reason: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(id.pk()))
            .key("sk", s(note))
            .update_expression("SET #st = :failed, last_error = :why")
            .condition_expression("#st = :sending")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":why", s(reason))
            .send()
            .await
            .map_err(classify)
            .map(|_| ())
            .or_else(|e| match e {
                StoreError::Conflict(_) => Ok(()),
                e => Err(e),
            })
    }
}
