//! The one write path from a decision to the table, shared by the tracker (polls, refusals,
//! waits, subscriptions) and the api's push routes: take the shipment as held (or read it),
//! [`decide`] under the caller's [`CheckContext`], write the decision conditionally on the
//! version read, and on a lost race re-read and decide again.

use crate::domain::{decide, CheckContext, Observation, Shipment, ShipmentId, Transition};
use crate::store::{ShipmentStore, StoreError, WriteKind};
use chrono::{DateTime, Utc};

pub use crate::domain::Source;

/// Conditional-write races retried before giving up (the caller retries later).
pub const CONFLICT_ATTEMPTS: u32 = 3;

/// What applying one observation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Written {
        transition: Option<Transition>,
        new_events: usize,
        /// The `META` version now (a hot write leaves it).
        version: u64,
        /// The schedule alone (`SCHED`), or the whole shipment.
        kind: WriteKind,
    },
    /// Tracking had already stopped (terminal status): nothing written.
    AlreadyFinal,
    /// No such shipment in the table.
    NotRegistered,
    /// Someone else wrote the shipment first and the observation says to leave theirs standing
    /// (a stated wait: whatever they wrote was decided on fresher news).
    Superseded,
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

/// Apply `observation` to shipment `id` and write the decision. `held` is the shipment as the
/// caller has just read it (the tracker reads its batch at once), saving a read; `None` reads
/// it here. The write is conditional on the version decided on, so a change made meanwhile (a
/// push during a poll) loses nothing: the write fails, the shipment is read afresh and the
/// observation decided again on it. Idempotent: the same trace twice adds no line and no
/// transition the second time.
///
/// The write is one of two kinds ([`WriteKind::of`]): a decision that changes only the
/// schedule (a check without news) puts the small `SCHED` item alone; any other puts the lines,
/// `SCHED`, then `META`. Both are conditional on `SCHED`'s `sv`, which every write bumps, so a
/// hot write and a full one serialize there; a full write that took `SCHED` and then loses
/// `META` to another writer is a conflict like any other: re-read (its `SCHED` now ahead of
/// `META`, which makes the next write a full one) and decided again.
pub async fn apply<S: ShipmentStore>(
    store: &S,
    id: &ShipmentId,
    held: Option<Shipment>,
    observation: Observation<'_>,
    ctx: &CheckContext,
    now: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
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
            leave_the_due_index(store, &shipment).await?;
            return Ok(Applied::AlreadyFinal);
        }
        let d = decide(&shipment, observation, ctx, now);
        match store.save(&shipment, &d.updated, &d.new_events).await {
            Ok(saved) => {
                let version = saved.version;
                if let Some(tr) = &d.transition {
                    tracing::info!(from = %tr.from, to = %tr.to,
                        sub_status = ?tr.to_sub.as_ref().map(|s| s.to_string()),
                        new_events = d.new_events.len(), version, "status transition");
                }
                if let (Some(ig), Observation::Trace { snapshot, source }) =
                    (d.ignored, observation)
                {
                    tracing::info!(reason = ?ig, provider_status = %snapshot.status, source = ?source,
                        "provider answer not applied");
                }
                return Ok(Applied::Written {
                    transition: d.transition,
                    new_events: d.new_events.len(),
                    version,
                    kind: saved.kind,
                });
            }
            Err(StoreError::Conflict(_)) if matches!(observation, Observation::Wait { .. }) => {
                return Ok(Applied::Superseded)
            }
            Err(StoreError::Conflict(reason)) => {
                tracing::info!(attempt, %reason, "lost a write race; re-reading");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApplyError::Contended { id: id.clone() })
}

/// A final shipment still due (`next_check_at` set) is in the due index: the `SCHED` put of a
/// write that was cut short or lost its race, decided before the shipment became final,
/// outlived it. Take the entry out (a write of the schedule alone), or the stuck sweep would
/// send it back every lease. Nothing to do for any other shipment; a lost race is left to the
/// writer that won it.
pub async fn leave_the_due_index<S: ShipmentStore>(
    store: &S,
    shipment: &Shipment,
) -> Result<(), StoreError> {
    if !shipment.status.is_terminal() || shipment.next_check_at.is_none() {
        return Ok(());
    }
    tracing::warn!(shipment = %shipment.id, "final but still due; taking it out of the due index");
    let mut out = shipment.clone();
    out.next_check_at = None;
    match store.save(shipment, &out, &[]).await {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Priority, Recipient, Shipment, Status, SubStatus, TraceEvent};
    use crate::domain::{SchedulePolicy, TraceSnapshot};
    use crate::store::MemoryStore;

    /// A trace applied by `source` with the stated defaults and no history.
    async fn apply_snapshot(
        store: &MemoryStore,
        id: &ShipmentId,
        snapshot: &TraceSnapshot,
        source: Source,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        let obs = Observation::Trace { snapshot, source };
        apply(store, id, None, obs, &CheckContext::standalone(), now).await
    }
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
                    claimed_time: None,
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
                kind,
            } => {
                assert_eq!(transition.map(|t| t.to), Some(Status::InTransit));
                assert_eq!(new_events, 3);
                assert_eq!((version, kind), (1, WriteKind::Full));
            }
            other => panic!("unexpected {other:?}"),
        }
        let stored = store.shipment(&id).unwrap();
        assert_eq!(stored.last_push_at, Some(now()));
        assert_eq!(
            stored.next_check_at,
            Some(now() + crate::domain::SAFETY_NET)
        );
        // The same push again, at the same moment: nothing new, nothing moved but the
        // schedule's own write (SCHED alone, META's version stays).
        let again = apply_snapshot(&store, &id, &snap, Source::Push, now())
            .await
            .unwrap();
        assert_eq!(
            again,
            Applied::Written {
                transition: None,
                new_events: 0,
                version: 1,
                kind: WriteKind::Hot,
            }
        );
        // A minute later it moves `last_push_at`, which is not a hot field: a full write.
        let later = apply_snapshot(
            &store,
            &id,
            &snap,
            Source::Push,
            now() + chrono::Duration::minutes(1),
        )
        .await
        .unwrap();
        assert!(
            matches!(
                later,
                Applied::Written {
                    version: 2,
                    kind: WriteKind::Full,
                    ..
                }
            ),
            "{later:?}"
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
        apply(
            &store,
            &id,
            None,
            Observation::Trace {
                snapshot: &snap,
                source: poll,
            },
            &CheckContext::standalone().with_policy(policy),
            day3,
        )
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
        let out = apply(
            &store,
            &id,
            Some(held),
            Observation::poll(&snapshot(Status::InTransit, "2", 5), "kdniao"),
            &CheckContext::standalone(),
            now(),
        )
        .await
        .unwrap();
        match out {
            Applied::Written {
                transition,
                new_events,
                version,
                ..
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
        let again = apply(
            &store,
            &id,
            Some(fresh),
            Observation::poll(&snapshot(Status::InTransit, "2", 6), "kdniao"),
            &CheckContext::standalone(),
            now(),
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
        let out = apply(
            &store,
            &id,
            Some(other),
            Observation::poll(&snapshot(Status::InTransit, "2", 6), "kdniao"),
            &CheckContext::standalone(),
            now(),
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
            claimed_time: None,
        });
        let history = std::sync::Arc::new(history);
        let mut wants = Vec::new();
        for learned in [false, true] {
            let (store, id) = store_with(false);
            let mut s = store.shipment(&id).unwrap();
            s.priority = Priority::High;
            store.insert(s);
            let ctx = if learned {
                CheckContext::new(history.clone())
            } else {
                CheckContext::standalone()
            };
            apply(
                &store,
                &id,
                None,
                Observation::poll(&snap, "kdniao"),
                &ctx,
                now(),
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

    // ---------------------------------------------------------------------------------------
    // Hot and full writes
    // ---------------------------------------------------------------------------------------

    fn poll(snap: &TraceSnapshot) -> Observation<'_> {
        Observation::poll(snap, "kdniao")
    }

    fn meta_writes(store: &MemoryStore) -> u64 {
        store.meta_writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The due entries of the store's shipments (every shard), as the scheduler reads them.
    async fn due_entries(store: &MemoryStore, until: DateTime<Utc>) -> Vec<(String, String)> {
        use crate::store::DueIndex;
        let mut out = Vec::new();
        for shard in 0..store.shards() {
            for e in store.due_between(shard, None, until, 100).await.unwrap() {
                out.push((e.id.to_string(), e.sk));
            }
        }
        out
    }

    /// A created shipment, then its first check (full: it moves the due keys off `META`),
    /// then a check that finds nothing new: `SCHED` alone, `META` as it was.
    #[tokio::test]
    async fn a_check_without_news_writes_the_schedule_alone() {
        let store = MemoryStore::new(2);
        let id = ShipmentId::parse("YTO", "YT1000000000001").unwrap();
        let created = Shipment::register(
            id.clone(),
            Priority::Normal,
            "kdniao",
            Recipient::default(),
            None,
            now() - chrono::Duration::days(1),
        );
        assert!(store.create(&created).await.unwrap());
        let far = now() + chrono::Duration::days(60);
        assert_eq!(
            due_entries(&store, far).await,
            [(id.to_string(), "META".to_string())]
        );
        let ctx = CheckContext::standalone();
        let snap = snapshot(Status::InTransit, "2", 3);

        // The first check: lines and a transition, a full write; the due keys move to SCHED.
        let first = apply(&store, &id, None, poll(&snap), &ctx, now())
            .await
            .unwrap();
        assert!(
            matches!(
                first,
                Applied::Written {
                    version: 1,
                    kind: WriteKind::Full,
                    ..
                }
            ),
            "{first:?}"
        );
        let items = store.items(&id).unwrap();
        assert!(!items.meta.needs_full_write, "META without due keys");
        assert_eq!(
            items.sched.as_ref().map(|h| (h.sv, h.version)),
            Some((1, 1))
        );
        assert_eq!(
            due_entries(&store, far).await,
            [(id.to_string(), "SCHED".to_string())]
        );
        let writes = meta_writes(&store);

        // Nothing new 30 minutes later: SCHED alone, `version` unchanged, `sv` + 1.
        let later = now() + chrono::Duration::minutes(30);
        let again = apply(&store, &id, None, poll(&snap), &ctx, later)
            .await
            .unwrap();
        assert_eq!(
            again,
            Applied::Written {
                transition: None,
                new_events: 0,
                version: 1,
                kind: WriteKind::Hot,
            }
        );
        let after = store.items(&id).unwrap();
        assert_eq!(after.meta, items.meta, "META untouched");
        assert_eq!(
            meta_writes(&store),
            writes,
            "no META write, no stream record"
        );
        let read = store.shipment(&id).unwrap();
        assert_eq!((read.version, read.sched_version), (1, 2));
        assert_eq!(
            read.checked_at,
            Some(later),
            "the read lays SCHED over META"
        );
        assert_ne!(read.next_check_at, items.meta.next_check_at);
        assert_eq!(after.sched.unwrap().next_check_at, read.next_check_at);

        // A new line: a full write, both versions bumped, META carrying the hot fields too.
        let more = snapshot(Status::InTransit, "2", 4);
        let news = apply(&store, &id, None, poll(&more), &ctx, later)
            .await
            .unwrap();
        assert!(
            matches!(
                news,
                Applied::Written {
                    new_events: 1,
                    version: 2,
                    kind: WriteKind::Full,
                    ..
                }
            ),
            "{news:?}"
        );
        let full = store.items(&id).unwrap();
        assert_eq!(full.sched.as_ref().map(|h| (h.sv, h.version)), Some((3, 2)));
        assert_eq!(full.meta.checked_at, Some(later));
        assert_eq!(
            full.meta.next_check_at,
            store.shipment(&id).unwrap().next_check_at
        );
        assert_eq!(meta_writes(&store), writes + 1);

        // A transition without a line (a Kdniao 403 verdict) is always a full write.
        let verdict = snapshot(Status::Exception, "403", 4);
        let moved = apply(&store, &id, None, poll(&verdict), &ctx, later)
            .await
            .unwrap();
        match moved {
            Applied::Written {
                transition: Some(_),
                new_events: 0,
                version: 3,
                kind: WriteKind::Full,
            } => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(store.shipment(&id).unwrap().sched_version, 4);
    }

    /// A shipment as created carries its due keys on `META`: its first write is a full one
    /// even when the check finds nothing, and moves them to `SCHED`.
    #[tokio::test]
    async fn the_first_write_after_creation_is_full_and_moves_the_due_keys() {
        let (store, id) = store_with(false);
        let nothing = TraceSnapshot {
            status: Status::Pending,
            sub_status: None,
            events: Vec::new(),
        };
        let ctx = CheckContext::standalone();
        let first = apply(&store, &id, None, poll(&nothing), &ctx, now())
            .await
            .unwrap();
        assert!(
            matches!(
                first,
                Applied::Written {
                    transition: None,
                    version: 1,
                    kind: WriteKind::Full,
                    ..
                }
            ),
            "{first:?}"
        );
        let far = now() + chrono::Duration::days(60);
        assert_eq!(
            due_entries(&store, far).await,
            [(id.to_string(), "SCHED".to_string())]
        );
        let later = now() + chrono::Duration::hours(1);
        let second = apply(&store, &id, None, poll(&nothing), &ctx, later)
            .await
            .unwrap();
        assert!(
            matches!(
                second,
                Applied::Written {
                    version: 1,
                    kind: WriteKind::Hot,
                    ..
                }
            ),
            "{second:?}"
        );
    }

    /// A full writer (new lines and a transition) and a hot one (a check of an older cached
    /// answer) race on one shipment, in each order and with the full write cut between its two
    /// puts: whoever loses re-reads and decides again; the lines and the transition are kept.
    #[tokio::test]
    async fn a_hot_and_a_full_writer_race_and_nothing_is_lost() {
        let ctx = CheckContext::standalone();
        let old = snapshot(Status::InTransit, "2", 3);
        let new = snapshot(Status::OutForDelivery, "202", 5);
        let t1 = now() + chrono::Duration::minutes(30);
        let settled = || async {
            let (store, id) = store_with(false);
            apply(&store, &id, None, poll(&old), &ctx, now())
                .await
                .unwrap();
            (store, id)
        };
        let check = |store: &MemoryStore, id: &ShipmentId| {
            let s = store.shipment(id).unwrap();
            assert_eq!(s.status, Status::OutForDelivery, "the transition is kept");
            assert_eq!((s.event_count, store.event_count(id)), (5, 5), "every line");
            assert_eq!(s.line_ids.len(), 5);
            assert!(!s.needs_full_write);
            let items = store.items(id).unwrap();
            assert_eq!(items.sched.unwrap().version, items.meta.version, "in step");
        };

        // The hot writer first: the full one's copy is stale at SCHED; it re-reads.
        let (store, id) = settled().await;
        let held = store.shipment(&id).unwrap();
        let hot = apply(&store, &id, Some(held.clone()), poll(&old), &ctx, t1)
            .await
            .unwrap();
        assert!(
            matches!(
                hot,
                Applied::Written {
                    kind: WriteKind::Hot,
                    ..
                }
            ),
            "{hot:?}"
        );
        let full = apply(&store, &id, Some(held), poll(&new), &ctx, t1)
            .await
            .unwrap();
        assert!(
            matches!(
                full,
                Applied::Written {
                    transition: Some(_),
                    new_events: 2,
                    kind: WriteKind::Full,
                    ..
                }
            ),
            "{full:?}"
        );
        check(&store, &id);

        // The full writer first: the hot one's copy is stale; it re-reads and decides on the
        // news (no transition twice, nothing new: a hot write again).
        let (store, id) = settled().await;
        let held = store.shipment(&id).unwrap();
        apply(&store, &id, Some(held.clone()), poll(&new), &ctx, t1)
            .await
            .unwrap();
        let hot = apply(&store, &id, Some(held), poll(&old), &ctx, t1)
            .await
            .unwrap();
        assert!(
            matches!(
                hot,
                Applied::Written {
                    transition: None,
                    new_events: 0,
                    kind: WriteKind::Hot,
                    ..
                }
            ),
            "{hot:?}"
        );
        check(&store, &id);

        // The full writer's SCHED lands, then the other check runs whole, then the full
        // writer's META put: it finds META moved, re-reads and decides its answer again.
        /// Runs `between` after the first full write's SCHED put, before its META put.
        struct Cut<'a> {
            store: &'a MemoryStore,
            between: std::sync::Mutex<Option<Box<dyn FnOnce() + Send + 'a>>>,
        }
        impl ShipmentStore for Cut<'_> {
            async fn get(&self, id: &ShipmentId) -> Result<Option<Shipment>, StoreError> {
                self.store.get(id).await
            }
            async fn create(&self, s: &Shipment) -> Result<bool, StoreError> {
                self.store.create(s).await
            }
            async fn trace(
                &self,
                id: &ShipmentId,
                limit: usize,
            ) -> Result<Vec<(crate::domain::EventKey, TraceEvent)>, StoreError> {
                self.store.trace(id, limit).await
            }
            async fn save(
                &self,
                held: &Shipment,
                updated: &Shipment,
                lines: &[(crate::domain::EventKey, TraceEvent)],
            ) -> Result<crate::store::Saved, StoreError> {
                let between = self.between.lock().unwrap().take();
                match between {
                    Some(between) => {
                        let pending = self.store.save_until_meta(held, updated, lines)?;
                        between();
                        self.store.finish(pending.expect("a full write"))?;
                        unreachable!("META moved meanwhile: the write above must conflict")
                    }
                    None => self.store.save(held, updated, lines).await,
                }
            }
        }
        let (store, id) = settled().await;
        let versions_before = store.items(&id).unwrap().meta.version;
        let other = || {
            // It reads SCHED ahead of META (the cut write's), so its own write is a full one:
            // it takes SCHED from under the cut writer and puts META first.
            let out = futures::executor::block_on(apply(&store, &id, None, poll(&old), &ctx, t1))
                .unwrap();
            assert!(
                matches!(
                    out,
                    Applied::Written {
                        kind: WriteKind::Full,
                        ..
                    }
                ),
                "{out:?}"
            );
        };
        let cut = Cut {
            store: &store,
            between: std::sync::Mutex::new(Some(Box::new(other))),
        };
        let full = apply(&cut, &id, None, poll(&new), &ctx, t1).await.unwrap();
        assert!(
            matches!(
                full,
                Applied::Written {
                    transition: Some(_),
                    new_events: 2,
                    kind: WriteKind::Full,
                    ..
                }
            ),
            "{full:?}"
        );
        assert_eq!(store.items(&id).unwrap().meta.version, versions_before + 2);
        check(&store, &id);
    }

    /// A write that lost its race after its SCHED put (or whose writer died there) can leave a
    /// final shipment in the due index. The next check of it takes the entry out.
    #[tokio::test]
    async fn a_final_shipment_left_in_the_due_index_is_taken_out() {
        let (store, id) = store_with(false);
        let ctx = CheckContext::standalone();
        let done = snapshot(Status::Delivered, "3", 3);
        apply(&store, &id, None, poll(&done), &ctx, now())
            .await
            .unwrap();
        let mut s = store.shipment(&id).unwrap();
        assert_eq!(s.next_check_at, None);
        // META final, SCHED still due (what the loser's SCHED put left).
        s.next_check_at = Some(now() + chrono::Duration::minutes(10));
        store.insert(s);
        let far = now() + chrono::Duration::days(1);
        assert_eq!(due_entries(&store, far).await.len(), 1);
        let out = apply(&store, &id, None, poll(&done), &ctx, far)
            .await
            .unwrap();
        assert_eq!(out, Applied::AlreadyFinal);
        assert!(due_entries(&store, far).await.is_empty());
        assert_eq!(store.shipment(&id).unwrap().status, Status::Delivered);
    }
}
