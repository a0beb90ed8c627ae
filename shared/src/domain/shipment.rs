//! The tracked parcel and the pure decision taken after every check.

use super::cadence::LearnedCadence;
use super::ids::{SealedPhone, ShipmentId};
use super::schedule::{Expiry, Priority, ScheduleInput};
use super::status::{Status, SubStatus};
use super::trace::{EventKey, LineId, TraceEvent};
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

/// Who is told about the parcel. The phone is sealed (see [`SealedPhone`]): only the notifier
/// opens it, to send the SMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Recipient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<SealedPhone>,
    #[serde(default)]
    pub locale: Locale,
}

/// A tracked parcel: the `META` item of its partition, with the schedule fields of its `SCHED`
/// item laid over it (see [`HOT_FIELDS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub id: ShipmentId,
    pub status: Status,
    pub sub_status: Option<SubStatus>,
    pub status_changed_at: DateTime<Utc>,
    /// Newest dated trace line we hold, and its key (a future-dated line never is: see
    /// [`TraceEvent::claimed_time`]). The schedule and the stall clock count from it.
    pub last_event: Option<(EventKey, TraceEvent)>,
    pub event_count: u32,
    /// The identities of every trace line we hold, ascending: what makes a line new.
    pub line_ids: Vec<LineId>,
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
    /// When the provider accepted our push subscription (Kdniao 8008, Kuaidi100 `poll`). A
    /// subscribed shipment is told about by pushes; polling drops to a slow safety net.
    pub subscribed_at: Option<DateTime<Utc>>,
    /// When the last provider push for this shipment was applied.
    pub last_push_at: Option<DateTime<Utc>>,
    /// The provider that answered the last poll (failover may pick another than `provider`).
    pub last_provider: Option<String>,
    /// Optimistic-concurrency version of the `META` item: every full write is conditional on it
    /// and bumps it (a write of the schedule alone, see [`Shipment::hot_only_change`], leaves
    /// it). The notification ledger keys a transition by it.
    pub version: u64,
    /// Schedule version: the `sv` of the shipment's `SCHED` item, which every write is
    /// conditional on and bumps (the full write's lock, the hot write's only item). 0 while the
    /// shipment has no `SCHED` item (as created, or written before the split).
    pub sched_version: u64,
    /// The store read the shipment's items out of step: `META` still carries the due-index keys
    /// (as created, or written before the split), or `SCHED` was put by a full write whose
    /// `META` write has not landed (or never will: it lost a race, or its writer died). The next
    /// write must then be a full one, which puts both items back in step. Store bookkeeping like
    /// the versions: a decision copies it through untouched.
    pub needs_full_write: bool,
    /// Province the parcel left from (`浙江`), from its first scan (see [`super::geo`]).
    pub origin: Option<String>,
    /// Province it is delivered in, from a destination-side scan.
    pub destination: Option<String>,
    /// Time of the first scan: where delivery time and the ETA count from.
    pub picked_up_at: Option<DateTime<Utc>>,
}

/// The fields a check that finds nothing new changes, and nothing else does on its own: when
/// the check ran and when the next one is due. They live in the shipment's small `SCHED` item
/// (with the due-index keys), so such a check writes that item alone (see
/// [`Shipment::hot_only_change`]); `META` carries them too, as of its last full write.
///
/// What each observation that brings no news changes (`domain::check` tests
/// `what_a_check_without_news_changes`):
/// - a poll: `checked_at`, `next_check_at` (and `last_provider`, `last_error`, which stay as
///   they were unless another provider answered or the last check had failed);
/// - a stated wait (`Observation::Wait`): `next_check_at`;
/// - a refusal asked again: `checked_at`, `next_check_at` (`last_error` as the first refusal
///   wrote it);
/// - a push that repeats what we hold: `checked_at`, `next_check_at` and `last_push_at`, which
///   is not hot: a push is a full write.
pub const HOT_FIELDS: [&str; 2] = ["checked_at", "next_check_at"];

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
            line_ids: Vec::new(),
            checked_at: None,
            next_check_at: Some(now),
            priority,
            provider: provider.into(),
            recipient,
            order_ref,
            created_at: now,
            last_error: None,
            subscribed_at: None,
            last_push_at: None,
            last_provider: None,
            version: 0,
            sched_version: 0,
            // Created as one `META` item carrying the due-index keys (`ShipmentStore::create`).
            needs_full_write: true,
            origin: None,
            destination: None,
            picked_up_at: None,
        }
    }

    /// Copy `from`'s hot fields ([`HOT_FIELDS`]) into this shipment.
    pub fn copy_hot_fields(&mut self, from: &Shipment) {
        self.checked_at = from.checked_at;
        self.next_check_at = from.next_check_at;
    }

    /// Does `updated` differ from `held` in its hot fields only ([`HOT_FIELDS`]; the
    /// bookkeeping of the versions included: a decision leaves them)? Then the write is the
    /// schedule's alone: the `SCHED` item, and no stream record for the `META` item's consumers.
    pub fn hot_only_change(held: &Shipment, updated: &Shipment) -> bool {
        let mut probe = held.clone();
        probe.copy_hot_fields(updated);
        probe == *updated
    }

    /// Pushes tell us about this shipment: polling is only a safety net.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed_at.is_some()
    }

    pub fn last_event_key(&self) -> Option<EventKey> {
        self.last_event.as_ref().map(|(k, _)| *k)
    }

    /// Do we hold this line? By identity; a shipment written before lines had identities holds
    /// fewer ids than lines, and then every line up to its newest counts as held.
    pub fn holds(&self, key: &EventKey, line: &TraceEvent) -> bool {
        if self.line_ids.binary_search(&key.id).is_ok() {
            return true;
        }
        let legacy = (self.line_ids.len() as u64) < u64::from(self.event_count);
        legacy
            && !line.is_future_dated()
            && self
                .last_event
                .as_ref()
                .is_some_and(|(k, _)| key.time <= k.time)
    }

    /// Record these line identities as held.
    pub fn hold_lines(&mut self, ids: impl IntoIterator<Item = LineId>) {
        self.line_ids.extend(ids);
        self.line_ids.sort_unstable();
        self.line_ids.dedup();
    }

    /// What the check schedule needs to know about this shipment at `now`, under `policy`.
    pub fn schedule_input<'a>(
        &'a self,
        policy: &SchedulePolicy,
        now: DateTime<Utc>,
    ) -> ScheduleInput<'a> {
        let carrier = self.id.carrier.as_str();
        ScheduleInput {
            status: self.status,
            priority: self.priority,
            carrier,
            status_since: self.status_changed_at,
            last_line_at: self.last_event.as_ref().map(|(k, _)| k.time),
            registered_at: self.created_at,
            subscribed: self.is_subscribed(),
            cadence: policy.learned.get(carrier, self.status),
            expiry: policy.expiry,
            now,
        }
    }
}

/// The inputs of the check schedule that are not the shipment's own: the expiry policy and the
/// cadences learned from history. `Default`: the stated defaults of `schedule::Expiry` and
/// `cadence`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchedulePolicy {
    pub expiry: Expiry,
    pub learned: LearnedCadence,
}

impl SchedulePolicy {
    /// This policy with what `history` has learned of `carrier`'s cadence filled in where the
    /// policy sets none ([`LearnedCadence::learn_from`]): what a check of one of its parcels
    /// runs under.
    pub fn with_history(
        &self,
        history: &dyn super::stall::StageHistory,
        carrier: &str,
    ) -> SchedulePolicy {
        let mut out = self.clone();
        out.learned.learn_from(history, carrier);
        out
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
    pub fn between(
        old: (Status, Option<&SubStatus>),
        new: (Status, Option<&SubStatus>),
    ) -> Option<Transition> {
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
