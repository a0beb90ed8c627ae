//! A mergeable histogram of durations, for delivery times, time in stage and quiet gaps.
//!
//! The bucket layout is fixed (log-spaced in minutes, eight buckets per doubling), so two
//! histograms of the same quantity add bucket by bucket: the stream consumer adds one sample with
//! a DynamoDB `ADD` on one bucket attribute, and a reader merges rows (every destination of an
//! origin, every route of a carrier) by adding their counts. A bucket spans 9 % of its lower
//! bound (2^(1/8) = 1.0905), so a quantile read from it is within one bucket of the exact one.

use super::shipment::Shipment;
use super::status::Status;
use chrono::Duration;

/// Buckets per doubling of the duration.
pub const BUCKETS_PER_OCTAVE: u32 = 8;
/// Doublings covered above one minute: 2^17 minutes is 91 days, beyond any parcel's journey.
pub const OCTAVES: u32 = 17;
/// Bucket 0 holds durations under a minute; the last bucket also holds everything beyond 2^17
/// minutes.
pub const BUCKETS: usize = (BUCKETS_PER_OCTAVE * OCTAVES) as usize + 2;

/// Lower bound of bucket `i` in minutes (bucket 0 starts at 0).
pub fn bucket_lower(i: usize) -> f64 {
    if i == 0 {
        0.0
    } else {
        2f64.powf((i as f64 - 1.0) / f64::from(BUCKETS_PER_OCTAVE))
    }
}

/// Upper bound (exclusive) of bucket `i` in minutes. The overflow bucket's is where the regular
/// layout would put it, so interpolation inside it stays finite.
pub fn bucket_upper(i: usize) -> f64 {
    if i == 0 {
        1.0
    } else {
        2f64.powf(i as f64 / f64::from(BUCKETS_PER_OCTAVE))
    }
}

/// The bucket a duration of `minutes` falls in. Negative durations (clock skew between a
/// provider's line times) count as zero.
pub fn bucket_of(minutes: f64) -> usize {
    if !minutes.is_finite() || minutes < 1.0 {
        // NaN and negatives land in the first bucket, +inf in the last.
        return if minutes == f64::INFINITY {
            BUCKETS - 1
        } else {
            0
        };
    }
    let guess = (minutes.log2() * f64::from(BUCKETS_PER_OCTAVE)).floor() as i64 + 1;
    let mut i = guess.clamp(1, BUCKETS as i64 - 1) as usize;
    // log2 may land a hair off at the exact bounds: settle on the bucket that holds the value.
    while i > 1 && minutes < bucket_lower(i) {
        i -= 1;
    }
    while i < BUCKETS - 1 && minutes >= bucket_upper(i) {
        i += 1;
    }
    i
}

fn minutes_of(d: Duration) -> f64 {
    d.num_seconds() as f64 / 60.0
}

fn duration_of(minutes: f64) -> Duration {
    Duration::seconds((minutes * 60.0).round() as i64)
}

/// Counts per bucket of the fixed layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
        }
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self::default()
    }

    /// From stored `(bucket, count)` pairs. Buckets outside the layout are refused (they were
    /// written by another layout): `Err` names the first one.
    pub fn from_counts(pairs: impl IntoIterator<Item = (usize, u64)>) -> Result<Self, usize> {
        let mut h = Histogram::new();
        for (i, n) in pairs {
            let slot = h.counts.get_mut(i).ok_or(i)?;
            *slot = slot.saturating_add(n);
        }
        Ok(h)
    }

    /// The non-empty buckets, ascending: what is stored.
    pub fn counts(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i, *n))
    }

    pub fn record(&mut self, d: Duration) {
        let i = bucket_of(minutes_of(d));
        self.counts[i] = self.counts[i].saturating_add(1);
    }

    /// Add another histogram of the same layout.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The duration below which a fraction `q` (0..=1) of the samples lie, interpolated inside
    /// its bucket (geometrically, as the buckets are log-spaced). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.quantile_minutes(q).map(duration_of)
    }

    fn quantile_minutes(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 || !q.is_finite() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        let mut last = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            last = i;
            if (below + n) as f64 >= rank {
                let frac = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(interpolate(i, frac));
            }
            below += n;
        }
        Some(bucket_upper(last))
    }

    /// Fraction of the samples at or below `d` (interpolated inside its bucket the same way).
    pub fn cdf(&self, d: Duration) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let m = minutes_of(d).max(0.0);
        let i = bucket_of(m);
        let below: u64 = self.counts[..i].iter().sum();
        let (lo, hi) = (bucket_lower(i), bucket_upper(i));
        let frac = if i == 0 {
            m / hi
        } else {
            ((m / lo).ln() / (hi / lo).ln()).clamp(0.0, 1.0)
        };
        Some((below as f64 + frac * self.counts[i] as f64) / total as f64)
    }

    /// The `q` quantile of the samples longer than `elapsed`: how long a parcel still on its way
    /// after `elapsed` takes in all, by the parcels that also were. `None` when empty or when no
    /// sample lasted longer.
    pub fn quantile_after(&self, elapsed: Duration, q: f64) -> Option<Duration> {
        let p = self.cdf(elapsed)?;
        if p >= 1.0 - 1e-9 {
            return None;
        }
        let d = self.quantile(p + q.clamp(0.0, 1.0) * (1.0 - p))?;
        Some(d.max(elapsed))
    }
}

/// A point `frac` of the way through bucket `i`.
fn interpolate(i: usize, frac: f64) -> f64 {
    let (lo, hi) = (bucket_lower(i), bucket_upper(i));
    if i == 0 {
        lo + frac * (hi - lo)
    } else {
        lo * (hi / lo).powf(frac)
    }
}

/// Exact quantile of a sample by the same rule as [`Histogram::quantile`] (the smallest value
/// with at least `q` of the samples at or below it): what tests compare the histogram with.
pub fn exact_quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

// ---------------------------------------------------------------------------------------------
// What the history holds, and what one shipment change adds to it.

/// Key part standing for a province not (yet) known.
pub const UNKNOWN_PLACE: &str = "-";

/// One route: a carrier between two provinces ([`UNKNOWN_PLACE`] when not known).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    pub carrier: String,
    pub origin: String,
    pub destination: String,
}

/// Finished parcels of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteStats {
    /// Parcels that reached a terminal status (delivered, returned, expired).
    pub finished: u64,
    pub delivered: u64,
    /// Finished parcels that went through an exception on the way.
    pub exceptions: u64,
    /// First scan → delivered, of the delivered parcels whose first scan is known.
    pub delivery: Histogram,
}

impl RouteStats {
    pub fn merge(&mut self, o: &RouteStats) {
        self.finished += o.finished;
        self.delivered += o.delivered;
        self.exceptions += o.exceptions;
        self.delivery.merge(&o.delivery);
    }

    /// Exceptions among the finished parcels; `None` before any finished.
    pub fn exception_rate(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.exceptions as f64 / self.finished as f64)
    }
}

/// One stage of one carrier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageStats {
    /// From the status being detected to the next status being detected.
    pub time_in_stage: Histogram,
    /// Between two consecutive trace lines while the parcel was at this stage.
    pub quiet_gap: Histogram,
}

impl StageStats {
    pub fn merge(&mut self, o: &StageStats) {
        self.time_in_stage.merge(&o.time_in_stage);
        self.quiet_gap.merge(&o.quiet_gap);
    }
}

/// The delivery history as read back: every route and stage aggregate (of one carrier, or of all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistorySnapshot {
    pub routes: std::collections::BTreeMap<RouteKey, RouteStats>,
    pub stages: std::collections::BTreeMap<(String, Status), StageStats>,
}

impl HistorySnapshot {
    /// The routes of `carrier` from `origin` to `destination` merged (`None` = any province).
    pub fn route(
        &self,
        carrier: &str,
        origin: Option<&str>,
        destination: Option<&str>,
    ) -> RouteStats {
        let mut out = RouteStats::default();
        for (k, v) in &self.routes {
            if k.carrier == carrier
                && origin.is_none_or(|o| k.origin == o)
                && destination.is_none_or(|d| k.destination == d)
            {
                out.merge(v);
            }
        }
        out
    }

    /// Every carrier with a route or stage aggregate, sorted.
    pub fn carriers(&self) -> Vec<String> {
        let mut c: Vec<String> = self
            .routes
            .keys()
            .map(|k| k.carrier.clone())
            .chain(self.stages.keys().map(|(c, _)| c.clone()))
            .collect();
        c.sort();
        c.dedup();
        c
    }

    /// The `q` quantile of the time between consecutive trace lines of `carrier`'s parcels at
    /// `stage`, and the number of gaps it is computed from. `None` with no gap recorded.
    pub fn quiet_gap_quantile(
        &self,
        carrier: &str,
        stage: Status,
        q: f64,
    ) -> Option<(chrono::Duration, u64)> {
        let st = self.stages.get(&(carrier.to_string(), stage))?;
        Some((st.quiet_gap.quantile(q)?, st.quiet_gap.total()))
    }

    /// The `q` quantile of first scan → delivered of `carrier`'s parcels from `origin` to
    /// `destination` (`None` = any province), and the number of deliveries behind it.
    pub fn delivery_time_quantile(
        &self,
        carrier: &str,
        origin: Option<&str>,
        destination: Option<&str>,
        q: f64,
    ) -> Option<(chrono::Duration, u64)> {
        let r = self.route(carrier, origin, destination);
        Some((r.delivery.quantile(q)?, r.delivery.total()))
    }
}

/// What one route gains when a parcel finishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDelta {
    pub key: RouteKey,
    pub delivered: bool,
    /// First scan → delivered, when delivered and the first scan is known.
    pub delivery_time: Option<Duration>,
}

/// One sample for a stage aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDelta {
    pub carrier: String,
    pub stage: Status,
    pub time_in_stage: Option<Duration>,
    pub quiet_gap: Option<Duration>,
}

/// What one change of a shipment (its stream record's old and new image) adds to the history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateUpdate {
    /// Set when the shipment reached a terminal status with this change. Whether it counts as
    /// an exception depends on its whole history, which the store keeps per shipment.
    pub finished: Option<RouteDelta>,
    pub stages: Vec<StageDelta>,
    /// The shipment entered `Exception` with this change.
    pub entered_exception: bool,
}

impl AggregateUpdate {
    pub fn is_empty(&self) -> bool {
        self.finished.is_none() && self.stages.is_empty() && !self.entered_exception
    }

    /// The samples the change from `old` (none: just registered) to `new` yields:
    /// - a status change closes the old stage: its time is the time between the two
    ///   detections (`status_changed_at`), which is what the tracker knows;
    /// - exactly one new trace line while the parcel was at a stage is one quiet gap of that
    ///   stage (old and new last-line times). With several new lines at once the gaps between
    ///   them are not in the images, and their sum is not one gap: nothing is recorded;
    /// - reaching a terminal status finishes the parcel on its route, with the first scan →
    ///   delivered time when delivered.
    pub fn between(old: Option<&Shipment>, new: &Shipment) -> AggregateUpdate {
        let mut out = AggregateUpdate::default();
        let carrier = new.id.carrier.as_str().to_string();
        let Some(old) = old else {
            return out;
        };
        if old.status != new.status {
            let spent = new.status_changed_at - old.status_changed_at;
            out.stages.push(StageDelta {
                carrier: carrier.clone(),
                stage: old.status,
                time_in_stage: (spent >= Duration::zero()).then_some(spent),
                quiet_gap: None,
            });
            out.entered_exception = new.status == Status::Exception;
        }
        if let (Some((ok, _)), Some((nk, _))) = (&old.last_event, &new.last_event) {
            if new.event_count == old.event_count + 1 && nk.time >= ok.time {
                let gap = nk.time - ok.time;
                match out.stages.iter_mut().find(|s| s.stage == old.status) {
                    Some(s) => s.quiet_gap = Some(gap),
                    None => out.stages.push(StageDelta {
                        carrier: carrier.clone(),
                        stage: old.status,
                        time_in_stage: None,
                        quiet_gap: Some(gap),
                    }),
                }
            }
        }
        if new.status.is_terminal() && !old.status.is_terminal() {
            let delivered = new.status == Status::Delivered;
            let delivered_at = new
                .last_event
                .as_ref()
                .map(|(k, _)| k.time)
                .unwrap_or(new.status_changed_at);
            let delivery_time = match (delivered, new.picked_up_at) {
                (true, Some(p)) if delivered_at >= p => Some(delivered_at - p),
                _ => None,
            };
            let place = |p: &Option<String>| p.clone().unwrap_or_else(|| UNKNOWN_PLACE.into());
            out.finished = Some(RouteDelta {
                key: RouteKey {
                    carrier,
                    origin: place(&new.origin),
                    destination: place(&new.destination),
                },
                delivered,
                delivery_time,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mins(m: i64) -> Duration {
        Duration::minutes(m)
    }

    #[test]
    fn buckets_tile_the_line_without_gaps() {
        assert_eq!(BUCKETS, 138);
        for i in 0..BUCKETS - 1 {
            assert!((bucket_upper(i) - bucket_lower(i + 1)).abs() < 1e-9, "{i}");
        }
        // Exact bounds fall in the bucket they open.
        assert_eq!(bucket_of(1.0), 1);
        assert_eq!(bucket_of(2.0), 9);
        assert_eq!(bucket_of(1024.0), 81);
        assert_eq!(bucket_of(0.5), 0);
        assert_eq!(bucket_of(-3.0), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(bucket_of(1e12), BUCKETS - 1);
        assert_eq!(bucket_of(f64::INFINITY), BUCKETS - 1);
        for m in [1.5, 7.0, 59.9, 60.0, 1440.0, 4321.5, 99_999.0] {
            let i = bucket_of(m);
            assert!(bucket_lower(i) <= m && m < bucket_upper(i), "{m} in {i}");
        }
    }

    #[test]
    fn quantiles_are_within_one_bucket_of_the_exact_ones() {
        // Delivery-like times: 20 h to 100 h, uneven.
        let samples: Vec<Duration> = (0..500)
            .map(|i| mins(1200 + (i * i * 7 + i * 13) % 4800))
            .collect();
        let mut h = Histogram::new();
        for s in &samples {
            h.record(*s);
        }
        assert_eq!(h.total(), 500);
        for q in [0.1, 0.5, 0.9, 0.99] {
            let exact = exact_quantile(&samples, q).unwrap();
            let est = h.quantile(q).unwrap();
            let (be, bh) = (
                bucket_of(minutes_of(exact)) as i64,
                bucket_of(minutes_of(est)) as i64,
            );
            assert!((be - bh).abs() <= 1, "q{q}: exact {exact} est {est}");
            let rel = (est - exact).num_seconds().abs() as f64 / exact.num_seconds() as f64;
            assert!(rel < 0.1, "q{q}: {rel}");
        }
        assert!(Histogram::new().quantile(0.5).is_none());
    }

    #[test]
    fn one_sample_quantiles_stay_in_its_bucket() {
        let mut h = Histogram::new();
        h.record(mins(3000));
        let i = bucket_of(3000.0);
        for q in [0.0, 0.5, 1.0] {
            let m = minutes_of(h.quantile(q).unwrap());
            assert!(
                m >= bucket_lower(i) - 0.01 && m <= bucket_upper(i) + 0.01,
                "{q}: {m}"
            );
        }
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for m in [5, 50, 500, 5000] {
            a.record(mins(m));
            all.record(mins(m));
        }
        for m in [7, 70, 700, 7000, 70_000] {
            b.record(mins(m));
            all.record(mins(m));
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.total(), 9);
        // The stored form round-trips; a bucket of another layout is refused.
        let back = Histogram::from_counts(a.counts()).unwrap();
        assert_eq!(back, a);
        assert_eq!(Histogram::from_counts([(BUCKETS, 1)]), Err(BUCKETS));
    }

    #[test]
    fn the_quantile_after_an_elapsed_time_looks_only_at_longer_samples() {
        let mut h = Histogram::new();
        for m in (1..=100).map(|i| i * 60) {
            h.record(mins(m));
        }
        let median = h.quantile(0.5).unwrap();
        assert!((median.num_minutes() - 3000).abs() < 300, "{median}");
        // Still on the way after 80 h: the median of 80..100 h is about 90 h.
        let after = h.quantile_after(mins(80 * 60), 0.5).unwrap();
        assert!((after.num_minutes() - 90 * 60).abs() < 400, "{after}");
        // Never earlier than the time already elapsed, and none when nothing lasted longer.
        assert!(h.quantile_after(mins(10), 0.0).unwrap() >= mins(10));
        assert_eq!(h.quantile_after(mins(200 * 60), 0.5), None);
        let c = h.cdf(mins(50 * 60)).unwrap();
        assert!((c - 0.5).abs() < 0.05, "{c}");
    }

    #[test]
    fn exact_quantile_is_the_nearest_rank() {
        let s: Vec<Duration> = [4, 1, 3, 2].into_iter().map(mins).collect();
        assert_eq!(exact_quantile(&s, 0.5), Some(mins(2)));
        assert_eq!(exact_quantile(&s, 0.9), Some(mins(4)));
        assert_eq!(exact_quantile(&s, 0.0), Some(mins(1)));
        assert_eq!(exact_quantile(&[], 0.5), None);
    }

    fn shipment() -> Shipment {
        use crate::domain::{Priority, Recipient, ShipmentId};
        use chrono::TimeZone;
        Shipment::register(
            ShipmentId::parse("ZTO", "773012345678901").unwrap(),
            Priority::Normal,
            "kdniao",
            Recipient::default(),
            None,
            chrono::Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap(),
        )
    }

    fn with_line(mut s: Shipment, status: Status, h: i64, count: u32) -> Shipment {
        use crate::domain::{EventKey, TraceEvent};
        let t = s.created_at + Duration::hours(h);
        if s.status != status {
            s.status = status;
            s.status_changed_at = t + Duration::minutes(20);
        }
        s.last_event = Some((
            EventKey {
                time: t,
                id: crate::domain::LineId(0),
            },
            TraceEvent {
                time: t,
                description: "scan".into(),
                location: None,
                status: None,
                raw_code: None,
                claimed_time: None,
            },
        ));
        s.event_count = count;
        s.version += 1;
        s
    }

    #[test]
    fn a_journey_yields_stage_times_gaps_and_one_finish() {
        let s0 = shipment();
        assert!(AggregateUpdate::between(None, &s0).is_empty());
        let mut s1 = with_line(s0.clone(), Status::PickedUp, 1, 1);
        s1.picked_up_at = Some(s1.created_at + Duration::hours(1));
        s1.origin = Some("浙江".into());
        let u = AggregateUpdate::between(Some(&s0), &s1);
        assert_eq!(u.stages.len(), 1);
        assert_eq!(u.stages[0].stage, Status::Pending);
        assert_eq!(u.stages[0].time_in_stage, Some(Duration::minutes(80)));
        assert_eq!(u.stages[0].quiet_gap, None, "no earlier line");
        // One new line in transit: a stage change and a gap of the stage it left.
        let s2 = with_line(s1.clone(), Status::InTransit, 4, 2);
        let u = AggregateUpdate::between(Some(&s1), &s2);
        assert_eq!(u.stages[0].stage, Status::PickedUp);
        assert_eq!(u.stages[0].quiet_gap, Some(Duration::hours(3)));
        assert_eq!(u.stages[0].time_in_stage, Some(Duration::hours(3)));
        // Another line, same stage: a gap only.
        let s3 = with_line(s2.clone(), Status::InTransit, 10, 3);
        let u = AggregateUpdate::between(Some(&s2), &s3);
        assert_eq!(
            u.stages,
            vec![StageDelta {
                carrier: "ZTO".into(),
                stage: Status::InTransit,
                time_in_stage: None,
                quiet_gap: Some(Duration::hours(6))
            }]
        );
        // Two lines at once: no gap.
        let s4 = with_line(s3.clone(), Status::InTransit, 20, 5);
        assert!(AggregateUpdate::between(Some(&s3), &s4).is_empty());
        // A verdict without a scan: an exception entered.
        let mut s5 = s4.clone();
        s5.status = Status::Exception;
        s5.status_changed_at = s4.status_changed_at + Duration::hours(30);
        let u = AggregateUpdate::between(Some(&s4), &s5);
        assert!(u.entered_exception);
        assert!(u.finished.is_none());
        // Delivered: finished on its route, 60 h after the first scan.
        let mut s6 = with_line(s5.clone(), Status::Delivered, 61, 6);
        s6.destination = Some("四川".into());
        let u = AggregateUpdate::between(Some(&s5), &s6);
        assert_eq!(
            u.finished,
            Some(RouteDelta {
                key: RouteKey {
                    carrier: "ZTO".into(),
                    origin: "浙江".into(),
                    destination: "四川".into()
                },
                delivered: true,
                delivery_time: Some(Duration::hours(60)),
            })
        );
        // A redelivered record of the same terminal image finishes nothing more.
        assert!(AggregateUpdate::between(Some(&s6), &s6).is_empty());
    }

    #[test]
    fn the_history_merges_routes_and_answers_quantiles() {
        let mut h = HistorySnapshot::default();
        let key = |o: &str, d: &str| RouteKey {
            carrier: "YTO".into(),
            origin: o.into(),
            destination: d.into(),
        };
        for (o, d, hours, exc) in [
            ("浙江", "北京", 30, 0),
            ("浙江", "四川", 60, 1),
            ("广东", "北京", 40, 0),
        ] {
            let mut r = RouteStats {
                finished: 2,
                delivered: 2,
                exceptions: exc,
                ..Default::default()
            };
            r.delivery.record(Duration::hours(hours));
            r.delivery.record(Duration::hours(hours));
            h.routes.insert(key(o, d), r);
        }
        assert_eq!(h.route("YTO", Some("浙江"), None).delivered, 4);
        assert_eq!(h.route("YTO", None, Some("北京")).delivered, 4);
        assert_eq!(h.route("YTO", None, None).finished, 6);
        assert_eq!(h.route("YTO", None, None).exception_rate(), Some(1.0 / 6.0));
        assert_eq!(h.route("SF", None, None).exception_rate(), None);
        let (p50, n) = h
            .delivery_time_quantile("YTO", Some("浙江"), Some("北京"), 0.5)
            .unwrap();
        assert_eq!(n, 2);
        assert!(
            (p50 - Duration::hours(30)).num_minutes().abs() < 180,
            "{p50}"
        );
        assert!(h.delivery_time_quantile("SF", None, None, 0.5).is_none());
        let mut st = StageStats::default();
        st.quiet_gap.record(Duration::hours(5));
        h.stages.insert(("YTO".into(), Status::InTransit), st);
        let (g, n) = h.quiet_gap_quantile("YTO", Status::InTransit, 0.9).unwrap();
        assert_eq!(n, 1);
        assert!((g - Duration::hours(5)).num_minutes().abs() < 30);
        assert_eq!(h.quiet_gap_quantile("YTO", Status::PickedUp, 0.9), None);
        assert_eq!(h.carriers(), vec!["YTO".to_string()]);
    }
}
