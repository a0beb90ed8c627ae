//! Push and poll agree: a property over generated journeys.
//!
//! A journey is a carrier's trace growing over a few days: cumulative answers, some with a
//! line revealed late (dated before lines already shown), and from some answer on a line dated
//! in 2099 (a scanner with a wrong clock). It is folded twice through the one write path
//! (`tracking::apply` over the in-memory store):
//! - **canonical**: every answer once, by poll, lines in order;
//! - **variant**: every answer by poll or by push at random, its lines shuffled, some answers
//!   delivered twice, and older answers replayed after newer ones (a provider's cache), each
//!   extra delivery at the moment of a canonical one.
//!
//! Both run under the same context, with or without a learned history (in which the journey's
//! route has a p90, so `late` can be raised and cleared). The property: the same stored
//! shipment (but for the bookkeeping of who answered: `last_push_at`, `last_provider`, and the
//! versions, which count writes), the same stored lines — every distinct line of the journey,
//! none twice — and the same transitions in the same order, so the same notifications.

use chrono::{DateTime, Duration, TimeZone, Utc};
use parcelwatch::domain::stall::LearnedHistory;
use parcelwatch::domain::{
    CheckContext, EventKey, Observation, Priority, Recipient, Shipment, ShipmentId, Source, Status,
    SubStatus, TraceEvent, TraceSnapshot,
};
use parcelwatch::store::{MemoryStore, ShipmentStore};
use parcelwatch::tracking::{apply, Applied};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 1, 0, 0).unwrap()
}

/// The stages a line can report, in journey order, with the Kdniao code the answer carries.
const STAGES: [(Status, &str); 6] = [
    (Status::PickedUp, "1"),
    (Status::InTransit, "2"),
    (Status::ArrivedAtDestinationCity, "201"),
    (Status::OutForDelivery, "202"),
    (Status::AvailableForPickup, "211"),
    (Status::Delivered, "3"),
];

#[derive(Debug, Clone)]
struct Journey {
    /// Every line, ascending by time.
    lines: Vec<TraceEvent>,
    /// Answer `i` shows the lines whose index is below `shown[i]`, except the late ones not
    /// yet revealed; it is observed at `at[i]`.
    shown: Vec<usize>,
    at: Vec<DateTime<Utc>>,
    /// (line index, answer index from which it is shown): a line the carrier adds late.
    late: Option<(usize, usize)>,
    /// The answer from which a line dated 2099-01-01 is in every answer.
    future_from: Option<usize>,
}

impl Journey {
    fn answer(&self, i: usize) -> TraceSnapshot {
        let mut events: Vec<TraceEvent> = self.lines[..self.shown[i]]
            .iter()
            .enumerate()
            .filter(|(n, _)| !matches!(self.late, Some((l, from)) if *n == l && i < from))
            .map(|(_, e)| e.clone())
            .collect();
        if self.future_from.is_some_and(|f| i >= f) {
            events.push(TraceEvent {
                time: Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap(),
                description: "【北京市】快件已签收 (scanner clock wrong)".into(),
                location: Some("北京市".into()),
                ..TraceEvent::default()
            });
        }
        let newest = events
            .iter()
            .filter(|e| e.time.year() < 2099)
            .max_by_key(|e| e.time)
            .and_then(|e| e.status)
            .unwrap_or(Status::Pending);
        let code = STAGES
            .iter()
            .find(|(s, _)| *s == newest)
            .map_or("0", |(_, c)| c);
        TraceSnapshot {
            status: newest,
            sub_status: Some(SubStatus::new("kdniao", code)),
            events,
        }
    }

    /// Every line shown by the answers up to the first that closes the parcel (nothing is
    /// taken after that), the late one included once revealed.
    fn distinct_lines(&self) -> BTreeSet<String> {
        let mut all = BTreeSet::new();
        for i in 0..self.shown.len() {
            let answer = self.answer(i);
            let done = answer.status.is_terminal();
            all.extend(answer.events.into_iter().map(|e| e.description));
            if done {
                break;
            }
        }
        all
    }
}

use chrono::Datelike;

prop_compose! {
    fn journey()(
        gaps in prop::collection::vec(10i64..(30 * 60), 3..9),
        stage_steps in prop::collection::vec(0usize..2, 8),
        answers in 2usize..7,
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 6),
        delays in prop::collection::vec(1i64..240, 6),
        late in any::<Option<(prop::sample::Index, prop::sample::Index)>>(),
        future in any::<Option<prop::sample::Index>>(),
    ) -> Journey {
        let mut lines = Vec::new();
        let mut t = start();
        let mut stage = 0usize;
        for (i, gap) in gaps.iter().enumerate() {
            t += Duration::minutes(*gap);
            if i > 0 {
                stage = (stage + stage_steps[i % stage_steps.len()]).min(STAGES.len() - 1);
            }
            let (status, code) = STAGES[stage];
            let city = if status.progress() >= Status::ArrivedAtDestinationCity.progress() {
                "北京市"
            } else {
                "杭州市"
            };
            lines.push(TraceEvent {
                time: t,
                description: format!("【{city}】line {i} {status}"),
                location: Some(city.into()),
                status: Some(status),
                raw_code: Some(code.into()),
                claimed_time: None,
            });
            if status == Status::Delivered {
                break;
            }
        }
        let n = lines.len();
        // Cumulative cut points, ending with the whole trace.
        let mut shown: Vec<usize> = cuts[..answers - 1].iter().map(|c| 1 + c.index(n)).collect();
        shown.push(n);
        shown.sort_unstable();
        let mut at = Vec::new();
        let mut last = start();
        for (i, s) in shown.iter().enumerate() {
            let newest = lines[s - 1].time;
            let when = newest.max(last) + Duration::minutes(delays[i]);
            at.push(when);
            last = when;
        }
        let late = late.and_then(|(l, from)| {
            let l = l.index(n);
            let from = from.index(shown.len());
            // Hidden from the answers before `from` that would otherwise show it.
            (from > 0 && shown[from - 1] > l + 1).then_some((l, from))
        });
        let future_from = future.map(|f| f.index(shown.len()));
        Journey { lines, shown, at, late, future_from }
    }
}

/// How one answer of the variant is delivered.
#[derive(Debug, Clone)]
struct Delivery {
    push: bool,
    shuffle: u64,
    twice: bool,
    /// Replay this many answers back after it (0: none), at the same moment.
    replay_back: usize,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        any::<bool>(),
        any::<u64>(),
        prop::bool::weighted(0.25),
        0usize..3,
    )
        .prop_map(|(push, shuffle, twice, replay_back)| Delivery {
            push,
            shuffle,
            twice,
            replay_back,
        })
}

fn shuffled(mut snap: TraceSnapshot, seed: u64) -> TraceSnapshot {
    // A small deterministic shuffle (xorshift), enough to put lines out of order.
    let mut x = seed | 1;
    for i in (1..snap.events.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        snap.events.swap(i, (x % (i as u64 + 1)) as usize);
    }
    snap
}

/// Zhejiang → Beijing YTO deliveries taking 40–50 h, and transit gaps of 2–8 h: a journey
/// slower than 1.25 × p90 is late; quiet longer than the learned threshold is stalled.
fn history() -> Arc<LearnedHistory> {
    let mut h = LearnedHistory::new();
    for i in 0..60 {
        let s = start() - Duration::days(30);
        let took = Duration::hours(40 + (i % 11));
        h.learn(
            "YTO",
            Some("浙江"),
            Some("北京"),
            &[
                (s, Status::PickedUp),
                (s + Duration::hours(2 + (i % 7)), Status::InTransit),
                (s + took - Duration::hours(3), Status::OutForDelivery),
                (s + took, Status::Delivered),
            ],
        );
    }
    Arc::new(h)
}

struct Folded {
    shipment: Shipment,
    lines: Vec<(EventKey, TraceEvent)>,
    transitions: Vec<String>,
}

fn id() -> ShipmentId {
    ShipmentId::parse("YTO", "YT7412345678901").unwrap()
}

/// Fold `steps` (answer, delivered by push?, moment) through the write path.
fn fold(steps: &[(TraceSnapshot, bool, DateTime<Utc>)], ctx: &CheckContext) -> Folded {
    let store = MemoryStore::new(4);
    store.insert(Shipment::register(
        id(),
        Priority::Normal,
        "kdniao",
        Recipient::default(),
        None,
        start(),
    ));
    let mut transitions = Vec::new();
    futures::executor::block_on(async {
        for (snap, push, now) in steps {
            let source = if *push {
                Source::Push
            } else {
                Source::Poll { provider: "kdniao" }
            };
            let seen = Observation::Trace {
                snapshot: snap,
                source,
            };
            match apply(&store, &id(), None, seen, ctx, *now).await.unwrap() {
                Applied::Written {
                    transition: Some(t),
                    ..
                } => transitions.push(t.key()),
                Applied::Written { .. } | Applied::AlreadyFinal => {}
                other => panic!("{other:?}"),
            }
        }
    });
    let mut shipment = store.shipment(&id()).unwrap();
    shipment.last_push_at = None;
    shipment.last_provider = None;
    shipment.version = 0;
    shipment.sched_version = 0;
    let lines = futures::executor::block_on(store.trace(&id(), 1000)).unwrap();
    Folded {
        shipment,
        lines,
        transitions,
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn push_and_poll_in_any_interleaving_store_the_same_parcel(
        j in journey(),
        plan in prop::collection::vec(delivery(), 6),
        learned in any::<bool>(),
    ) {
        let ctx = if learned {
            CheckContext::new(history())
        } else {
            CheckContext::standalone()
        };
        let canonical: Vec<_> = (0..j.shown.len()).map(|i| (j.answer(i), false, j.at[i])).collect();
        let mut variant = Vec::new();
        for (i, d) in plan.iter().take(j.shown.len()).enumerate() {
            let answer = shuffled(j.answer(i), d.shuffle);
            variant.push((answer.clone(), d.push, j.at[i]));
            if d.twice {
                variant.push((answer, !d.push, j.at[i]));
            }
            if d.replay_back > 0 && i >= d.replay_back {
                variant.push((j.answer(i - d.replay_back), d.push, j.at[i]));
            }
        }
        let a = fold(&canonical, &ctx);
        let b = fold(&variant, &ctx);
        prop_assert_eq!(&a.transitions, &b.transitions);
        prop_assert_eq!(&a.shipment, &b.shipment);
        prop_assert_eq!(&a.lines, &b.lines);
        // Every distinct line of the journey is stored once: a future-dated line hides none,
        // a line revealed late is kept in its place.
        let stored: BTreeSet<String> = b.lines.iter().map(|(_, e)| e.description.clone()).collect();
        prop_assert_eq!(stored.len(), b.lines.len(), "a line stored twice");
        prop_assert_eq!(stored, j.distinct_lines());
        prop_assert_eq!(b.shipment.event_count as usize, b.lines.len());
        // The schedule is sane: a parcel still on its way is checked again within a day of its
        // last observation, never before it.
        let last = *j.at.last().unwrap();
        if let Some(next) = b.shipment.next_check_at {
            prop_assert!(next >= last && next <= last + Duration::days(1), "next check {next}");
        } else {
            prop_assert!(b.shipment.status.is_terminal());
        }
    }
}
