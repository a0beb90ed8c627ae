//! The tracked parcel and the pure decision taken after every check.

use super::ids::{PhoneNumber, ShipmentId};
use super::schedule::{next_check_at, Priority};
use super::status::{Status, SubStatus};
use super::trace::{keyed_events, EventKey, TraceEvent, TraceSnapshot};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Locale {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Locale {
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::ZhCn => "zh-CN",
            Locale::En => "en",
        }
    }
    pub fn parse(s: &str) -> Option<Locale> {
        match s {
            "zh-CN" | "zh" | "zh_CN" => Some(Locale::ZhCn),
            "en" | "en-US" | "en_US" => Some(Locale::En),
            _ => None,
        }
    }
}

/// Who is told about the parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Recipient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneNumber>,
    #[serde(default)]
    pub locale: Locale,
}

/// A tracked parcel: the `META` item of its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub id: ShipmentId,
    pub status: Status,
    pub sub_status: Option<SubStatus>,
    pub status_changed_at: DateTime<Utc>,
    /// Newest trace line we hold, and its key.
    pub last_event: Option<(EventKey, TraceEvent)>,
    pub event_count: u32,
    pub checked_at: Option<DateTime<Utc>>,
    /// `None` once tracking has stopped (terminal status): the item leaves the due index.
    pub next_check_at: Option<DateTime<Utc>>,
    pub priority: Priority,
    pub provider: String,
    pub recipient: Recipient,
    pub order_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Why the last check failed for good (unknown carrier, rejected waybill), if it did.
    pub last_error: Option<String>,
    /// Optimistic-concurrency version: every write is conditional on it and bumps it.
    pub version: u64,
}

impl Shipment {
    /// A freshly registered parcel, due for its first check now.
    pub fn register(
        id: ShipmentId,
        priority: Priority,
        provider: impl Into<String>,
        recipient: Recipient,
        order_ref: Option<String>,
        now: DateTime<Utc>,
    ) -> Shipment {
        Shipment {
            id,
            status: Status::Pending,
            sub_status: None,
            status_changed_at: now,
            last_event: None,
            event_count: 0,
            checked_at: None,
            next_check_at: Some(now),
            priority,
            provider: provider.into(),
            recipient,
            order_ref,
            created_at: now,
            last_error: None,
            version: 0,
        }
    }

    pub fn last_event_key(&self) -> Option<EventKey> {
        self.last_event.as_ref().map(|(k, _)| *k)
    }
}

/// A status or sub-status change, the thing buyers are told about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
    pub from_sub: Option<SubStatus>,
    pub to_sub: Option<SubStatus>,
}

impl Transition {
    pub fn between(old: (Status, Option<&SubStatus>), new: (Status, Option<&SubStatus>)) -> Option<Transition> {
        if old.0 == new.0 && old.1 == new.1 {
            return None;
        }
        Some(Transition {
            from: old.0,
            to: new.0,
            from_sub: old.1.cloned(),
            to_sub: new.1.cloned(),
        })
    }
    /// A change of canonical status (not only of the provider's sub-code).
    pub fn is_status_change(&self) -> bool {
        self.from != self.to
    }
    /// Stable name of the transition for ledger keys: `InTransit>OutForDelivery` or `InTransit>Exception(kdniao:403)`.
    pub fn key(&self) -> String {
        match &self.to_sub {
            Some(s) => format!("{}>{}({})", self.from, self.to, s),
            None => format!("{}>{}", self.from, self.to),
        }
    }
}

/// Why a provider's answer did not change the shipment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// The answer holds no line newer than ours (a cached or reordered trace) and its status
    /// would move the parcel backwards.
    StaleRegression,
    /// Tracking had already stopped.
    AlreadyTerminal,
}

/// The decision after one check: what to write.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    /// The shipment as it should be written (version not yet bumped: the store does that).
    pub updated: Shipment,
    /// Lines newer than the newest we held, ascending, with their keys.
    pub new_events: Vec<(EventKey, TraceEvent)>,
    pub transition: Option<Transition>,
    pub ignored: Option<Ignored>,
}

/// Fold one provider answer into the shipment. Pure: same inputs, same outcome.
///
/// Rules:
/// - only lines newer than the newest one held are new (re-delivered or reordered answers add nothing);
/// - with new lines, the provider's verdict is taken (parcels do go back: redelivery, re-routing);
/// - without new lines, a status or sub-status change is taken (Kdniao StateEx 402/403/412 verdicts
///   arrive without a scan) unless it would move the parcel backwards;
/// - a terminal shipment stays terminal;
/// - the next check is set from the resulting status and priority, or cleared when terminal.
pub fn apply_check(current: &Shipment, snapshot: &TraceSnapshot, now: DateTime<Utc>) -> CheckOutcome {
    let mut updated = current.clone();
    updated.checked_at = Some(now);
    updated.last_error = None;

    if current.status.is_terminal() {
        updated.next_check_at = None;
        return CheckOutcome {
            updated,
            new_events: Vec::new(),
            transition: None,
            ignored: Some(Ignored::AlreadyTerminal),
        };
    }

    let keyed = keyed_events(&snapshot.events);
    let held = current.last_event_key();
    let new_events: Vec<(EventKey, TraceEvent)> = keyed
        .into_iter()
        .filter(|(k, _)| held.is_none_or(|h| *k > h))
        .collect();

    let backwards = snapshot.status.progress() < current.status.progress();
    let accept = !new_events.is_empty() || !backwards;
    let mut ignored = None;
    let mut transition = None;
    if accept {
        transition = Transition::between(
            (current.status, current.sub_status.as_ref()),
            (snapshot.status, snapshot.sub_status.as_ref()),
        );
        if let Some(t) = &transition {
            updated.status = t.to;
            updated.sub_status = t.to_sub.clone();
            updated.status_changed_at = now;
        }
    } else {
        ignored = Some(Ignored::StaleRegression);
    }

    if let Some(last) = new_events.last() {
        updated.last_event = Some(last.clone());
        updated.event_count = current.event_count + new_events.len() as u32;
    }
    updated.next_check_at = next_check_at(updated.status, updated.priority, now);

    CheckOutcome {
        updated,
        new_events,
        transition,
        ignored,
    }
}
