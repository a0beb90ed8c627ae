//! Provider choice and failover. Which providers serve a shipment is configured per shop and per
//! carrier (`PROVIDER_ROUTES`); the tracker asks them in order and moves on to the next when one
//! fails, throttles, has spent its quota or must not be asked yet (Kuaidi100's one query per
//! waybill per 30 minutes). Every switch is logged (`provider failover`, with from, to and why)
//! and counted as the `ProviderFailover` metric (EMF, dimensions From/To).
//!
//! Two guards stand before every call (see [`crate::resilience`]):
//! - a circuit breaker per provider (per container): consecutive failures open it for a cooldown
//!   that doubles while probes keep failing; a provider that throttles or runs out of quota with
//!   a stated wait (`retry_after`) opens it for that long at once, so one throttled answer does
//!   not cost one wasted call per message for the rest of the batch. Each opening is logged
//!   (`circuit open`) and counted (`CircuitOpen`, dimension Provider);
//! - a token bucket per provider, shared by every container when a table is configured. A
//!   provider short of a token is waited for while the query's wait budget lasts (the configured
//!   order is kept when the wait is short), then skipped for the next (`RateLimited`). When no
//!   provider could be asked, the query gives up with "no provider available" (provider
//!   [`NONE_ASKED`]) and the earliest time worth retrying, as it does when every provider asked to
//!   wait, and the tracker moves the check out to then.

use super::{Answer, ProviderError, RouteContext, TraceProvider, TraceQuery};
use crate::domain::schedule::provider_requery_floor;
use crate::domain::{Carrier, TraceSnapshot};
use crate::resilience::breaker::MAX_STATED_WAIT;
use crate::resilience::{
    Acquire, Admission, BreakerConfig, Breakers, Jitter, Limiter, RateLimiter, Tripped,
};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;

/// The `provider` of the error returned when no provider was asked at all: every one was held
/// back (circuit open, out of rate-limit tokens, re-query floor) or none is configured. Its
/// `retry_after`, when set, is the earliest time one of them may be asked.
pub const NONE_ASKED: &str = "failover";

/// Waits for one provider's rate-limit token within one query, at most.
const MAX_RATE_ROUNDS: u32 = 4;

/// Ordered provider lists: per shop, per carrier, and the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRoutes {
    pub default: Vec<String>,
    pub by_carrier: HashMap<String, Vec<String>>,
    pub by_shop: HashMap<String, Vec<String>>,
}

/// No rules: every shipment is served by its own provider alone.
impl Default for ProviderRoutes {
    fn default() -> Self {
        ProviderRoutes {
            default: Vec::new(),
            by_carrier: HashMap::new(),
            by_shop: HashMap::new(),
        }
    }
}

/// Provider names the routes may use.
pub const PROVIDERS: [&str; 3] = ["kdniao", "kuaidi100", "taobao"];

impl ProviderRoutes {
    /// `default=kdniao,kuaidi100;carrier:SF=kuaidi100,kdniao;shop:my-shop=taobao,kdniao`.
    /// Rules are separated by `;`, lists by `,`; names are checked against [`PROVIDERS`].
    pub fn parse(spec: &str) -> Result<ProviderRoutes, String> {
        let mut routes = ProviderRoutes::default();
        for rule in spec.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let (key, list) = rule
                .split_once('=')
                .ok_or_else(|| format!("rule `{rule}` is not `<key>=<providers>`"))?;
            let list: Vec<String> = list
                .split(',')
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect();
            if list.is_empty() {
                return Err(format!("rule `{rule}` names no provider"));
            }
            if let Some(bad) = list.iter().find(|p| !PROVIDERS.contains(&p.as_str())) {
                return Err(format!(
                    "unknown provider `{bad}` in `{rule}` (known: {})",
                    PROVIDERS.join(", ")
                ));
            }
            match key.trim().split_once(':') {
                None if key.trim() == "default" => routes.default = list,
                Some(("carrier", c)) => {
                    let c = Carrier::parse(c).map_err(|e| format!("rule `{rule}`: {e}"))?;
                    routes.by_carrier.insert(c.to_string(), list);
                }
                Some(("shop", shop)) if !shop.trim().is_empty() => {
                    routes.by_shop.insert(shop.trim().to_string(), list);
                }
                _ => {
                    return Err(format!(
                        "rule `{rule}`: key must be `default`, `carrier:<code>` or `shop:<seller nick>`"
                    ))
                }
            }
        }
        Ok(routes)
    }

    /// The providers to ask for one shipment, in order, each once: the shop's rule, else the
    /// carrier's rule, else the default list; then the shipment's own provider (set at
    /// registration) as the last resort. With no routes configured, just its own provider.
    pub fn chain(&self, carrier: &Carrier, ctx: &RouteContext) -> Vec<String> {
        let rule = ctx
            .shop
            .as_ref()
            .and_then(|s| self.by_shop.get(s))
            .or_else(|| self.by_carrier.get(carrier.as_str()))
            .unwrap_or(&self.default);
        let mut out: Vec<String> = Vec::new();
        for p in rule
            .iter()
            .chain(std::iter::once(&ctx.preferred).filter(|p| !p.is_empty()))
        {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }
}

/// The shop of an `order_ref` (`platform:shop:tid`), when it has that form.
pub fn shop_of(order_ref: Option<&str>) -> Option<String> {
    let mut parts = order_ref?.splitn(3, ':');
    let (platform, shop, _tid) = (parts.next()?, parts.next()?, parts.next()?);
    (!platform.is_empty() && !shop.is_empty()).then(|| shop.to_string())
}

/// Several providers behind one [`TraceProvider`], asked in the order the routes give, each
/// behind its circuit breaker and rate limit.
pub struct Failover<P> {
    members: Vec<P>,
    routes: ProviderRoutes,
    breakers: Breakers,
    limiter: Limiter,
    max_rate_wait: std::time::Duration,
}

impl<P: TraceProvider> Failover<P> {
    /// Default breakers ([`BreakerConfig::default`]), no rate limits.
    pub fn new(members: Vec<P>, routes: ProviderRoutes) -> Self {
        Failover {
            members,
            routes,
            breakers: Breakers::new(BreakerConfig::default()),
            limiter: Limiter::Unlimited,
            max_rate_wait: std::time::Duration::ZERO,
        }
    }

    /// Breakers with these settings.
    pub fn with_breakers(mut self, cfg: BreakerConfig) -> Self {
        self.breakers = Breakers::new(cfg);
        self
    }

    /// Take a token from `limiter` before each call; when every provider is short of one, wait
    /// up to `max_wait` in all for the earliest.
    pub fn with_limiter(mut self, limiter: Limiter, max_wait: std::time::Duration) -> Self {
        self.limiter = limiter;
        self.max_rate_wait = max_wait;
        self
    }

    pub fn routes(&self) -> &ProviderRoutes {
        &self.routes
    }

    /// The providers' circuit breakers.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// The configured members' names.
    pub fn members(&self) -> Vec<&'static str> {
        self.members.iter().map(|m| m.name()).collect()
    }

    fn member(&self, name: &str) -> Option<&P> {
        self.members.iter().find(|m| m.name() == name)
    }
}

/// Why a provider in the chain must not be asked at `now`, whatever its breaker and bucket say.
fn skip_reason<P: TraceProvider>(
    f: &Failover<P>,
    name: &str,
    ctx: &RouteContext,
    now: DateTime<Utc>,
) -> Option<(String, Option<DateTime<Utc>>)> {
    if f.member(name).is_none() {
        return Some((format!("{name} is not configured"), None));
    }
    if let (Some(floor), Some(last), Some(at)) = (
        provider_requery_floor(name),
        ctx.last_provider.as_deref(),
        ctx.last_checked,
    ) {
        if last == name && at + floor > now {
            return Some((
                format!(
                    "{name} allows one query per waybill per {} min",
                    floor.num_minutes()
                ),
                Some(at + floor),
            ));
        }
    }
    None
}

fn earlier(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn chrono_of(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::hours(12))
}

impl<P: TraceProvider> TraceProvider for Failover<P> {
    fn name(&self) -> &'static str {
        self.members.first().map_or("none", |m| m.name())
    }

    async fn query(&self, q: &TraceQuery) -> Result<TraceSnapshot, ProviderError> {
        let ctx = RouteContext {
            now: Utc::now(),
            ..RouteContext::default()
        };
        self.query_routed(q, &ctx).await.map(|a| a.snapshot)
    }

    async fn query_routed(
        &self,
        q: &TraceQuery,
        ctx: &RouteContext,
    ) -> Result<Answer, ProviderError> {
        let chain = self.routes.chain(&q.id.carrier, ctx);
        let now = ctx.now;
        let started = std::time::Instant::now();
        let mut failed: Option<(String, String)> = None;
        let mut last_error: Option<ProviderError> = None;
        let mut skipped: Vec<String> = Vec::new();
        let mut earliest_retry: Option<DateTime<Utc>> = None;
        let mut any_retryable = false;
        for name in &chain {
            if let Some((why, until)) = skip_reason(self, name, ctx, now) {
                tracing::debug!(provider = %name, reason = %why, "provider skipped");
                skipped.push(why);
                if let Some(u) = until {
                    earliest_retry = earlier(earliest_retry, u);
                }
                continue;
            }
            let Some(p) = self.member(name) else { continue };
            let admission = self.breakers.admit(p.name(), now);
            if let Admission::Refused { until } = admission {
                let why = match until {
                    Some(u) => format!("{name}'s circuit is open until {u}"),
                    None => format!("{name}'s circuit is half-open and its probe is out"),
                };
                tracing::debug!(provider = %name, reason = %why, "provider skipped");
                skipped.push(why);
                if let Some(u) = until {
                    earliest_retry = earlier(earliest_retry, u);
                }
                continue;
            }
            if let Some(wait) = self.take_token(p.name(), started).await {
                if admission == Admission::Probe {
                    self.breakers.release(p.name());
                }
                crate::metrics::count("RateLimited", &[("Provider", p.name())]);
                let why = format!(
                    "{name} is at its rate limit (next token in {} ms)",
                    wait.as_millis()
                );
                tracing::debug!(provider = %name, reason = %why, "provider skipped");
                skipped.push(why);
                // Relative to the tracker's `now`, like every other wait here.
                earliest_retry = earlier(earliest_retry, now + chrono_of(wait));
                continue;
            }
            if let Some((from, why)) = &failed {
                tracing::warn!(from = %from, to = %name, reason = %why, shipment = %q.id,
                    "provider failover");
                crate::metrics::count("ProviderFailover", &[("From", from), ("To", name)]);
            }
            match p.query(q).await {
                Ok(snapshot) => {
                    self.breakers.success(p.name());
                    return Ok(Answer {
                        provider: p.name(),
                        snapshot,
                    });
                }
                Err(e) => {
                    any_retryable |= e.is_retryable();
                    if let ProviderError::Retryable { retry_after, .. } = &e {
                        if let Some(wait) = retry_after {
                            let until = now + chrono_of((*wait).min(MAX_STATED_WAIT));
                            earliest_retry = earlier(earliest_retry, until);
                        }
                        if let Tripped::Opened { until, cooldown } =
                            self.breakers.failure(p.name(), now, *retry_after)
                        {
                            tracing::warn!(provider = p.name(), until = %until,
                                cooldown_s = cooldown.as_secs(), error = %e, "circuit open");
                            crate::metrics::count("CircuitOpen", &[("Provider", p.name())]);
                        }
                    } else {
                        // A rejection of this query: the provider itself is answering.
                        self.breakers.success(p.name());
                    }
                    crate::metrics::count("ProviderError", &[("Provider", p.name())]);
                    failed = Some((p.name().to_string(), e.to_string()));
                    last_error = Some(e);
                }
            }
        }
        let retry_after = earliest_retry.and_then(|t| (t - now).to_std().ok());
        match last_error {
            // Every provider asked failed for good: the last one's reason (the DLQ keeps it).
            Some(e @ ProviderError::Permanent { .. })
                if !any_retryable && earliest_retry.is_none() =>
            {
                Err(e)
            }
            // Someone may answer later: retry, after the earliest known wait if there is one.
            Some(e) => {
                let provider = match &e {
                    ProviderError::Retryable { provider, .. }
                    | ProviderError::Permanent { provider, .. } => *provider,
                };
                Err(ProviderError::Retryable {
                    provider,
                    reason: match &failed {
                        Some((from, why)) if chain.len() > 1 => {
                            format!("every provider failed, last {from}: {why}")
                        }
                        _ => e.to_string(),
                    },
                    retry_after,
                })
            }
            // Nobody was asked: all skipped (circuit open, rate limit, re-query floor, not
            // configured).
            None => Err(ProviderError::Retryable {
                provider: NONE_ASKED,
                reason: format!(
                    "no provider available for {}: {}",
                    q.id,
                    if skipped.is_empty() {
                        "none configured".to_string()
                    } else {
                        skipped.join("; ")
                    }
                ),
                retry_after,
            }),
        }
    }
}

impl<P: TraceProvider> Failover<P> {
    /// Take a token for `name`, waiting for one (with jitter, so that the containers waiting on
    /// one bucket do not all come back at the same instant) while this query's wait budget
    /// allows; `None` when taken, else how long until the next one. The bucket runs on the wall
    /// clock, not on the tracker's `now`: providers count their limits in real seconds, and
    /// `now` is the batch's start (and a simulated time in the local stack). A limiter that
    /// cannot be reached does not stop tracking: the call goes ahead without a token, logged
    /// and counted.
    async fn take_token(
        &self,
        name: &'static str,
        started: std::time::Instant,
    ) -> Option<std::time::Duration> {
        let mut jitter: Option<Jitter> = None;
        let mut rounds = 0;
        loop {
            match self.limiter.acquire(name, Utc::now()).await {
                Ok(Acquire::Granted) => return None,
                Ok(Acquire::Wait(wait)) => {
                    let pause = wait + jitter.get_or_insert_with(Jitter::from_entropy).full(wait);
                    rounds += 1;
                    if rounds > MAX_RATE_ROUNDS || started.elapsed() + pause > self.max_rate_wait {
                        return Some(wait);
                    }
                    tracing::debug!(
                        provider = name,
                        wait_ms = pause.as_millis() as u64,
                        "waiting for a rate-limit token"
                    );
                    tokio::time::sleep(pause).await;
                }
                Err(e) => {
                    tracing::warn!(provider = name, error = %e,
                        "rate limiter unavailable; calling without a token");
                    crate::metrics::count("RateLimiterError", &[("Provider", name)]);
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ShipmentId, Status, SubStatus};
    use chrono::TimeZone;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
    }

    /// A provider that answers from a script: `Ok`, retryable (with an optional wait) or permanent.
    struct Scripted {
        name: &'static str,
        answer: Result<(), (bool, Option<u64>)>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(name: &'static str, answer: Result<(), (bool, Option<u64>)>) -> Self {
            Scripted {
                name,
                answer,
                calls: AtomicUsize::new(0),
            }
        }
    }

    impl TraceProvider for Scripted {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn query(&self, _q: &TraceQuery) -> Result<TraceSnapshot, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.answer {
                Ok(()) => Ok(TraceSnapshot {
                    status: Status::InTransit,
                    sub_status: Some(SubStatus::new(self.name, "2")),
                    events: vec![],
                }),
                Err((true, wait)) => Err(ProviderError::Retryable {
                    provider: self.name,
                    reason: "busy".into(),
                    retry_after: wait.map(std::time::Duration::from_secs),
                }),
                Err((false, _)) => Err(ProviderError::Permanent {
                    provider: self.name,
                    reason: "no such waybill".into(),
                }),
            }
        }
    }

    fn q(carrier: &str) -> TraceQuery {
        TraceQuery {
            id: ShipmentId::parse(carrier, "SF1234567890123").unwrap(),
            phone: None,
            order_ref: None,
        }
    }

    fn ctx() -> RouteContext {
        RouteContext {
            preferred: "kdniao".into(),
            now: now(),
            ..RouteContext::default()
        }
    }

    #[test]
    fn routes_parse_and_pick_shop_then_carrier_then_default() {
        let r = ProviderRoutes::parse(
            "default=kdniao,kuaidi100; carrier:sf=kuaidi100,kdniao; shop:tmall-flagship=taobao,kdniao",
        )
        .unwrap();
        let sf = Carrier::parse("SF").unwrap();
        let yto = Carrier::parse("YTO").unwrap();
        assert_eq!(r.chain(&yto, &ctx()), ["kdniao", "kuaidi100"]);
        assert_eq!(r.chain(&sf, &ctx()), ["kuaidi100", "kdniao"]);
        let shop = RouteContext {
            shop: Some("tmall-flagship".into()),
            ..ctx()
        };
        assert_eq!(r.chain(&sf, &shop), ["taobao", "kdniao"]);
        // The routes lead; the shipment's own provider is the last resort.
        let k100 = RouteContext {
            preferred: "taobao".into(),
            ..ctx()
        };
        assert_eq!(r.chain(&yto, &k100), ["kdniao", "kuaidi100", "taobao"]);
        assert_eq!(ProviderRoutes::default().chain(&yto, &k100), ["taobao"]);
    }

    #[test]
    fn bad_routes_are_refused_with_the_reason() {
        for (spec, needle) in [
            ("default=kdniao,aftership", "unknown provider `aftership`"),
            ("carrier:SF=", "names no provider"),
            ("region:east=kdniao", "key must be"),
            ("kdniao", "is not `<key>=<providers>`"),
        ] {
            let e = ProviderRoutes::parse(spec).unwrap_err();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn the_shop_comes_from_the_order_ref() {
        assert_eq!(
            shop_of(Some("top:tmall-flagship:123")).as_deref(),
            Some("tmall-flagship")
        );
        assert_eq!(shop_of(Some("WMS-42")), None);
        assert_eq!(shop_of(None), None);
    }

    #[tokio::test]
    async fn a_failing_provider_hands_over_to_the_next_and_the_switch_is_counted() {
        // taobao -> kuaidi100: a pair no other test here switches between (the counter is global).
        let f = Failover::new(
            vec![
                Scripted::new("taobao", Err((true, None))),
                Scripted::new("kuaidi100", Ok(())),
            ],
            ProviderRoutes::parse("default=taobao,kuaidi100").unwrap(),
        );
        let dims = [("From", "taobao"), ("To", "kuaidi100")];
        let before = crate::metrics::count_of("ProviderFailover", &dims);
        let a = f.query_routed(&q("YTO"), &ctx()).await.unwrap();
        assert_eq!(a.provider, "kuaidi100");
        assert_eq!(
            crate::metrics::count_of("ProviderFailover", &dims),
            before + 1
        );
    }

    #[tokio::test]
    async fn a_throttled_provider_is_skipped_until_its_wait_is_over() {
        let f = Failover::new(
            vec![
                Scripted::new("kdniao", Err((true, Some(3600)))),
                Scripted::new("kuaidi100", Ok(())),
            ],
            ProviderRoutes::parse("default=kdniao,kuaidi100").unwrap(),
        );
        f.query_routed(&q("YTO"), &ctx()).await.unwrap();
        f.query_routed(&q("YTO"), &ctx()).await.unwrap();
        assert_eq!(
            f.members[0].calls.load(Ordering::SeqCst),
            1,
            "asked once, then skipped"
        );
        let later = RouteContext {
            now: now() + Duration::hours(2),
            ..ctx()
        };
        f.query_routed(&q("YTO"), &later).await.unwrap();
        assert_eq!(
            f.members[0].calls.load(Ordering::SeqCst),
            2,
            "asked again after the ban"
        );
    }

    #[tokio::test]
    async fn kuaidi100_is_not_asked_twice_within_thirty_minutes() {
        let f = Failover::new(
            vec![
                Scripted::new("kuaidi100", Ok(())),
                Scripted::new("kdniao", Ok(())),
            ],
            ProviderRoutes::parse("default=kuaidi100,kdniao").unwrap(),
        );
        let recent = RouteContext {
            preferred: "kuaidi100".into(),
            last_provider: Some("kuaidi100".into()),
            last_checked: Some(now() - Duration::minutes(10)),
            ..ctx()
        };
        assert_eq!(
            f.query_routed(&q("YTO"), &recent).await.unwrap().provider,
            "kdniao"
        );
        let alone = Failover::new(
            vec![Scripted::new("kuaidi100", Ok(()))],
            ProviderRoutes::parse("default=kuaidi100").unwrap(),
        );
        match alone.query_routed(&q("YTO"), &recent).await {
            Err(ProviderError::Retryable {
                retry_after,
                reason,
                ..
            }) => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(20 * 60)));
                assert!(reason.contains("30 min"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(alone.members[0].calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn all_permanent_is_permanent_and_any_retryable_is_retryable() {
        let f = Failover::new(
            vec![
                Scripted::new("kdniao", Err((false, None))),
                Scripted::new("kuaidi100", Err((false, None))),
            ],
            ProviderRoutes::parse("default=kdniao,kuaidi100").unwrap(),
        );
        assert!(!f
            .query_routed(&q("YTO"), &ctx())
            .await
            .unwrap_err()
            .is_retryable());
        let g = Failover::new(
            vec![
                Scripted::new("kdniao", Err((true, None))),
                Scripted::new("kuaidi100", Err((false, None))),
            ],
            ProviderRoutes::parse("default=kdniao,kuaidi100").unwrap(),
        );
        // kdniao may answer later: the check is retried rather than dead-lettered.
        assert!(g
            .query_routed(&q("YTO"), &ctx())
            .await
            .unwrap_err()
            .is_retryable());
    }

    #[tokio::test]
    async fn consecutive_failures_open_the_circuit_and_a_failed_probe_doubles_its_cooldown() {
        // kuaidi100 opens no circuit in any other test here (the counter is global).
        let f = Failover::new(
            vec![
                Scripted::new("kuaidi100", Err((true, None))),
                Scripted::new("kdniao", Ok(())),
            ],
            ProviderRoutes::parse("default=kuaidi100,kdniao").unwrap(),
        )
        .with_breakers(BreakerConfig {
            failure_threshold: 3,
            cooldown: std::time::Duration::from_secs(30),
            max_cooldown: std::time::Duration::from_secs(600),
        });
        let dims = [("Provider", "kuaidi100")];
        let before = crate::metrics::count_of("CircuitOpen", &dims);
        for _ in 0..5 {
            let a = f.query_routed(&q("YTO"), &ctx()).await.unwrap();
            assert_eq!(a.provider, "kdniao");
        }
        assert_eq!(
            f.members[0].calls.load(Ordering::SeqCst),
            3,
            "asked until the third failure in a row, then skipped"
        );
        assert_eq!(crate::metrics::count_of("CircuitOpen", &dims), before + 1);
        // After the cooldown one probe goes through; it fails, so the circuit re-opens for 60 s.
        let later = RouteContext {
            now: now() + Duration::seconds(31),
            ..ctx()
        };
        f.query_routed(&q("YTO"), &later).await.unwrap();
        f.query_routed(&q("YTO"), &later).await.unwrap();
        assert_eq!(f.members[0].calls.load(Ordering::SeqCst), 4, "one probe");
        assert_eq!(crate::metrics::count_of("CircuitOpen", &dims), before + 2);
        match f.breakers().state("kuaidi100") {
            crate::resilience::breaker::BreakerState::Open { until, cooldown } => {
                assert_eq!(cooldown, std::time::Duration::from_secs(60));
                assert_eq!(until, now() + Duration::seconds(91));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_provider_out_of_tokens_hands_over_to_the_next() {
        let f = Failover::new(
            vec![
                Scripted::new("kdniao", Ok(())),
                Scripted::new("kuaidi100", Ok(())),
            ],
            ProviderRoutes::parse("default=kdniao,kuaidi100").unwrap(),
        )
        .with_limiter(
            Limiter::Memory(crate::resilience::MemoryBucket::new(
                crate::resilience::RateLimits::parse("kdniao=1/s:2").unwrap(),
            )),
            std::time::Duration::ZERO,
        );
        let answered: Vec<&str> = futures::future::join_all(
            (0..4).map(|_| async { f.query_routed(&q("YTO"), &ctx()).await.unwrap().provider }),
        )
        .await;
        assert_eq!(answered, ["kdniao", "kdniao", "kuaidi100", "kuaidi100"]);
        assert_eq!(f.members[0].calls.load(Ordering::SeqCst), 2, "the burst");
    }

    #[tokio::test]
    async fn when_every_provider_is_out_of_tokens_the_check_waits_or_is_put_off() {
        let bucket = || {
            Limiter::Memory(crate::resilience::MemoryBucket::new(
                crate::resilience::RateLimits::parse("kdniao=1/s:1").unwrap(),
            ))
        };
        let f = Failover::new(
            vec![Scripted::new("kdniao", Ok(()))],
            ProviderRoutes::parse("default=kdniao").unwrap(),
        )
        .with_limiter(bucket(), std::time::Duration::ZERO);
        f.query_routed(&q("YTO"), &ctx()).await.unwrap();
        match f.query_routed(&q("YTO"), &ctx()).await {
            Err(ProviderError::Retryable {
                provider,
                reason,
                retry_after,
            }) => {
                assert_eq!(provider, "failover");
                assert!(reason.contains("rate limit"), "{reason}");
                // One token a second on the wall clock: the next one within the second.
                let wait = retry_after.unwrap();
                assert!(
                    wait > std::time::Duration::from_millis(900)
                        && wait <= std::time::Duration::from_secs(1),
                    "{wait:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.members[0].calls.load(Ordering::SeqCst), 1);

        // With a wait allowed, the second call waits for the next token instead.
        let g = Failover::new(
            vec![Scripted::new("kdniao", Ok(()))],
            ProviderRoutes::parse("default=kdniao").unwrap(),
        )
        .with_limiter(
            Limiter::Memory(crate::resilience::MemoryBucket::new(
                crate::resilience::RateLimits::parse("kdniao=10/s:1").unwrap(),
            )),
            std::time::Duration::from_secs(2),
        );
        g.query_routed(&q("YTO"), &ctx()).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            g.query_routed(&q("YTO"), &ctx()).await.unwrap().provider,
            "kdniao"
        );
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(100)
                && waited < std::time::Duration::from_secs(2),
            "{waited:?}"
        );
        assert_eq!(g.members[0].calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_short_wait_for_the_first_choice_keeps_the_configured_order() {
        let f = Failover::new(
            vec![
                Scripted::new("kdniao", Ok(())),
                Scripted::new("kuaidi100", Ok(())),
            ],
            ProviderRoutes::parse("default=kdniao,kuaidi100").unwrap(),
        )
        .with_limiter(
            Limiter::Memory(crate::resilience::MemoryBucket::new(
                crate::resilience::RateLimits::parse("kdniao=20/s:1").unwrap(),
            )),
            std::time::Duration::from_secs(1),
        );
        for _ in 0..3 {
            assert_eq!(
                f.query_routed(&q("YTO"), &ctx()).await.unwrap().provider,
                "kdniao"
            );
        }
        assert_eq!(f.members[1].calls.load(Ordering::SeqCst), 0);
    }
}
