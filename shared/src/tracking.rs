//! The one path from a provider's answer to the table, shared by the tracker (poll) and the
//! api's push routes: read the shipment, fold the snapshot in with the pure [`apply_check`](crate::domain::apply_check),
//! write conditionally on its version, and on a lost race re-read and fold again.

use crate::domain::schedule::respect_requery_floor;
use crate::domain::{apply_check_with, SchedulePolicy, ShipmentId, TraceSnapshot, Transition};
use crate::domain::{stall, NoHistory, StageHistory};
use crate::store::{ShipmentStore, StoreError};
use chrono::{DateTime, Utc};

/// Conditional-write races retried before giving up (the caller retries later).
pub const CONFLICT_ATTEMPTS: u32 = 3;

/// How the answer reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// We asked this provider (tracker).
    Poll { provider: &'static str },
    /// The provider pushed it (api push routes).
    Push,
}

/// What folding one answer did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Written {
        transition: Option<Transition>,
        new_events: usize,
        version: u64,
    },
    /// Tracking had already stopped (terminal status): nothing written.
    AlreadyFinal,
    /// No such shipment in the table.
    NotRegistered,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{id}: still contended after {CONFLICT_ATTEMPTS} attempts")]
    Contended { id: ShipmentId },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApplyError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ApplyError::Contended { .. } => true,
            ApplyError::Store(e) => e.is_retryable(),
        }
    }
}

/// Fold `snapshot` into the stored shipment `id` and write it. Idempotent: applying the same
/// snapshot twice adds no line and no transition the second time. Schedules with the default
/// [`SchedulePolicy`] and judges stalls on the stages' fallback thresholds; see
/// [`apply_snapshot_with`].
pub async fn apply_snapshot<S: ShipmentStore>(
    store: &S,
    id: &ShipmentId,
    snapshot: &TraceSnapshot,
    source: Source,
    now: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
    apply_snapshot_with(
        store,
        id,
        snapshot,
        source,
        now,
        &SchedulePolicy::default(),
        &NoHistory,
    )
    .await
}

/// [`apply_snapshot`] under an explicit schedule policy (expiry windows, learned cadences),
/// judging stalls and delays against `history` ([`stall::settle`] runs right after
/// [`apply_check_with`], inside the write race, so the flag is decided on the shipment that is
/// written).
pub async fn apply_snapshot_with<S: ShipmentStore>(
    store: &S,
    id: &ShipmentId,
    snapshot: &TraceSnapshot,
    source: Source,
    now: DateTime<Utc>,
    policy: &SchedulePolicy,
    history: &(dyn StageHistory + Sync),
) -> Result<Applied, ApplyError> {
    apply_snapshot_to(store, id, None, snapshot, source, now, policy, history).await
}

/// [`apply_snapshot_with`] starting from `held`, the shipment as the caller has just read it
/// (the tracker reads it before asking the provider): one read fewer per check. The write is
/// conditional on `held`'s version, so a change made meanwhile (a push) loses nothing: the
/// write fails, the shipment is read afresh and the snapshot applied to it.
#[allow(clippy::too_many_arguments)]
pub async fn apply_snapshot_to<S: ShipmentStore>(
    store: &S,
    id: &ShipmentId,
    held: Option<crate::domain::Shipment>,
    snapshot: &TraceSnapshot,
    source: Source,
    now: DateTime<Utc>,
    policy: &SchedulePolicy,
    history: &(dyn StageHistory + Sync),
) -> Result<Applied, ApplyError> {
    let policy = policy.with_history(history, id.carrier.as_str());
    let mut held = held.filter(|s| s.id == *id);
    for attempt in 0..CONFLICT_ATTEMPTS {
        let shipment = match held.take() {
            Some(s) => s,
            None => match store.get(id).await? {
                Some(s) => s,
                None => return Ok(Applied::NotRegistered),
            },
        };
        if shipment.status.is_terminal() {
            return Ok(Applied::AlreadyFinal);
        }
        let mut outcome = apply_check_with(&shipment, snapshot, now, &policy);
        let facts = stall::Facts::from_snapshot(snapshot);
        stall::settle(&shipment, &mut outcome, &facts, history, now);
        match source {
            Source::Push => outcome.updated.last_push_at = Some(now),
            Source::Poll { provider } => {
                outcome.updated.last_provider = Some(provider.to_string());
                outcome.updated.next_check_at =
                    respect_requery_floor(outcome.updated.next_check_at, provider, now);
            }
        }
        match store.save(&outcome.updated, &outcome.new_events).await {
            Ok(version) => {
                if let Some(tr) = &outcome.transition {
                    tracing::info!(from = %tr.from, to = %tr.to,
                        sub_status = ?tr.to_sub.as_ref().map(|s| s.to_string()),
                        new_events = outcome.new_events.len(), version, source = ?source,
                        "status transition");
                }
                if let Some(ig) = outcome.ignored {
                    tracing::info!(reason = ?ig, provider_status = %snapshot.status, source = ?source,
                        "provider answer not applied");
                }
                return Ok(Applied::Written {
                    transition: outcome.transition,
                    new_events: outcome.new_events.len(),
                    version,
                });
            }
            Err(StoreError::Conflict(reason)) => {
                tracing::info!(attempt, %reason, "lost a write race; re-reading");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApplyError::Contended { id: id.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Priority, Recipient, Shipment, Status, SubStatus, TraceEvent};
    use crate::store::MemoryStore;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
    }

    fn snapshot(status: Status, code: &str, lines: usize) -> TraceSnapshot {
        TraceSnapshot {
            status,
            sub_status: Some(SubStatus::new("kdniao", code)),
            events: (0..lines)
                .map(|i| TraceEvent {
                    time: now() - chrono::Duration::hours(10 - i as i64),
                    description: format!("line {i}"),
                    location: None,
                    status: Some(status),
                    raw_code: Some(code.into()),
                })
                .collect(),
        }
    }

    fn store_with(subscribed: bool) -> (MemoryStore, ShipmentId) {
        let store = MemoryStore::new(2);
        let id = ShipmentId::parse("YTO", "YT1000000000001").unwrap();
        let mut s = Shipment::register(
            id.clone(),
            Priority::Normal,
            "kdniao",
            Recipient::default(),
            None,
            now() - chrono::Duration::days(1),
        );
        if subscribed {
            s.subscribed_at = Some(now() - chrono::Duration::days(1));
        }
        store.insert(s);
        (store, id)
    }

    #[tokio::test]
    async fn a_push_is_applied_once_and_resets_the_safety_net() {
        let (store, id) = store_with(true);
        let snap = snapshot(Status::InTransit, "2", 3);
        let first = apply_snapshot(&store, &id, &snap, Source::Push, now())
            .await
            .unwrap();
        match first {
            Applied::Written {
                transition,
                new_events,
                version,
            } => {
                assert_eq!(transition.map(|t| t.to), Some(Status::InTransit));
                assert_eq!(new_events, 3);
                assert_eq!(version, 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        let stored = store.shipment(&id).unwrap();
        assert_eq!(stored.last_push_at, Some(now()));
        assert_eq!(
            stored.next_check_at,
            Some(now() + crate::domain::SAFETY_NET)
        );
        // The same push again: nothing new.
        let again = apply_snapshot(&store, &id, &snap, Source::Push, now())
            .await
            .unwrap();
        assert_eq!(
            again,
            Applied::Written {
                transition: None,
                new_events: 0,
                version: 2
            }
        );
        assert_eq!(store.event_count(&id), 3);
    }

    #[tokio::test]
    async fn unknown_and_final_shipments_are_reported_not_written() {
        let (store, _) = store_with(false);
        let other = ShipmentId::parse("ZTO", "780000000000003").unwrap();
        let snap = snapshot(Status::Delivered, "3", 1);
        assert_eq!(
            apply_snapshot(&store, &other, &snap, Source::Push, now())
                .await
                .unwrap(),
            Applied::NotRegistered
        );
        let (store, id) = store_with(false);
        apply_snapshot(
            &store,
            &id,
            &snap,
            Source::Poll { provider: "kdniao" },
            now(),
        )
        .await
        .unwrap();
        assert_eq!(
            apply_snapshot(
                &store,
                &id,
                &snap,
                Source::Poll { provider: "kdniao" },
                now()
            )
            .await
            .unwrap(),
            Applied::AlreadyFinal
        );
        let polled = store.shipment(&id).unwrap();
        assert_eq!(polled.last_push_at, None);
        assert_eq!(polled.next_check_at, None);
        assert_eq!(polled.last_provider.as_deref(), Some("kdniao"));
    }

    #[tokio::test]
    async fn a_silent_parcel_is_written_expired_and_leaves_the_due_index() {
        let (store, id) = store_with(false);
        // Lines ending two hours before now(); a check 30 days later finds nothing new.
        let snap = snapshot(Status::InTransit, "2", 9);
        let poll = Source::Poll { provider: "kdniao" };
        apply_snapshot(&store, &id, &snap, poll, now())
            .await
            .unwrap();
        let later = now() + chrono::Duration::days(30);
        let out = apply_snapshot(&store, &id, &snap, poll, later)
            .await
            .unwrap();
        match out {
            Applied::Written { transition, .. } => {
                assert_eq!(
                    transition.map(|t| t.key()),
                    Some("InTransit>Expired".into())
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        let stored = store.shipment(&id).unwrap();
        assert_eq!(stored.status, Status::Expired);
        assert_eq!(stored.next_check_at, None);
        // A shorter window through the policy expires it sooner.
        let (store, id) = store_with(false);
        let policy = SchedulePolicy {
            expiry: crate::domain::Expiry {
                after_last_line: chrono::Duration::days(3),
                ..crate::domain::Expiry::DEFAULT
            },
            ..SchedulePolicy::default()
        };
        apply_snapshot(&store, &id, &snap, poll, now())
            .await
            .unwrap();
        let day3 = now() + chrono::Duration::days(3);
        apply_snapshot_with(&store, &id, &snap, poll, day3, &policy, &NoHistory)
            .await
            .unwrap();
        assert_eq!(store.shipment(&id).unwrap().status, Status::Expired);
    }

    /// The tracker hands in the shipment it read before asking the provider. When a push wrote
    /// meanwhile, that copy is stale: the write fails on its version, the shipment is read
    /// afresh, and both the push's lines and the poll's are kept.
    #[tokio::test]
    async fn a_shipment_held_from_before_a_push_is_reread_not_overwritten() {
        let (store, id) = store_with(false);
        let held = store.shipment(&id).unwrap();
        apply_snapshot(
            &store,
            &id,
            &snapshot(Status::InTransit, "2", 3),
            Source::Push,
            now(),
        )
        .await
        .unwrap();
        let poll = Source::Poll { provider: "kdniao" };
        let out = apply_snapshot_to(
            &store,
            &id,
            Some(held),
            &snapshot(Status::InTransit, "2", 5),
            poll,
            now(),
            &SchedulePolicy::default(),
            &NoHistory,
        )
        .await
        .unwrap();
        match out {
            Applied::Written {
                transition,
                new_events,
                version,
            } => {
                assert_eq!(transition, None, "the push already moved it");
                assert_eq!(new_events, 2);
                assert_eq!(version, 2);
            }
            other => panic!("unexpected {other:?}"),
        }
        let stored = store.shipment(&id).unwrap();
        assert_eq!(stored.event_count, 5);
        assert!(stored.last_push_at.is_some(), "the push's write is kept");
        // A fresh copy is written on the first attempt: one read fewer than apply_snapshot.
        let fresh = store.shipment(&id).unwrap();
        let again = apply_snapshot_to(
            &store,
            &id,
            Some(fresh),
            &snapshot(Status::InTransit, "2", 6),
            poll,
            now(),
            &SchedulePolicy::default(),
            &NoHistory,
        )
        .await
        .unwrap();
        assert!(
            matches!(again, Applied::Written { version: 3, .. }),
            "{again:?}"
        );
        // A copy of another shipment is not used.
        let other = Shipment::register(
            ShipmentId::parse("ZTO", "731234567890123").unwrap(),
            Priority::Normal,
            "kdniao",
            Recipient::default(),
            None,
            now(),
        );
        let out = apply_snapshot_to(
            &store,
            &id,
            Some(other),
            &snapshot(Status::InTransit, "2", 6),
            poll,
            now(),
            &SchedulePolicy::default(),
            &NoHistory,
        )
        .await
        .unwrap();
        assert!(
            matches!(out, Applied::Written { new_events: 0, .. }),
            "{out:?}"
        );
    }

    /// The tracker's history teaches the carrier's cadence: with 120 past rounds of 90 min to
    /// 5 h, a parcel scanned out for delivery 10 minutes ago is not checked every 2 minutes
    /// until its quiet start ends, but at the stage cap (high tier: 60 min).
    #[tokio::test]
    async fn the_history_sets_the_cadence_of_the_next_check() {
        use crate::domain::stall::LearnedHistory;
        let mut history = LearnedHistory::new();
        for i in 0..120 {
            let t0 = now() - chrono::Duration::days(10);
            let gap = chrono::Duration::minutes(90 + 210 * i / 119);
            history.learn(
                "YTO",
                None,
                None,
                &[(t0, Status::OutForDelivery), (t0 + gap, Status::Delivered)],
            );
        }
        let mut snap = snapshot(Status::OutForDelivery, "202", 0);
        snap.events.push(TraceEvent {
            time: now() - chrono::Duration::minutes(10),
            description: "派件中".into(),
            location: None,
            status: Some(Status::OutForDelivery),
            raw_code: Some("202".into()),
        });
        let poll = Source::Poll { provider: "kdniao" };
        let mut wants = Vec::new();
        for learned in [false, true] {
            let (store, id) = store_with(false);
            let mut s = store.shipment(&id).unwrap();
            s.priority = Priority::High;
            store.insert(s);
            let history: &(dyn StageHistory + Sync) = if learned { &history } else { &NoHistory };
            apply_snapshot_with(
                &store,
                &id,
                &snap,
                poll,
                now(),
                &SchedulePolicy::default(),
                history,
            )
            .await
            .unwrap();
            wants.push(store.shipment(&id).unwrap().next_check_at);
        }
        assert_eq!(
            wants,
            [
                Some(now() + chrono::Duration::minutes(2)),
                Some(now() + chrono::Duration::minutes(60))
            ]
        );
    }

    #[tokio::test]
    async fn a_kuaidi100_answer_is_not_followed_by_a_check_within_thirty_minutes() {
        let (store, id) = store_with(false);
        let mut s = store.shipment(&id).unwrap();
        s.priority = Priority::High;
        store.insert(s);
        // Out for delivery at high priority would be checked again in 2 minutes...
        let snap = snapshot(Status::OutForDelivery, "5", 2);
        apply_snapshot(
            &store,
            &id,
            &snap,
            Source::Poll {
                provider: "kuaidi100",
            },
            now(),
        )
        .await
        .unwrap();
        let stored = store.shipment(&id).unwrap();
        // ...but Kuaidi100 allows one query per waybill per 30 minutes.
        assert_eq!(
            stored.next_check_at,
            Some(now() + chrono::Duration::minutes(30))
        );
        assert_eq!(stored.last_provider.as_deref(), Some("kuaidi100"));
    }
}
