//! AWS-side cost per 1M checks, from requests counted on the wire.
//!
//! [`Meter`] is a tap on the AWS proxy ([`crate::faults::AwsFaultProxy::start_tapped`] with an
//! all-zero plan) in front of moto: every request the functions and the event-source runner send
//! is counted by operation, with the billing units DynamoDB, SQS, SNS and KMS charge for estimated
//! from the request and answer bodies. [`estimate`] multiplies the units by [`PRICES`] (published
//! on-demand prices, us-east-1) and scales them to one million checks.
//!
//! What is estimated, and how:
//! - **DynamoDB** (on-demand): a write costs one WRU per started KB of the item written (PutItem:
//!   the item in the request; BatchWriteItem: each put item; UpdateItem and DeleteItem: 1, the
//!   items here are under 1 KB). The due index is billed per entry written: 1 WRU to put an
//!   entry (an item gains `due_pk`/`due_sk`), 1 to delete one (it loses them), 2 to move one
//!   (its `due_sk` changes: delete and put), 1 to rewrite one in place (same keys, a projected
//!   attribute changed: `carrier`, `number`, `version`), nothing when the item has no entry
//!   before or after, or the entry is unchanged. What the item held before comes from the
//!   writes the meter has seen (it remembers each item's index attributes); an item it never
//!   saw written counts as absent after a successful `attribute_not_exists(pk)` put, and
//!   otherwise as a move when the new item has due keys (the old rule) and as no entry when
//!   it has none. A failed conditional write writes no index entry. The shipment's `META` item
//!   has an entry from its creation to its first check, then its `SCHED` item carries it.
//!   A read costs one RRU per started 4 KB returned, half that when
//!   eventually consistent (GetItem: the item; Query: the items of the page, summed). Item sizes
//!   follow DynamoDB's rule (attribute names + values), approximated for numbers.
//!   Failed conditional writes are charged like writes, as DynamoDB does.
//! - **DynamoDB Streams**: `GetRecords` made by Lambda for a trigger are free (DynamoDB
//!   developer guide, "Evaluate your DynamoDB streams usage"); the runner's reads stand for those.
//! - **SQS**: one request per call and per started 64 KB of payload (the SQS pricing rule); the
//!   runner's ReceiveMessage/DeleteMessageBatch stand for the Lambda poller's, which AWS bills to
//!   the account. The poller's idle long polls (a fixed cost per month, not per check) are not here.
//! - **SNS**: one publish request per call; deliveries to mobile push endpoints are priced, SMS
//!   deliveries are counted but not priced (per destination country; the price of an SMS to
//!   mainland China is set per sender registration), topic deliveries depend on subscribers.
//! - **Lambda**: invocations and GB-seconds from the template's memory sizes and the measured
//!   durations; locally every call waits on moto, so the durations are upper bounds.
//! - **KMS**: Decrypt / GenerateDataKey requests (phones are sealed with a data key).

use crate::faults::aws::Tap;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What one operation cost during a run.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct OpStats {
    pub calls: u64,
    /// Answers with an HTTP status of 400 or more (conditional check failures included).
    pub errors: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// DynamoDB write request units (table).
    pub wru: f64,
    /// DynamoDB write request units of the due index.
    pub gsi_wru: f64,
    /// DynamoDB read request units.
    pub rru: f64,
    /// SQS / SNS billable requests (per started 64 KB).
    pub requests: u64,
    /// SNS Publish by destination: SMS, mobile push endpoint, topic.
    pub sms: u64,
    pub push: u64,
    pub topic: u64,
}

/// Counts AWS requests by operation (`dynamodb.PutItem`, `sqs.ReceiveMessage`, ...).
#[derive(Debug, Default)]
pub struct Meter {
    ops: Mutex<BTreeMap<String, OpStats>>,
    /// Every item the meter saw written, by (table, pk, sk): its due-index entry (the index
    /// keys and projected attributes, `None` when it has none). What a write replaced.
    index: Mutex<BTreeMap<ItemKey, Option<IndexEntry>>>,
}

type ItemKey = (String, String, String);

/// The due-index entry of an item: `due_pk`, `due_sk` and the projected attributes.
#[derive(Debug, Clone, PartialEq)]
struct IndexEntry {
    keys: (Value, Value),
    projected: [Value; 3],
}

impl IndexEntry {
    fn of(item: &Value) -> Option<IndexEntry> {
        let get = |k: &str| item.get(k).cloned().unwrap_or(Value::Null);
        let (pk, sk) = (item.get("due_pk")?, item.get("due_sk")?);
        Some(IndexEntry {
            keys: (pk.clone(), sk.clone()),
            projected: [get("carrier"), get("number"), get("version")],
        })
    }
}

/// The due index's WRU for an item going from `old` to `new`.
fn index_units(old: Option<&IndexEntry>, new: Option<&IndexEntry>) -> f64 {
    match (old, new) {
        (None, None) => 0.0,
        (None, Some(_)) | (Some(_), None) => 1.0,
        (Some(a), Some(b)) if a.keys != b.keys => 2.0,
        (Some(a), Some(b)) if a.projected != b.projected => 1.0,
        _ => 0.0,
    }
}

fn item_key(table: &str, key_or_item: &Value) -> Option<ItemKey> {
    let s = |k: &str| key_or_item.get(k)?.get("S")?.as_str().map(String::from);
    Some((table.to_string(), s("pk")?, s("sk")?))
}

impl Meter {
    pub fn new() -> Arc<Meter> {
        Arc::new(Meter::default())
    }

    /// The tap to hand to the proxy.
    pub fn tap(self: &Arc<Self>) -> Tap {
        let me = self.clone();
        Arc::new(move |op: &str, req: &[u8], status: u16, resp: &[u8]| {
            me.record(op, req, status, resp)
        })
    }

    /// The due index's WRU of one DynamoDB request (see the module documentation), and what
    /// the written items hold now.
    fn index_writes(&self, op: &str, req: &[u8], status: u16) -> f64 {
        let Ok(r) = serde_json::from_slice::<Value>(req) else {
            return 0.0;
        };
        if status >= 400 {
            return 0.0;
        }
        let index = &self.index;
        let put = |table: &str, item: &Value, created: bool| -> f64 {
            let new = IndexEntry::of(item);
            let Some(key) = item_key(table, item) else {
                return if new.is_some() { 2.0 } else { 0.0 };
            };
            let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
            let units = match index.get(&key) {
                Some(old) => index_units(old.as_ref(), new.as_ref()),
                None if created => index_units(None, new.as_ref()),
                None if new.is_some() => 2.0,
                None => 0.0,
            };
            index.insert(key, new);
            units
        };
        // An item never seen written: as if it had no entry.
        let delete = |table: &str, key: &Value| -> f64 {
            let Some(key) = item_key(table, key) else {
                return 0.0;
            };
            let old = index.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            index_units(old.flatten().as_ref(), None)
        };
        let table = r.get("TableName").and_then(Value::as_str).unwrap_or("");
        match op {
            "PutItem" => {
                let created = r.get("ConditionExpression").and_then(Value::as_str)
                    == Some("attribute_not_exists(pk)");
                r.get("Item").map_or(0.0, |item| put(table, item, created))
            }
            "BatchWriteItem" => {
                let mut units = 0.0;
                let tables = r.get("RequestItems").and_then(Value::as_object);
                for (table, reqs) in tables.into_iter().flatten() {
                    for w in reqs.as_array().into_iter().flatten() {
                        if let Some(item) = w.get("PutRequest").and_then(|p| p.get("Item")) {
                            units += put(table, item, false);
                        } else if let Some(key) = w.get("DeleteRequest").and_then(|d| d.get("Key"))
                        {
                            units += delete(table, key);
                        }
                    }
                }
                units
            }
            "DeleteItem" => r.get("Key").map_or(0.0, |key| delete(table, key)),
            // Not parsed (an update expression may add, move or drop the keys): the old rule,
            // and the item's entry unknown from here on.
            "UpdateItem" => {
                if let Some(key) = r.get("Key").and_then(|k| item_key(table, k)) {
                    index.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                }
                if r.to_string().contains("due_sk") {
                    2.0
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }

    /// Forget everything counted so far (e.g. after setting up a run). What the items hold is
    /// kept: the writes to come replace it.
    pub fn reset(&self) {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn snapshot(&self) -> BTreeMap<String, OpStats> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn record(&self, op: &str, req: &[u8], status: u16, resp: &[u8]) {
        let mut s = OpStats {
            calls: 1,
            errors: u64::from(status >= 400),
            request_bytes: req.len() as u64,
            response_bytes: resp.len() as u64,
            ..OpStats::default()
        };
        let chunks = |n: usize| (n.div_ceil(64 * 1024)).max(1) as u64;
        match op.split_once('.') {
            Some(("dynamodb", name)) => {
                dynamo_units(name, req, status, resp, &mut s);
                s.gsi_wru = self.index_writes(name, req, status);
            }
            Some(("sqs", _)) => s.requests = chunks(req.len().max(resp.len())),
            Some(("sns", "Publish")) => {
                s.requests = chunks(req.len());
                let has = |k: &[u8]| req.split(|b| *b == b'&').any(|p| p.starts_with(k));
                if has(b"PhoneNumber=") {
                    s.sms = 1;
                } else if has(b"TargetArn=") {
                    s.push = 1;
                } else {
                    s.topic = 1;
                }
            }
            Some(("sns", _)) => s.requests = 1,
            _ => {}
        }
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.entry(op.to_owned()).or_default().add(&s);
    }
}

impl OpStats {
    /// Count `o` in as well.
    pub fn add(&mut self, o: &OpStats) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.request_bytes += o.request_bytes;
        self.response_bytes += o.response_bytes;
        self.wru += o.wru;
        self.gsi_wru += o.gsi_wru;
        self.rru += o.rru;
        self.requests += o.requests;
        self.sms += o.sms;
        self.push += o.push;
        self.topic += o.topic;
    }

    /// What was counted since `before` (a snapshot taken earlier from the same meter).
    pub fn since(&self, before: &OpStats) -> OpStats {
        OpStats {
            calls: self.calls - before.calls,
            errors: self.errors - before.errors,
            request_bytes: self.request_bytes - before.request_bytes,
            response_bytes: self.response_bytes - before.response_bytes,
            wru: self.wru - before.wru,
            gsi_wru: self.gsi_wru - before.gsi_wru,
            rru: self.rru - before.rru,
            requests: self.requests - before.requests,
            sms: self.sms - before.sms,
            push: self.push - before.push,
            topic: self.topic - before.topic,
        }
    }
}

/// DynamoDB's item size: the UTF-8 length of every attribute name plus its value's size.
/// Numbers are counted as (digits + 1) / 2 + 1 bytes (DynamoDB stores them in base 100).
pub fn item_size(item: &serde_json::Map<String, Value>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &Value) -> usize {
    let Some(obj) = v.as_object() else { return 0 };
    let Some((ty, val)) = obj.iter().next() else {
        return 0;
    };
    match (ty.as_str(), val) {
        ("S", Value::String(s)) => s.len(),
        ("N", Value::String(n)) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        ("B", Value::String(b)) => b.len() * 3 / 4,
        ("BOOL", _) | ("NULL", _) => 1,
        ("M", Value::Object(m)) => 3 + item_size(m) + m.len(),
        ("L", Value::Array(l)) => 3 + l.iter().map(|x| value_size(x) + 1).sum::<usize>(),
        ("SS", Value::Array(l)) | ("BS", Value::Array(l)) => {
            l.iter().map(|x| x.as_str().map_or(0, str::len)).sum()
        }
        ("NS", Value::Array(l)) => l
            .iter()
            .map(|x| x.as_str().map_or(0, |n| n.len().div_ceil(2) + 1))
            .sum(),
        _ => 0,
    }
}

fn write_units(item: Option<&Value>) -> f64 {
    let size = item.and_then(Value::as_object).map_or(0, item_size);
    size.div_ceil(1024).max(1) as f64
}

fn read_units(bytes: usize, consistent: bool) -> f64 {
    let units = bytes.div_ceil(4096).max(1) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

fn dynamo_units(op: &str, req: &[u8], status: u16, resp: &[u8], s: &mut OpStats) {
    let Ok(r) = serde_json::from_slice::<Value>(req) else {
        return;
    };
    let answer = serde_json::from_slice::<Value>(resp).unwrap_or(Value::Null);
    let consistent = r.get("ConsistentRead").and_then(Value::as_bool) == Some(true);
    match op {
        "PutItem" => s.wru = write_units(r.get("Item")),
        "UpdateItem" | "DeleteItem" => s.wru = 1.0,
        "BatchWriteItem" => {
            let tables = r.get("RequestItems").and_then(Value::as_object);
            for req in tables.into_iter().flat_map(|t| t.values()) {
                for w in req.as_array().into_iter().flatten() {
                    if let Some(put) = w.get("PutRequest") {
                        s.wru += write_units(put.get("Item"));
                    } else {
                        s.wru += 1.0;
                    }
                }
            }
        }
        "TransactWriteItems" => {
            let n = r
                .get("TransactItems")
                .and_then(Value::as_array)
                .map_or(1, Vec::len);
            s.wru = 2.0 * n as f64;
        }
        "GetItem" if status < 400 => {
            let size = answer
                .get("Item")
                .and_then(Value::as_object)
                .map_or(0, item_size);
            s.rru = read_units(size, consistent);
        }
        // Billed item by item, each rounded up to 4 KB; consistency is asked per table.
        "BatchGetItem" if status < 400 => {
            let consistent = r.to_string().contains("\"ConsistentRead\":true");
            s.rru = answer
                .get("Responses")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|tables| tables.values())
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(Value::as_object)
                .map(|item| read_units(item_size(item), consistent))
                .sum();
        }
        "Query" | "Scan" if status < 400 => {
            let size: usize = answer
                .get("Items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .map(item_size)
                .sum();
            s.rru = read_units(size, consistent);
        }
        _ => {}
    }
}

/// One published price.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Price {
    pub key: &'static str,
    pub service: &'static str,
    pub unit: &'static str,
    pub usd: f64,
    /// Where the figure comes from, and when it was read.
    pub source: &'static str,
    /// Read on the provider's own page (true), or only on third-party summaries (false).
    pub verified: bool,
}

/// us-east-1, on-demand, first pricing tier, free tiers ignored. Read 2026-11-26.
pub const PRICES: [Price; 10] = [
    Price {
        key: "lambda.request",
        service: "Lambda",
        unit: "per 1M requests",
        usd: 0.20,
        source: "AWS Lambda pricing (requests, x86 and Arm alike); third-party summaries of aws.amazon.com/lambda/pricing, 2024–2026",
        verified: false,
    },
    Price {
        key: "lambda.gb_second_arm",
        service: "Lambda",
        unit: "per GB-second (Arm, first 7.5 billion GB-s a month)",
        usd: 0.000_013_333_4,
        source: "AWS Lambda pricing, Arm duration; third-party summaries (cloudchipr 2024, tiered pricing table)",
        verified: false,
    },
    Price {
        key: "dynamodb.wru",
        service: "DynamoDB",
        unit: "per 1M write request units (on-demand, Standard table class)",
        usd: 0.625,
        source: "DynamoDB on-demand pricing after the 2024-11-01 price cut; third-party summary (airbyte); one older summary says $1.25",
        verified: false,
    },
    Price {
        key: "dynamodb.rru",
        service: "DynamoDB",
        unit: "per 1M read request units (on-demand, Standard table class)",
        usd: 0.125,
        source: "DynamoDB on-demand pricing after the 2024-11-01 price cut; third-party summary (airbyte); one older summary says $0.25",
        verified: false,
    },
    Price {
        key: "dynamodbstreams.lambda_read",
        service: "DynamoDB Streams",
        unit: "GetRecords by a Lambda trigger",
        usd: 0.0,
        source: "DynamoDB developer guide, 'Evaluate your DynamoDB streams usage': reads by Lambda-based consumers are free",
        verified: true,
    },
    Price {
        key: "sqs.request",
        service: "SQS",
        unit: "per 1M requests (standard queue, per 64 KB chunk)",
        usd: 0.40,
        source: "Amazon SQS pricing; third-party summaries (cloudburn.io 2026-03, factualminds 2026-06)",
        verified: false,
    },
    Price {
        key: "sns.publish",
        service: "SNS",
        unit: "per 1M publish requests (standard topic, per 64 KB chunk)",
        usd: 0.50,
        source: "Amazon SNS pricing; third-party summary (factualminds 2026-06)",
        verified: false,
    },
    Price {
        key: "sns.mobile_push",
        service: "SNS",
        unit: "per 1M mobile push deliveries",
        usd: 0.50,
        source: "Amazon SNS pricing; third-party summary (factualminds 2026-06)",
        verified: false,
    },
    Price {
        key: "kms.request",
        service: "KMS",
        unit: "per 10,000 requests (symmetric)",
        usd: 0.03,
        source: "AWS KMS pricing (its page read for the free tier and key price; the request price from a third-party summary, wring.co); $1 a month per key not counted",
        verified: false,
    },
    Price {
        key: "sns.sms",
        service: "SNS",
        unit: "per SMS (destination country)",
        usd: 0.0,
        source: "not priced: SMS prices are per destination country and sender registration",
        verified: false,
    },
];

/// What the scheduler costs a month whatever the load: EventBridge runs it every minute
/// (`rate(1 minute)`, 43,200 runs in 30 days), each run one invocation of `memory_mb` for
/// `seconds_per_run`, one strongly consistent GetItem of its watermark item (1 RRU), and one
/// eventually consistent due-index Query per shard (half an RRU when nothing, or little, is
/// due), plus every 15 minutes (the stuck sweep's lease) one more Query per shard and one write
/// of the watermark item (about 110 bytes per shard; an idle run writes nothing else). The
/// per-check figures count the scheduler per tick of the run instead; this is the floor under
/// them.
pub fn scheduler_standing_usd_per_month(seconds_per_run: f64, memory_mb: u64, shards: u32) -> f64 {
    const RUNS: f64 = 30.0 * 24.0 * 60.0;
    const RUNS_PER_SWEEP: f64 = 15.0;
    let shards = shards as f64;
    let watermark_wru = (shards * 110.0 / 1024.0).ceil().max(1.0);
    RUNS * (price("lambda.request") / 1e6
        + seconds_per_run * memory_mb as f64 / 1024.0 * price("lambda.gb_second_arm")
        + (1.0 + shards * 0.5 * (1.0 + 1.0 / RUNS_PER_SWEEP)) * price("dynamodb.rru") / 1e6
        + watermark_wru / RUNS_PER_SWEEP * price("dynamodb.wru") / 1e6)
}

pub fn price(key: &str) -> f64 {
    PRICES.iter().find(|p| p.key == key).map_or(0.0, |p| p.usd)
}

/// A function's use during the run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FunctionUse {
    pub name: String,
    pub invocations: u64,
    /// Wall time of its invocations, summed.
    pub seconds: f64,
    /// MemorySize from template.yaml.
    pub memory_mb: u64,
}

/// One line of the estimate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CostLine {
    pub service: &'static str,
    pub what: String,
    /// Billing units per 1M checks.
    pub units_per_1m_checks: f64,
    pub unit: &'static str,
    pub usd_per_1m_checks: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CostEstimate {
    pub checks: u64,
    pub lines: Vec<CostLine>,
    pub by_service: BTreeMap<&'static str, f64>,
    pub total_usd_per_1m_checks: f64,
    /// SMS sent per 1M checks (counted, not priced).
    pub sms_per_1m_checks: f64,
}

/// Cost per 1M checks of a run that made `checks` checks, metered by `ops`, with `functions`.
pub fn estimate(
    checks: u64,
    ops: &BTreeMap<String, OpStats>,
    functions: &[FunctionUse],
) -> CostEstimate {
    let scale = if checks == 0 {
        0.0
    } else {
        1_000_000.0 / checks as f64
    };
    let sum = |prefix: &str, f: &dyn Fn(&OpStats) -> f64| -> f64 {
        ops.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, s)| f(s))
            .sum()
    };
    let mut lines = Vec::new();
    let mut line = |service: &'static str, what: String, units: f64, unit, usd_per_unit: f64| {
        let per = units * scale;
        lines.push(CostLine {
            service,
            what,
            units_per_1m_checks: per,
            unit,
            usd_per_1m_checks: per * usd_per_unit,
        });
    };
    let invocations: u64 = functions.iter().map(|f| f.invocations).sum();
    line(
        "Lambda",
        format!(
            "invocations ({})",
            functions
                .iter()
                .map(|f| format!("{} {}", f.name, f.invocations))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        invocations as f64,
        "requests",
        price("lambda.request") / 1e6,
    );
    let gbs: f64 = functions
        .iter()
        .map(|f| f.seconds * f.memory_mb as f64 / 1024.0)
        .sum();
    line(
        "Lambda",
        "duration (measured locally: waits on moto, an upper bound)".into(),
        gbs,
        "GB-s",
        price("lambda.gb_second_arm"),
    );
    let wru = sum("dynamodb.", &|s| s.wru);
    let gsi = sum("dynamodb.", &|s| s.gsi_wru);
    let rru = sum("dynamodb.", &|s| s.rru);
    line(
        "DynamoDB",
        "writes (table)".into(),
        wru,
        "WRU",
        price("dynamodb.wru") / 1e6,
    );
    line(
        "DynamoDB",
        "writes (due index)".into(),
        gsi,
        "WRU",
        price("dynamodb.wru") / 1e6,
    );
    line(
        "DynamoDB",
        "reads".into(),
        rru,
        "RRU",
        price("dynamodb.rru") / 1e6,
    );
    line(
        "DynamoDB Streams",
        "GetRecords by the notifier's trigger (free)".into(),
        sum("dynamodbstreams.GetRecords", &|s| s.calls as f64),
        "requests",
        0.0,
    );
    line(
        "SQS",
        "send, receive, delete, visibility".into(),
        sum("sqs.", &|s| s.requests as f64),
        "requests",
        price("sqs.request") / 1e6,
    );
    line(
        "SNS",
        "publish requests".into(),
        sum("sns.Publish", &|s| s.requests as f64),
        "requests",
        price("sns.publish") / 1e6,
    );
    line(
        "SNS",
        "mobile push deliveries".into(),
        sum("sns.Publish", &|s| s.push as f64),
        "deliveries",
        price("sns.mobile_push") / 1e6,
    );
    line(
        "KMS",
        "Decrypt / GenerateDataKey".into(),
        sum("kms.", &|s| s.calls as f64),
        "requests",
        price("kms.request") / 1e4,
    );
    let mut by_service: BTreeMap<&'static str, f64> = BTreeMap::new();
    for l in &lines {
        *by_service.entry(l.service).or_default() += l.usd_per_1m_checks;
    }
    let total = by_service.values().sum();
    CostEstimate {
        checks,
        sms_per_1m_checks: sum("sns.Publish", &|s| s.sms as f64) * scale,
        lines,
        by_service,
        total_usd_per_1m_checks: total,
    }
}

/// MemorySize of each function in template.yaml by binary name (the function's own, else
/// Globals, else SAM's 128).
pub fn template_memory(template_yaml: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(root) = serde_yaml::from_str::<serde_yaml::Value>(template_yaml) else {
        return out;
    };
    let global = root
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("MemorySize"))
        .and_then(serde_yaml::Value::as_u64)
        .unwrap_or(128);
    let Some(resources) = root.get("Resources").and_then(|r| r.as_mapping()) else {
        return out;
    };
    for (_, r) in resources {
        if r.get("Type").and_then(|t| t.as_str()) != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = r
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(|b| b.as_str());
        let memory = r
            .get("Properties")
            .and_then(|p| p.get("MemorySize"))
            .and_then(serde_yaml::Value::as_u64)
            .unwrap_or(global);
        if let Some(binary) = binary {
            out.insert(binary.to_owned(), memory);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodbs_rule() {
        let item: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"pk": {"S": "SHIP#YTO#1"}, "version": {"N": "12345"}, "ok": {"BOOL": true}}"#,
        )
        .unwrap();
        // pk 2 + 10, version 7 + (5 digits -> 3 + 1), ok 2 + 1
        assert_eq!(item_size(&item), 12 + 11 + 3);
    }

    #[test]
    fn writes_reads_and_the_due_index_are_metered() {
        let m = Meter::new();
        let big = "x".repeat(1500);
        let put = serde_json::json!({"TableName": "t", "Item": {
            "pk": {"S": "SHIP#A"}, "desc": {"S": big}, "due_pk": {"S": "DUE#0"},
            "due_sk": {"S": "2026"}}});
        m.record("dynamodb.PutItem", put.to_string().as_bytes(), 200, b"{}");
        let get = serde_json::json!({"TableName": "t", "ConsistentRead": true});
        let got = serde_json::json!({"Item": {"pk": {"S": "SHIP#A"}}});
        m.record(
            "dynamodb.GetItem",
            get.to_string().as_bytes(),
            200,
            got.to_string().as_bytes(),
        );
        m.record(
            "sns.Publish",
            b"Action=Publish&PhoneNumber=%2B86139&Message=hi",
            200,
            b"<ok/>",
        );
        m.record("sqs.SendMessageBatch", b"{}", 200, b"{}");
        let ops = m.snapshot();
        assert_eq!(ops["dynamodb.PutItem"].wru, 2.0, "1.5 KB is two WRU");
        assert_eq!(ops["dynamodb.PutItem"].gsi_wru, 2.0);
        assert_eq!(ops["dynamodb.GetItem"].rru, 1.0, "a consistent read");
        assert_eq!(ops["sns.Publish"].sms, 1);
        let est = estimate(
            2,
            &ops,
            &[FunctionUse {
                name: "tracker".into(),
                invocations: 2,
                seconds: 1.0,
                memory_mb: 1024,
            }],
        );
        let dynamo = est.by_service["DynamoDB"];
        // (2 + 2) WRU * 0.625/M + 1 RRU * 0.125/M, times 500,000.
        assert!(
            (dynamo - (4.0 * 0.625 + 0.125) / 2.0).abs() < 1e-9,
            "{dynamo}"
        );
        assert_eq!(est.sms_per_1m_checks, 500_000.0);
        assert!(est.total_usd_per_1m_checks > dynamo);
    }

    /// A shipment's life on the due index: created with the keys on META (a put), its first
    /// check moves them to SCHED (a put on SCHED, a delete for META), checks without news move
    /// SCHED's entry (2 WRU each), the final check drops it; a lost race writes nothing.
    #[test]
    fn the_due_index_is_billed_per_entry_put_moved_or_deleted() {
        let m = Meter::new();
        let item = |sk: &str, due: Option<&str>, version: u64| {
            let mut i = serde_json::json!({
                "pk": {"S": "SHIP#YTO#1"}, "sk": {"S": sk}, "carrier": {"S": "YTO"},
                "number": {"S": "1"}, "version": {"N": version.to_string()}});
            if let Some(d) = due {
                i["due_pk"] = serde_json::json!({"S": "DUE#3"});
                i["due_sk"] = serde_json::json!({"S": d});
            }
            i
        };
        let put = |item: Value, condition: &str, status: u16| {
            let req = serde_json::json!({"TableName": "t", "Item": item,
                "ConditionExpression": condition});
            m.reset();
            m.record(
                "dynamodb.PutItem",
                req.to_string().as_bytes(),
                status,
                b"{}",
            );
            m.snapshot()["dynamodb.PutItem"].gsi_wru
        };
        let created = "attribute_not_exists(pk)";
        assert_eq!(
            put(item("META", Some("T0"), 0), created, 200),
            1.0,
            "a new entry"
        );
        // The first check: SCHED gets the entry, META drops it.
        assert_eq!(put(item("SCHED", Some("T1"), 1), created, 200), 1.0);
        assert_eq!(put(item("META", None, 1), "#v = :expected", 200), 1.0);
        // Checks without news: SCHED's entry moves.
        assert_eq!(put(item("SCHED", Some("T2"), 1), "#sv = :sv", 200), 2.0);
        assert_eq!(put(item("SCHED", Some("T3"), 1), "#sv = :sv", 200), 2.0);
        // A lost race writes no entry and changes nothing.
        assert_eq!(put(item("SCHED", Some("T9"), 1), "#sv = :sv", 400), 0.0);
        // A full write with news: SCHED's entry moves, META has none before or after.
        assert_eq!(put(item("SCHED", Some("T4"), 2), "#sv = :sv", 200), 2.0);
        assert_eq!(put(item("META", None, 2), "#v = :expected", 200), 0.0);
        // Same due time, a projected attribute changed: rewritten in place; unchanged: nothing.
        assert_eq!(put(item("SCHED", Some("T4"), 3), "#sv = :sv", 200), 1.0);
        assert_eq!(put(item("SCHED", Some("T4"), 3), "#sv = :sv", 200), 0.0);
        // The final check: the entry is deleted.
        assert_eq!(put(item("SCHED", None, 4), "#sv = :sv", 200), 1.0);
        assert_eq!(put(item("META", None, 4), "#v = :expected", 200), 0.0);
        // An item the meter never saw written: a move when it has due keys, else nothing.
        let mut other = item("SCHED", Some("T5"), 1);
        other["pk"] = serde_json::json!({"S": "SHIP#YTO#2"});
        assert_eq!(put(other.clone(), "#sv = :sv", 200), 2.0);
        other["pk"] = serde_json::json!({"S": "SHIP#YTO#3"});
        other.as_object_mut().unwrap().remove("due_sk");
        assert_eq!(put(other, "#sv = :sv", 200), 0.0);
        // A delete of an item with an entry removes it.
        m.reset();
        let del = serde_json::json!({"TableName": "t",
            "Key": {"pk": {"S": "SHIP#YTO#2"}, "sk": {"S": "SCHED"}}});
        m.record(
            "dynamodb.DeleteItem",
            del.to_string().as_bytes(),
            200,
            b"{}",
        );
        assert_eq!(m.snapshot()["dynamodb.DeleteItem"].gsi_wru, 1.0);
    }

    #[test]
    fn operations_are_named_by_target_or_action() {
        use crate::faults::aws::operation;
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-amz-target", "DynamoDB_20120810.PutItem".parse().unwrap());
        assert_eq!(operation(&h, b"{}"), "dynamodb.PutItem");
        h.insert(
            "x-amz-target",
            "AmazonSQS.SendMessageBatch".parse().unwrap(),
        );
        assert_eq!(operation(&h, b"{}"), "sqs.SendMessageBatch");
        h.insert("x-amz-target", "TrentService.Decrypt".parse().unwrap());
        assert_eq!(operation(&h, b"{}"), "kms.Decrypt");
        let none = axum::http::HeaderMap::new();
        assert_eq!(
            operation(&none, b"Action=Publish&Version=2010-03-31"),
            "sns.Publish"
        );
        assert_eq!(operation(&none, b"GET /moto-api/data.json"), "other");
    }

    /// 43,200 runs: $0.20/M requests, 50 ms at 128 MB, the watermark's GetItem and 16 half-RRU
    /// queries; every 15th run 16 more (the sweep) and a 2 KB watermark write.
    #[test]
    fn the_schedulers_standing_cost_is_a_few_cents_a_month() {
        let usd = scheduler_standing_usd_per_month(0.05, 128, 16);
        let want = 43_200.0
            * (price("lambda.request") / 1e6
                + 0.05 / 8.0 * price("lambda.gb_second_arm")
                + (1.0 + 8.0 + 8.0 / 15.0) * price("dynamodb.rru") / 1e6
                + 2.0 / 15.0 * price("dynamodb.wru") / 1e6);
        assert!((usd - want).abs() < 1e-12, "{usd} {want}");
        assert!(usd > 0.01 && usd < 1.0, "{usd}");
    }

    #[test]
    fn template_memory_reads_globals_and_overrides() {
        let yaml = "Globals:\n  Function:\n    MemorySize: 256\nResources:\n  A:\n    Type: AWS::Serverless::Function\n    Metadata:\n      BuildProperties:\n        Binary: tracker\n  B:\n    Type: AWS::Serverless::Function\n    Metadata:\n      BuildProperties:\n        Binary: api\n    Properties:\n      MemorySize: 512\n";
        let m = template_memory(yaml);
        assert_eq!(m.get("tracker"), Some(&256));
        assert_eq!(m.get("api"), Some(&512));
    }
}
