//! The item shapes of the single table, and their mapping to and from the domain.
//! One codec serves the SDK (`serde_dynamo` ↔ aws-sdk-dynamodb) and stream images
//! (`serde_dynamo::Item` in aws_lambda_events), so the notifier reads exactly what the tracker wrote.

use crate::domain::{
    fmt_time, parse_time, EventKey, LineId, Locale, Priority, Recipient, SealedPhone, Shipment,
    ShipmentId, Status, SubStatus, TraceEvent,
};
use serde::{Deserialize, Serialize};

pub const META: &str = "META";
/// The sort key of a shipment's hot item ([`SchedRecord`]).
pub const SCHED: &str = "SCHED";

/// The shipment in a stream image (`Ok(None)`: no image, as the old image of an insert). For
/// the stream consumers (notifier, analytics); the error says what did not decode.
pub fn shipment_in_image(image: &serde_dynamo::Item) -> Result<Option<Shipment>, String> {
    if image.is_empty() {
        return Ok(None);
    }
    let rec: ShipmentRecord = serde_dynamo::from_item(image.clone()).map_err(|e| e.to_string())?;
    rec.into_shipment().map(Some).map_err(|e| e.to_string())
}

/// Run `each` over a stream batch's records in order and report the first failure, as a stream
/// consumer with `ReportBatchItemFailures` must: the records of a shard are retried from that
/// sequence number on, in order, so the batch stops there (what follows is redelivered). Each
/// record runs in a span with its event id and sequence number; a failure is logged with its
/// error. The consumers make the redelivery of records before the failure harmless (the
/// notifier's ledger, the analytics' once-per-version marker).
pub async fn each_in_order<'a, F, Fut, E>(
    event: &'a aws_lambda_events::event::dynamodb::Event,
    mut each: F,
) -> aws_lambda_events::event::streams::DynamoDbEventResponse
where
    F: FnMut(&'a aws_lambda_events::event::dynamodb::EventRecord) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    use tracing::Instrument;
    let mut response = aws_lambda_events::event::streams::DynamoDbEventResponse::default();
    for record in &event.records {
        let seq = record.change.sequence_number.clone().unwrap_or_default();
        let span = tracing::info_span!("record", event_id = %record.event_id, sequence = %seq);
        if let Err(e) = each(record).instrument(span).await {
            tracing::error!(error = %e, sequence = %seq, "record failed; the stream retries from here");
            let mut f = aws_lambda_events::event::streams::DynamoDbBatchItemFailure::default();
            f.item_identifier = Some(seq);
            response.batch_item_failures.push(f);
            break;
        }
    }
    response
}

/// Whether a stream record's keys name a shipment head (`pk = SHIP#…`, `sk = META`; not its
/// `SCHED` item, which a check without news writes alone). Order heads and sync watermarks
/// share `sk = META` in the same table.
pub fn is_shipment_head(keys: &serde_dynamo::Item) -> bool {
    let key = |k: &str| match keys.get(k) {
        Some(serde_dynamo::AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    };
    key("sk") == Some(META) && key("pk").is_some_and(|pk| pk.starts_with("SHIP#"))
}

/// The `META` item of a shipment partition, attribute for attribute. As created it carries the
/// due-index keys; a full write puts it without them (they live in [`SchedRecord`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShipmentRecord {
    pub pk: String,
    pub sk: String,
    pub carrier: String,
    pub number: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_status: Option<String>,
    pub status_changed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<String>,
    /// The newest line's identity ([`crate::domain::LineId`], hex). Items written before lines
    /// had identities hold `last_event_seq` instead (read, never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub last_event_seq: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_desc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_code: Option<String>,
    #[serde(default)]
    pub event_count: u32,
    /// The identities of the lines held, concatenated ([`crate::domain::check::encode_line_ids`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub line_ids: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_at: Option<String>,
    /// Due-index partition (`DUE#n`): present only while the shipment needs checking (sparse
    /// index), and only on an item as created (or written before the split): the first write
    /// moves the keys to the `SCHED` item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_pk: Option<String>,
    /// Due-index sort key: the next check time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_sk: Option<String>,
    pub priority: String,
    pub provider: String,
    /// The recipient's phone, sealed (`pw1.<last4>.…`, see `crate::crypto`). Never in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_enc: Option<String>,
    #[serde(default)]
    pub locale: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_ref: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_provider: Option<String>,
    pub version: u64,
    /// Origin and destination province, pickup time (analytics; see `domain::geo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picked_up_at: Option<String>,
}

/// A stored item that does not decode into a shipment.
#[derive(Debug, thiserror::Error)]
#[error("item {pk} is not a valid shipment: {reason}")]
pub struct BadRecord {
    pub pk: String,
    pub reason: String,
}

impl ShipmentRecord {
    /// The item as [`super::ShipmentStore::create`] puts it: with the due-index keys while the
    /// shipment is due. A full write takes them off ([`ShipmentRecord::without_due_keys`]).
    pub fn from_shipment(s: &Shipment, due_shards: u32) -> ShipmentRecord {
        let last = s.last_event.as_ref();
        let next = s.next_check_at.map(fmt_time);
        ShipmentRecord {
            pk: s.id.pk(),
            sk: META.to_string(),
            carrier: s.id.carrier.to_string(),
            number: s.id.number.to_string(),
            status: s.status.to_string(),
            sub_status: s.sub_status.as_ref().map(|x| x.to_string()),
            status_changed_at: fmt_time(s.status_changed_at),
            last_event_at: last.map(|(k, _)| fmt_time(k.time)),
            last_event_id: last.map(|(k, _)| k.id.hex()),
            last_event_seq: None,
            last_event_desc: last.map(|(_, e)| e.description.clone()),
            last_event_location: last.and_then(|(_, e)| e.location.clone()),
            last_event_status: last.and_then(|(_, e)| e.status.map(|st| st.to_string())),
            last_event_code: last.and_then(|(_, e)| e.raw_code.clone()),
            event_count: s.event_count,
            line_ids: crate::domain::check::encode_line_ids(&s.line_ids),
            checked_at: s.checked_at.map(fmt_time),
            due_pk: next
                .as_ref()
                .map(|_| format!("DUE#{}", s.id.due_shard(due_shards))),
            due_sk: next.clone(),
            next_check_at: next,
            priority: s.priority.as_str().to_string(),
            provider: s.provider.clone(),
            phone_enc: s.recipient.phone.as_ref().map(|p| p.as_str().to_string()),
            locale: s.recipient.locale.as_str().to_string(),
            order_ref: s.order_ref.clone(),
            created_at: fmt_time(s.created_at),
            last_error: s.last_error.clone(),
            subscribed_at: s.subscribed_at.map(fmt_time),
            last_push_at: s.last_push_at.map(fmt_time),
            last_provider: s.last_provider.clone(),
            version: s.version,
            origin: s.origin.clone(),
            destination: s.destination.clone(),
            picked_up_at: s.picked_up_at.map(fmt_time),
        }
    }

    /// The item as a full write puts it: the due-index keys are the `SCHED` item's.
    pub fn without_due_keys(mut self) -> ShipmentRecord {
        self.due_pk = None;
        self.due_sk = None;
        self
    }

    /// The shipment as this item alone holds it (no `SCHED` item laid over it: see
    /// [`shipment_from_items`]). [`Shipment::needs_full_write`] says whether it still carries
    /// the due-index keys.
    pub fn into_shipment(self) -> Result<Shipment, BadRecord> {
        let pk = self.pk.clone();
        let bad = |reason: String| BadRecord {
            pk: pk.clone(),
            reason,
        };
        let time = |field: &str, v: &str| {
            parse_time(v).ok_or_else(|| bad(format!("{field} `{v}` is not RFC 3339")))
        };
        let opt_time =
            |field: &str, v: &Option<String>| v.as_deref().map(|v| time(field, v)).transpose();

        let id = ShipmentId::parse(&self.carrier, &self.number).map_err(|e| bad(e.to_string()))?;
        let status: Status = self
            .status
            .parse()
            .map_err(|e: crate::domain::status::UnknownStatus| bad(e.to_string()))?;
        let sub_status = match &self.sub_status {
            Some(s) => Some(s.parse::<SubStatus>().map_err(|e| bad(e.to_string()))?),
            None => None,
        };
        let last_event = match &self.last_event_at {
            Some(at) => {
                let t = time("last_event_at", at)?;
                let ev = TraceEvent {
                    time: t,
                    description: self.last_event_desc.clone().unwrap_or_default(),
                    location: self.last_event_location.clone(),
                    status: self
                        .last_event_status
                        .as_deref()
                        .and_then(|s| s.parse().ok()),
                    raw_code: self.last_event_code.clone(),
                    claimed_time: None,
                };
                let id = match (&self.last_event_id, self.last_event_seq) {
                    (Some(hex), _) => LineId::parse_hex(hex)
                        .ok_or_else(|| bad(format!("last_event_id `{hex}` is not a line id")))?,
                    (None, seq) => LineId(u64::from(seq.unwrap_or(0))),
                };
                Some((EventKey { time: t, id }, ev))
            }
            None => None,
        };
        let phone = match &self.phone_enc {
            Some(p) => Some(SealedPhone::parse(p).map_err(|e| bad(format!("phone_enc: {e}")))?),
            None => None,
        };
        Ok(Shipment {
            status,
            sub_status,
            status_changed_at: time("status_changed_at", &self.status_changed_at)?,
            last_event,
            event_count: self.event_count,
            line_ids: crate::domain::check::decode_line_ids(&self.line_ids)
                .ok_or_else(|| bad("line_ids is not a list of line ids".to_string()))?,
            checked_at: opt_time("checked_at", &self.checked_at)?,
            next_check_at: opt_time("next_check_at", &self.next_check_at)?,
            priority: Priority::parse(&self.priority).unwrap_or_default(),
            provider: self.provider.clone(),
            recipient: Recipient {
                phone,
                locale: Locale::parse(&self.locale).unwrap_or_default(),
            },
            order_ref: self.order_ref.clone(),
            created_at: time("created_at", &self.created_at)?,
            last_error: self.last_error.clone(),
            subscribed_at: opt_time("subscribed_at", &self.subscribed_at)?,
            last_push_at: opt_time("last_push_at", &self.last_push_at)?,
            last_provider: self.last_provider.clone(),
            version: self.version,
            sched_version: 0,
            needs_full_write: self.due_pk.is_some(),
            origin: self.origin.clone(),
            destination: self.destination.clone(),
            picked_up_at: opt_time("picked_up_at", &self.picked_up_at)?,
            id,
        })
    }
}

/// A shipment's hot item: `pk = SHIP#…`, `sk = SCHED`, the fields a check that finds nothing
/// new changes ([`crate::domain::HOT_FIELDS`]) and the due-index keys. A check without news
/// puts this item alone (about 200 bytes: one WRU, whatever the shipment's size), and the
/// stream consumers' filters (`sk = META`) drop its records. Every write of the shipment puts
/// it first, conditional on `sv`: it is the shipment's lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedRecord {
    pub pk: String,
    pub sk: String,
    /// Projected into the due index with `version`, for operators.
    pub carrier: String,
    pub number: String,
    /// The `META` version this schedule goes with: the version read (a hot write) or the one
    /// the full write is putting. Ahead of `META`'s when that write has not landed.
    pub version: u64,
    /// Schedule version: bumped by every write of the shipment.
    pub sv: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_at: Option<String>,
    /// Due-index keys, present only while the shipment needs checking (sparse index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_sk: Option<String>,
}

impl SchedRecord {
    /// The item for `s` at its `version` and `sched_version` (the caller has bumped them).
    pub fn from_shipment(s: &Shipment, due_shards: u32) -> SchedRecord {
        let next = s.next_check_at.map(fmt_time);
        SchedRecord {
            pk: s.id.pk(),
            sk: SCHED.to_string(),
            carrier: s.id.carrier.to_string(),
            number: s.id.number.to_string(),
            version: s.version,
            sv: s.sched_version,
            checked_at: s.checked_at.map(fmt_time),
            due_pk: next
                .as_ref()
                .map(|_| format!("DUE#{}", s.id.due_shard(due_shards))),
            due_sk: next.clone(),
            next_check_at: next,
        }
    }

    /// Lay the hot fields over the shipment read from `META`.
    pub fn overlay(&self, s: &mut Shipment) -> Result<(), BadRecord> {
        let time = |field: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| {
                    parse_time(t).ok_or_else(|| BadRecord {
                        pk: self.pk.clone(),
                        reason: format!("SCHED {field} `{t}` is not RFC 3339"),
                    })
                })
                .transpose()
        };
        s.checked_at = time("checked_at", &self.checked_at)?;
        s.next_check_at = time("next_check_at", &self.next_check_at)?;
        s.sched_version = self.sv;
        // A full write put this item and its `META` write has not landed: write in full next.
        s.needs_full_write |= self.version != s.version;
        Ok(())
    }
}

/// The shipment from its `META` item and, when it has one, its `SCHED` item.
pub fn shipment_from_items(
    meta: ShipmentRecord,
    sched: Option<&SchedRecord>,
) -> Result<Shipment, BadRecord> {
    let mut s = meta.into_shipment()?;
    if let Some(sched) = sched {
        sched.overlay(&mut s)?;
    }
    Ok(s)
}

/// The scheduler's watermark item: `pk = SCHED#due`, `sk = META`. Outside the stream consumers'
/// filters (`pk` prefix `SHIP#`), so its one write per run wakes nobody.
pub const WATERMARK_PK: &str = "SCHED#due";

/// The watermark item, attribute for attribute (short names: it is rewritten every busy minute
/// and billed per started KB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatermarkRecord {
    pub pk: String,
    pub sk: String,
    pub run: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Unique per write attempt: a retried write whose first answer was lost recognises itself.
    #[serde(default)]
    pub token: String,
    /// Per shard (`"0"`, `"1"`, …).
    #[serde(default)]
    pub shards: std::collections::BTreeMap<String, ShardMarkRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardMarkRecord {
    /// Watermark: due time, and the entry's table key (`w_pk`, `w_sk`) when it stops inside
    /// that second. Items written before `SCHED` items carried entries have no `w_sk`: `META`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w_sk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_w: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_w_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_w_sk: Option<String>,
}

fn position(
    due_sk: &Option<String>,
    pk: &Option<String>,
    sk: &Option<String>,
) -> Option<super::DuePosition> {
    due_sk.as_ref().map(|d| super::DuePosition {
        due_sk: d.clone(),
        key: pk.as_ref().map(|pk| super::ItemKey {
            pk: pk.clone(),
            sk: sk.clone().unwrap_or_else(|| META.to_string()),
        }),
    })
}

impl WatermarkRecord {
    pub fn from_watermarks(w: &super::Watermarks, token: &str) -> WatermarkRecord {
        let shards = w
            .shards
            .iter()
            .map(|(shard, m)| {
                let key = |p: &Option<super::DuePosition>| {
                    p.as_ref().and_then(|p| p.key.clone()).map(|k| (k.pk, k.sk))
                };
                let (w_pk, w_sk) = key(&m.after).unzip();
                let (sweep_w_pk, sweep_w_sk) = key(&m.sweep_after).unzip();
                let rec = ShardMarkRecord {
                    w: m.after.as_ref().map(|p| p.due_sk.clone()),
                    w_pk,
                    w_sk,
                    sweep_to: m.sweep_to.map(fmt_time),
                    sweep_at: m.sweep_at.map(fmt_time),
                    sweep_w: m.sweep_after.as_ref().map(|p| p.due_sk.clone()),
                    sweep_w_pk,
                    sweep_w_sk,
                };
                (shard.to_string(), rec)
            })
            .collect();
        WatermarkRecord {
            pk: WATERMARK_PK.to_string(),
            sk: META.to_string(),
            run: w.run,
            at: w.at.map(fmt_time),
            token: token.to_string(),
            shards,
        }
    }

    /// The watermarks back. A shard key or time that does not parse is an error: the item is
    /// ours alone, so it means corruption, and guessing could skip due checks.
    pub fn into_watermarks(self) -> Result<super::Watermarks, BadRecord> {
        let bad = |reason: String| BadRecord {
            pk: WATERMARK_PK.to_string(),
            reason,
        };
        let time = |field: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| parse_time(t).ok_or_else(|| bad(format!("{field} `{t}` is not RFC 3339"))))
                .transpose()
        };
        let mut shards = std::collections::BTreeMap::new();
        for (key, m) in &self.shards {
            let shard: u32 = key
                .parse()
                .map_err(|_| bad(format!("shard `{key}` is not a number")))?;
            shards.insert(
                shard,
                super::ShardMark {
                    after: position(&m.w, &m.w_pk, &m.w_sk),
                    sweep_to: time("sweep_to", &m.sweep_to)?,
                    sweep_at: time("sweep_at", &m.sweep_at)?,
                    sweep_after: position(&m.sweep_w, &m.sweep_w_pk, &m.sweep_w_sk),
                },
            );
        }
        Ok(super::Watermarks {
            run: self.run,
            at: time("at", &self.at)?,
            shards,
        })
    }
}

/// A trace line item: `pk = SHIP#…`, `sk = EVT#{time}#{line id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub pk: String,
    pub sk: String,
    pub time: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_code: Option<String>,
    /// The time the provider stated for a future-dated line (then `time` is when we saw it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_time: Option<String>,
    pub provider: String,
}

impl EventRecord {
    pub fn new(id: &ShipmentId, key: &EventKey, e: &TraceEvent, provider: &str) -> EventRecord {
        EventRecord {
            pk: id.pk(),
            sk: key.sk(),
            time: fmt_time(e.time),
            description: e.description.clone(),
            location: e.location.clone(),
            status: e.status.map(|s| s.to_string()),
            raw_code: e.raw_code.clone(),
            claimed_time: e.claimed_time.map(fmt_time),
            provider: provider.to_string(),
        }
    }
}

impl EventRecord {
    /// The trace line back, with its key; `None` when the item is not a valid trace line.
    pub fn into_event(self) -> Result<(EventKey, TraceEvent), BadRecord> {
        let bad = |reason: String| BadRecord {
            pk: self.pk.clone(),
            reason,
        };
        let time = parse_time(&self.time)
            .ok_or_else(|| bad(format!("time `{}` is not RFC 3339", self.time)))?;
        // sk = EVT#{time}#{line id} (or a three-digit sequence, before lines had identities)
        let id = self
            .sk
            .rsplit('#')
            .next()
            .and_then(LineId::parse_hex)
            .ok_or_else(|| bad(format!("sort key `{}` names no line", self.sk)))?;
        let claimed_time = match &self.claimed_time {
            Some(c) => Some(
                parse_time(c).ok_or_else(|| bad(format!("claimed_time `{c}` is not RFC 3339")))?,
            ),
            None => None,
        };
        Ok((
            EventKey { time, id },
            TraceEvent {
                time,
                description: self.description,
                location: self.location,
                status: self.status.as_deref().and_then(|s| s.parse().ok()),
                raw_code: self.raw_code,
                claimed_time,
            },
        ))
    }
}

#[cfg(test)]
mod tests {

    /// Three records, the second fails: it is reported by its sequence number and the third
    /// never runs (the stream redelivers it after the failed one).
    #[tokio::test]
    async fn a_batch_stops_at_its_first_failure_and_reports_its_sequence_number() {
        let event: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_str(include_str!("../../../events/analytics/mixed-batch.json"))
                .unwrap();
        let mut seen = Vec::new();
        let resp = each_in_order(&event, |r| {
            let seq = r.change.sequence_number.clone().unwrap_or_default();
            seen.push(seq.clone());
            async move {
                if seen_fails(&seq) {
                    Err(format!("{seq} failed"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        fn seen_fails(seq: &str) -> bool {
            seq == "200000000000000000002"
        }
        assert_eq!(seen, ["100000000000000000001", "200000000000000000002"]);
        let failed: Vec<_> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, [Some("200000000000000000002".to_string())]);
        // All succeed: nothing reported, every record run.
        let mut n = 0;
        let resp = each_in_order(&event, |_| {
            n += 1;
            async { Ok::<(), String>(()) }
        })
        .await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(n, 3);
    }

    use super::*;
    use chrono::TimeZone;

    fn sample() -> Shipment {
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let mut s = Shipment::register(
            ShipmentId::parse("SF", "SF1234567890123").unwrap(),
            Priority::High,
            "kdniao",
            Recipient {
                phone: Some(SealedPhone::parse("pw1.5678.d3JhcHBlZA.bm9uY2U.Y2lwaGVy").unwrap()),
                locale: Locale::En,
            },
            Some("T-1".into()),
            now,
        );
        s.status = Status::OutForDelivery;
        s.sub_status = Some(SubStatus::new("kdniao", "202"));
        let ev = TraceEvent {
            time: now,
            description: "派件中".into(),
            location: Some("北京市".into()),
            status: Some(Status::OutForDelivery),
            raw_code: Some("202".into()),
            claimed_time: None,
        };
        s.last_event = Some((
            EventKey {
                time: now,
                id: crate::domain::LineId(2),
            },
            ev,
        ));
        s.event_count = 7;
        s.subscribed_at = Some(now);
        s.last_push_at = Some(now);
        s.last_provider = Some("kuaidi100".into());
        s.version = 4;
        s.origin = Some("浙江".into());
        s.destination = Some("北京".into());
        s.picked_up_at = Some(now - chrono::Duration::hours(30));
        s
    }

    #[test]
    fn shipment_round_trips_through_the_record_and_a_dynamodb_item() {
        let s = sample();
        let rec = ShipmentRecord::from_shipment(&s, 16);
        assert_eq!(
            rec.due_pk.as_deref(),
            Some(format!("DUE#{}", s.id.due_shard(16)).as_str())
        );
        assert_eq!(rec.due_sk, rec.next_check_at);
        let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(&rec).unwrap();
        assert_eq!(item["version"].as_n().unwrap(), "4");
        // The phone is stored sealed, under its own name; no clear `phone` attribute.
        assert_eq!(
            item["phone_enc"].as_s().unwrap(),
            "pw1.5678.d3JhcHBlZA.bm9uY2U.Y2lwaGVy"
        );
        assert!(!item.contains_key("phone"));
        let back: ShipmentRecord = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back.into_shipment().unwrap(), s);
    }

    #[test]
    fn the_schedule_item_round_trips_and_is_laid_over_meta() {
        let mut s = sample();
        s.checked_at = Some(s.created_at + chrono::Duration::hours(1));
        s.next_check_at = Some(s.created_at + chrono::Duration::hours(3));
        // As created: META carries the due keys, and the next write must move them.
        let created = ShipmentRecord::from_shipment(&s, 16);
        assert!(created.clone().into_shipment().unwrap().needs_full_write);
        // As a full write puts the pair: META without the keys, SCHED with them.
        let mut written = s.clone();
        written.version = 5;
        written.sched_version = 9;
        written.needs_full_write = false;
        let meta = ShipmentRecord::from_shipment(&written, 16).without_due_keys();
        assert_eq!(
            (meta.due_pk.as_deref(), meta.due_sk.as_deref()),
            (None, None)
        );
        let sched = SchedRecord::from_shipment(&written, 16);
        let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(&sched).unwrap();
        assert_eq!(item["sk"].as_s().unwrap(), SCHED);
        assert_eq!(item["sv"].as_n().unwrap(), "9");
        assert_eq!(item["version"].as_n().unwrap(), "5");
        assert_eq!(
            item["due_pk"].as_s().unwrap(),
            &format!("DUE#{}", s.id.due_shard(16))
        );
        assert_eq!(
            item["due_sk"].as_s().unwrap(),
            &fmt_time(s.next_check_at.unwrap())
        );
        let keys: serde_dynamo::Item =
            serde_dynamo::to_item(serde_json::json!({"pk": s.id.pk(), "sk": SCHED})).unwrap();
        assert!(
            !is_shipment_head(&keys),
            "the stream consumers' filters drop it"
        );
        let sched: SchedRecord = serde_dynamo::from_item(item).unwrap();

        // META as of an older full write, the schedule moved since by hot writes.
        let mut stale = written.clone();
        stale.checked_at = None;
        stale.next_check_at = Some(s.created_at);
        let stale = ShipmentRecord::from_shipment(&stale, 16).without_due_keys();
        let read = shipment_from_items(stale.clone(), Some(&sched)).unwrap();
        assert_eq!(read, written);
        // A SCHED put by a full write whose META put has not landed: write in full next.
        let mut ahead = sched.clone();
        ahead.version = 6;
        let read = shipment_from_items(stale, Some(&ahead)).unwrap();
        assert!(read.needs_full_write);
        assert_eq!(read.version, 5);
        // No SCHED item (as created, or written before the split): META alone.
        let alone = shipment_from_items(created, None).unwrap();
        assert_eq!(
            (alone.sched_version, alone.next_check_at),
            (0, s.next_check_at)
        );
    }

    #[test]
    fn a_trace_line_round_trips_through_its_record() {
        let s = sample();
        let (k, e) = s.last_event.clone().unwrap();
        let rec = EventRecord::new(&s.id, &k, &e, "kdniao");
        assert_eq!(rec.sk, format!("EVT#{}#0000000002", fmt_time(k.time)));
        assert_eq!(rec.into_event().unwrap(), (k, e));
    }

    #[test]
    fn a_stopped_shipment_leaves_the_due_index() {
        let mut s = sample();
        s.next_check_at = None;
        let rec = ShipmentRecord::from_shipment(&s, 16);
        assert_eq!((rec.due_pk, rec.due_sk), (None, None));
    }

    #[test]
    fn the_watermarks_round_trip_through_their_item_and_stay_out_of_the_stream_filter() {
        use crate::store::{DuePosition, ItemKey, ShardMark, Watermarks};
        let key = |pk: &str, sk: &str| {
            Some(ItemKey {
                pk: pk.into(),
                sk: sk.into(),
            })
        };
        let t = chrono::Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let mut w = Watermarks {
            run: 7,
            at: Some(t),
            ..Watermarks::default()
        };
        w.shards.insert(
            0,
            ShardMark {
                after: Some(DuePosition::end_of(t)),
                sweep_to: Some(t - chrono::Duration::minutes(15)),
                sweep_at: Some(t + chrono::Duration::minutes(15)),
                sweep_after: None,
            },
        );
        w.shards.insert(
            11,
            ShardMark {
                after: Some(DuePosition {
                    due_sk: fmt_time(t),
                    key: key("SHIP#YTO#YT1", SCHED),
                }),
                sweep_after: Some(DuePosition {
                    due_sk: fmt_time(t),
                    key: key("SHIP#ZTO#7", META),
                }),
                ..ShardMark::default()
            },
        );
        let rec = WatermarkRecord::from_watermarks(&w, "tok");
        let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(&rec).unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), "SCHED#due");
        assert!(!item.contains_key("due_sk") && !item.contains_key("due_pk"));
        let keys: serde_dynamo::Item = serde_dynamo::to_item(serde_json::json!({
            "pk": WATERMARK_PK, "sk": META
        }))
        .unwrap();
        assert!(!is_shipment_head(&keys), "the notifier's filter drops it");
        let shard = item["shards"].as_m().unwrap()["11"].as_m().unwrap();
        assert_eq!(shard["w_sk"].as_s().unwrap(), SCHED);
        assert_eq!(shard["sweep_w_sk"].as_s().unwrap(), META);
        let back: WatermarkRecord = serde_dynamo::from_item(item.clone()).unwrap();
        assert_eq!(back.into_watermarks().unwrap(), w);
        // Written before entries were SCHED items: no `w_sk`, the entry was a META item's.
        let mut old = item;
        let mut shards = old["shards"].as_m().unwrap().clone();
        let mut eleven = shards["11"].as_m().unwrap().clone();
        eleven.remove("w_sk");
        eleven.remove("sweep_w_sk");
        shards.insert(
            "11".into(),
            aws_sdk_dynamodb::types::AttributeValue::M(eleven),
        );
        old.insert(
            "shards".into(),
            aws_sdk_dynamodb::types::AttributeValue::M(shards),
        );
        let back: WatermarkRecord = serde_dynamo::from_item(old).unwrap();
        let marks = back.into_watermarks().unwrap().shards;
        assert_eq!(
            marks[&11].after.as_ref().unwrap().key,
            key("SHIP#YTO#YT1", META)
        );
        assert_eq!(marks[&11].sweep_after, w.shards[&11].sweep_after);
        let mut broken = WatermarkRecord::from_watermarks(&w, "tok");
        broken.at = Some("yesterday".into());
        assert!(broken.into_watermarks().is_err());
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let mut rec = ShipmentRecord::from_shipment(&sample(), 16);
        rec.status = "Teleported".into();
        let err = rec.into_shipment().unwrap_err();
        assert!(err.reason.contains("Teleported"), "{err}");
        // A clear number where a sealed one belongs is refused, and not echoed.
        let mut rec = ShipmentRecord::from_shipment(&sample(), 16);
        rec.phone_enc = Some("+8613812345678".into());
        let err = rec.into_shipment().unwrap_err();
        assert!(err.reason.starts_with("phone_enc: "), "{err}");
        assert!(!err.to_string().contains("13812345678"), "{err}");
    }
}
