//! The whole product on the local stack, in one process: moto (real AWS APIs), the carrier
//! sandbox, and the three functions driven with Lambda's event-source semantics on a simulated
//! clock. The demo and the integration tests are built on this.

use crate::clock::{Clock, SimClock};
use crate::moto::{sent_sms, SentSms};
use crate::runner::chaos::{Chaos, ChaosPlan};
use crate::runner::http::{api_handler, HttpFront};
use crate::runner::sqs::SqsSource;
use crate::runner::stream::{StartingPosition, StreamSource};
use crate::runner::ScheduleTick;
use crate::sandbox::journey::{waybill_number, Journey};
use crate::sandbox::orders::{
    DEFAULT_FW199_APPID, DEFAULT_FW199_SECRET, DEFAULT_TOP_APP_KEY, DEFAULT_TOP_SECRET,
    DEFAULT_TOP_SESSION,
};
use crate::sandbox::push::{DEFAULT_KUAIDI100_CUSTOMER, DEFAULT_KUAIDI100_KEY};
use crate::sandbox::{Sandbox, SandboxConfig, DEFAULT_APP_KEY, DEFAULT_EBUSINESS_ID};
use crate::stack::LocalStack;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, TimeZone, Utc};
use parcelwatch::config::{Config, NotifierConfig, SchedulerConfig, TrackerConfig};
use parcelwatch::crypto::Vault;
use parcelwatch::domain::order::Platform;
use parcelwatch::domain::stats::HistorySnapshot;
use parcelwatch::domain::StageHistory;
use parcelwatch::domain::{Locale, PhoneNumber, Priority, Recipient, Shipment, ShipmentId, Status};
use parcelwatch::orders::{Fw199Config, TopConfig};
use parcelwatch::store::analytics::{bucket_attr, route_pk, STAGE_PK};
use parcelwatch::store::{SchedRecord, ShipmentRecord, ShipmentStore, SCHED};
use std::collections::HashMap;
use std::sync::Arc;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The Kuaidi100 push salt the local api is configured with.
pub const LOCAL_KUAIDI100_SALT: &str = "sandbox-salt-0001";

/// Carriers the demo ships with, and their share.
pub const DEMO_CARRIERS: [&str; 7] = ["YTO", "ZTO", "STO", "YD", "SF", "JD", "EMS"];

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub seed: u64,
    /// Simulated start time.
    pub start: DateTime<Utc>,
    /// Simulated time between two scheduler ticks.
    pub tick: Duration,
    /// Overrides of the template's function environment (e.g. `SCHEDULER_MAX_ENQUEUE`).
    pub env: Vec<(String, String)>,
    /// Push mode: the tracker subscribes shipments with the sandbox's Kdniao (8008), the
    /// sandbox pushes every change to the api's `/push/kdniao` over HTTP, and polling drops to
    /// the safety net.
    pub push_mode: bool,
    /// Shops whose orders the order-sync function pulls from the sandbox's platforms each tick
    /// (`fw199:<seller nick>` / `top:<seller nick>`). Empty: order-sync does not run.
    pub shops: Vec<String>,
    /// The AWS endpoint the functions' SDK clients use (e.g. a fault proxy in front of moto);
    /// `None`: moto itself. The runner's own calls (what AWS's pollers do) always go to moto.
    pub function_endpoint: Option<String>,
    /// Kills mid-batch and duplicate deliveries of the tracker's, the notifier's and the api's
    /// invocations (see [`crate::runner::chaos`]).
    pub chaos: ChaosPlan,
    /// Run the analytics function on the stream (its own mapping, after the notifier's).
    pub analytics: bool,
    /// Delivery history written into the table's `STATS#` items (as the analytics function
    /// stores it) before the functions are built, so that the tracker's and the api's cold-start
    /// load finds it: [`Pipeline::on_stack`] returns once both hold it. `None`: an empty history.
    pub seed_history: Option<HistorySnapshot>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            seed: 7,
            start: Utc
                .with_ymd_and_hms(2026, 11, 24, 0, 0, 0)
                .single()
                .unwrap_or_else(Utc::now),
            tick: Duration::minutes(10),
            // Fewer due shards locally: each is one Query per tick, and moto is the bottleneck.
            env: vec![
                ("SCHEDULER_MAX_ENQUEUE".into(), "400".into()),
                ("DUE_SHARDS".into(), "2".into()),
                // Simulated time runs far faster than the wall clock the token buckets count
                // in: limits would throttle a demo day into real seconds. The soak turns them on.
                ("PROVIDER_RATE_LIMITS".into(), "none".into()),
            ],
            push_mode: false,
            shops: Vec::new(),
            function_endpoint: None,
            chaos: ChaosPlan::NONE,
            analytics: true,
            seed_history: None,
        }
    }
}

/// Counters of one tick.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub enqueued: usize,
    pub tracker_batches: usize,
    pub messages: usize,
    pub message_failures: usize,
    pub stream_batches: usize,
    pub stream_records: usize,
    /// Provider pushes the sandbox delivered to the api (push mode), and how many were acknowledged.
    pub pushes_sent: usize,
    pub pushes_acked: usize,
    /// The order-sync run of this tick, when shops are configured.
    pub order_sync: Option<order_sync::SyncReport>,
}

/// Running totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub ticks: u64,
    pub enqueued: u64,
    pub tracker_batches: u64,
    pub messages: u64,
    pub message_failures: u64,
    pub stream_batches: u64,
    pub stream_records: u64,
    pub pushes_sent: u64,
    pub pushes_acked: u64,
    /// Wall time spent in each phase, for the demo's figures.
    pub scheduler_time: std::time::Duration,
    pub tracker_time: std::time::Duration,
    pub notifier_time: std::time::Duration,
    pub push_time: std::time::Duration,
    pub order_sync_time: std::time::Duration,
    pub analytics_time: std::time::Duration,
    pub orders_synced: u64,
    pub shipments_from_orders: u64,
}

/// A registered demo parcel and its planned journey (the simulator's truth).
#[derive(Debug, Clone)]
pub struct Parcel {
    pub id: ShipmentId,
    pub phone: PhoneNumber,
    pub journey: Journey,
}

pub struct Pipeline {
    pub stack: LocalStack,
    pub sandbox: Sandbox,
    pub clock: Arc<SimClock>,
    pub opts: PipelineOptions,
    pub base: Config,
    pub scheduler: scheduler::Deps,
    pub tracker: tracker::LiveTracker,
    pub notifier: notifier::LiveNotifier,
    pub api: Arc<api::LiveApi>,
    /// The order-sync function, when shops are configured.
    pub order_sync: Option<order_sync::Deps>,
    pub order_schedule: ScheduleTick,
    /// The api behind a local API Gateway (HTTP API, payload 2.0) on loopback: merchant routes
    /// and the providers' push callbacks.
    pub front: HttpFront,
    /// The merchant API key the local api accepts.
    pub api_key: String,
    pub http: reqwest::Client,
    pub tracking: SqsSource,
    pub stream: StreamSource,
    /// The analytics function and its own mapping of the table stream (when enabled).
    pub analytics: Option<(analytics::LiveAnalytics, StreamSource)>,
    pub schedule: ScheduleTick,
    pub sqs: aws_sdk_sqs::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub totals: Totals,
    /// Fault injection into the invocations of each function (pass-through by default).
    pub tracker_chaos: Arc<Chaos>,
    pub notifier_chaos: Arc<Chaos>,
    pub api_chaos: Arc<Chaos>,
    /// Something outside the scheduler put work on the queue: drain on the next tick.
    dirty: bool,
    last_enqueued: usize,
}

impl Pipeline {
    /// Start moto (shared by the process), provision template.yaml, start the sandbox, build the
    /// functions from the template's environment pointed at both.
    pub async fn start(opts: PipelineOptions) -> Result<Pipeline, BoxError> {
        let stack = LocalStack::start_shared().await?;
        Self::on_stack(stack, opts).await
    }

    pub async fn on_stack(stack: LocalStack, opts: PipelineOptions) -> Result<Pipeline, BoxError> {
        let clock = Arc::new(SimClock::new(opts.start));
        let chaos_for = |salt: u64| {
            Chaos::new(ChaosPlan {
                seed: opts.chaos.seed ^ salt,
                ..opts.chaos
            })
        };
        let (tracker_chaos, notifier_chaos, api_chaos) = (chaos_for(1), chaos_for(2), chaos_for(3));
        // The functions' AWS clients: through the fault proxy when one is given.
        let fn_sdk = match &opts.function_endpoint {
            Some(endpoint) => crate::stack::sdk_config_for(endpoint)
                .into_builder()
                .retry_config(parcelwatch::resilience::sdk_retry_config())
                .build(),
            None => stack.sdk_config.clone(),
        };
        let sandbox = Sandbox::start(
            SandboxConfig {
                seed: opts.seed,
                ebusiness_id: DEFAULT_EBUSINESS_ID.into(),
                app_key: DEFAULT_APP_KEY.into(),
                port: None,
            },
            clock.clone() as Arc<dyn Clock>,
        )
        .await?;

        // The history the functions load at their cold start: in the table before they are built.
        if let Some(h) = &opts.seed_history {
            write_history(
                &aws_sdk_dynamodb::Client::new(&stack.sdk_config),
                &stack.table_name,
                h,
            )
            .await?;
        }

        // The api first: in push mode the tracker needs its callback URL.
        let api_key = format!(
            "pw-local-{:016x}",
            opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        let api_env = {
            let mut env: HashMap<String, String> = stack
                .function_env("api")
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            env.insert("API_KEYS".into(), api_key.clone());
            env.insert("KDNIAO_ENDPOINT".into(), sandbox.kdniao_endpoint());
            env.insert("KDNIAO_EBUSINESS_ID".into(), sandbox.ebusiness_id().into());
            env.insert("KDNIAO_APP_KEY".into(), sandbox.app_key().into());
            env.insert("KUAIDI100_SALT".into(), LOCAL_KUAIDI100_SALT.into());
            for (k, v) in &opts.env {
                env.insert(k.clone(), v.clone());
            }
            env
        };
        let api = Arc::new(api::build(
            &fn_sdk,
            &Config::from_env(&api_env)?,
            api::ApiConfig::from_env(&api_env)?,
            Vault::from_env(&stack.sdk_config, &api_env)?,
        ));
        let front = {
            let api = api.clone();
            let clock = clock.clone();
            let chaos = api_chaos.clone();
            HttpFront::start(api_handler(move |req| {
                let api = api.clone();
                let now = clock.now();
                let chaos = chaos.clone();
                async move {
                    let response = api::handle(&api, req, now).await;
                    // The function ran to the end but died before its answer got out: API
                    // Gateway answers 502 and the caller (a provider's push) sends it again.
                    if chaos.lose_answer() {
                        return crate::runner::chaos::gateway_error();
                    }
                    response
                }
            }))
            .await?
        };

        let env_for = |binary: &str| -> HashMap<String, String> {
            let mut env: HashMap<String, String> = stack
                .function_env(binary)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            env.insert("KDNIAO_ENDPOINT".into(), sandbox.kdniao_endpoint());
            env.insert("KDNIAO_EBUSINESS_ID".into(), sandbox.ebusiness_id().into());
            env.insert("KDNIAO_APP_KEY".into(), sandbox.app_key().into());
            env.entry("TRACKING_DLQ_URL".into())
                .or_insert_with(|| stack.tracking_dlq_url.clone());
            env.insert(
                "KDNIAO_SUBSCRIBE_ENDPOINT".into(),
                sandbox.kdniao_subscribe_endpoint(),
            );
            // Every provider the sandbox speaks has credentials; PROVIDER_ROUTES (default:
            // Kdniao only) decides which ones serve which shipments.
            env.insert(
                "KUAIDI100_QUERY_ENDPOINT".into(),
                sandbox.kuaidi100_query_endpoint(),
            );
            env.insert(
                "KUAIDI100_CUSTOMER".into(),
                DEFAULT_KUAIDI100_CUSTOMER.into(),
            );
            env.insert("KUAIDI100_KEY".into(), DEFAULT_KUAIDI100_KEY.into());
            env.insert("TOP_ENDPOINT".into(), sandbox.top_endpoint());
            env.insert("TOP_APP_KEY".into(), DEFAULT_TOP_APP_KEY.into());
            env.insert("TOP_APP_SECRET".into(), DEFAULT_TOP_SECRET.into());
            env.insert("TOP_SESSION".into(), DEFAULT_TOP_SESSION.into());
            if opts.push_mode {
                env.insert("PUSH_CALLBACK_BASE_URL".into(), front.base_url());
            } else {
                env.remove("PUSH_CALLBACK_BASE_URL");
            }
            for (k, v) in &opts.env {
                env.insert(k.clone(), v.clone());
            }
            env
        };
        let sdk = &fn_sdk;
        let order_sync = if opts.shops.is_empty() {
            None
        } else {
            let mut env = env_for("order-sync");
            env.insert("ORDER_SHOPS".into(), opts.shops.join(","));
            env.insert("FW199_ENDPOINT".into(), sandbox.fw199_endpoint());
            env.insert("FW199_APPID".into(), DEFAULT_FW199_APPID.into());
            env.insert("FW199_SECRET".into(), DEFAULT_FW199_SECRET.into());
            env.insert("TOP_ENDPOINT".into(), sandbox.top_endpoint());
            env.insert("TOP_APP_KEY".into(), DEFAULT_TOP_APP_KEY.into());
            env.insert("TOP_APP_SECRET".into(), DEFAULT_TOP_SECRET.into());
            env.insert("TOP_SESSION".into(), DEFAULT_TOP_SESSION.into());
            let cfg = order_sync::OrderSyncConfig::from_env(&env)?;
            let fw199 = cfg
                .has(Platform::Fw199)
                .then(|| Fw199Config::from_env(&env))
                .transpose()?;
            let top = cfg
                .has(Platform::Top)
                .then(|| TopConfig::from_env(&env))
                .transpose()?;
            Some(order_sync::Deps::new(
                sdk,
                &Config::from_env(&env)?,
                cfg,
                fw199,
                top,
                reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(30))
                    .build()?,
                Vault::from_env(sdk, &env)?,
            ))
        };
        let sched_env = env_for("scheduler");
        let base = Config::from_env(&sched_env)?;
        let scheduler = scheduler::Deps::new(sdk, &base, SchedulerConfig::from_env(&sched_env)?);
        let tracker_env = env_for("tracker");
        let tracker = tracker::build(
            sdk,
            &Config::from_env(&tracker_env)?,
            TrackerConfig::from_env(&tracker_env)?,
        )?;
        let notifier_env = env_for("notifier");
        let notifier = notifier::build(
            sdk,
            &Config::from_env(&notifier_env)?,
            NotifierConfig::from_env(&notifier_env)?,
            Vault::from_env(sdk, &notifier_env)?,
        );

        // Their history loads in the background at cold start: wait until both hold the seed,
        // so that the first poll and the first push decide with it.
        if let Some(h) = &opts.seed_history {
            history_loaded(h, &[&*tracker.ctx.history, &*api.ctx.history]).await?;
        }

        // The runner's and the assertions' clients talk to moto directly.
        let sqs = aws_sdk_sqs::Client::new(&stack.sdk_config);
        let streams = aws_sdk_dynamodbstreams::Client::new(&stack.sdk_config);
        let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk_config);
        let src = &stack.event_sources;
        let tracking = SqsSource::for_queue(
            &sqs,
            &stack.tracking_queue_url,
            src.tracker_sqs.batch_size as i32,
            std::time::Duration::ZERO,
        )
        .await?;
        let spec = &src.notifier_stream;
        let start_pos = if spec.starting_position == "LATEST" {
            StartingPosition::Latest
        } else {
            StartingPosition::TrimHorizon
        };
        let mut stream = StreamSource::new(
            &stack.table_stream_arn,
            format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}-notifier",
                stack.prefix
            ),
            start_pos,
        )?
        .with_batch_size(spec.batch_size as i32)
        .with_max_retry_attempts(spec.max_retry_attempts)
        .with_bisect_on_error(spec.bisect_on_error)
        .with_filters(spec.filter_patterns.clone());
        stream = stream.with_on_failure_queue(&stack.notify_failure_queue_url);
        let analytics = if opts.analytics {
            let env = env_for("analytics");
            let f = analytics::build(sdk, &Config::from_env(&env)?);
            Some((f, analytics_source(&stack, start_pos)?))
        } else {
            None
        };
        let order_schedule = ScheduleTick::new(format!(
            "arn:aws:events:us-east-1:123456789012:rule/{}-order-sync",
            stack.prefix
        ))?;
        let schedule = ScheduleTick::new(format!(
            "arn:aws:events:us-east-1:123456789012:rule/{}-schedule",
            stack.prefix
        ))?;

        let mut p = Pipeline {
            stack,
            sandbox,
            clock,
            opts,
            base,
            scheduler,
            tracker,
            notifier,
            api,
            order_sync,
            order_schedule,
            front,
            api_key,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            tracking,
            stream,
            analytics,
            schedule,
            sqs,
            streams,
            dynamo,
            totals: Totals::default(),
            tracker_chaos,
            notifier_chaos,
            api_chaos,
            dirty: false,
            last_enqueued: 0,
        };
        // With LATEST, Lambda starts reading at the mapping's creation: take the shard positions now.
        p.drain_stream().await?;
        Ok(p)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Register `n` parcels across carriers, shipped (picked up) at staggered times over `spread`,
    /// each in the sandbox (the carrier's side) and in the table (our side, as the api will).
    pub async fn register_demo_parcels(
        &mut self,
        n: usize,
        spread: Duration,
    ) -> Result<Vec<Parcel>, BoxError> {
        self.register_demo_parcels_by(n, spread, |_| "kdniao").await
    }

    /// Like [`Pipeline::register_demo_parcels`], with the provider each parcel is registered
    /// with (`provider(i)`). In push mode only Kdniao parcels are subscribed: the others are
    /// polled through the provider chain.
    pub async fn register_demo_parcels_by(
        &mut self,
        n: usize,
        spread: Duration,
        provider: impl Fn(usize) -> &'static str,
    ) -> Result<Vec<Parcel>, BoxError> {
        let now = self.now();
        let mut parcels = Vec::with_capacity(n);
        let seed = self.opts.seed;
        for i in 0..n {
            let carrier = DEMO_CARRIERS[i % DEMO_CARRIERS.len()];
            let number = waybill_number(carrier, i as u64, seed);
            let id = ShipmentId::parse(carrier, &number)?;
            let offset = spread.num_seconds().max(1) * (i as i64) / (n.max(1) as i64);
            let shipped_at = now + Duration::seconds(offset);
            let journey = self.sandbox.register(carrier, &number, shipped_at);
            let phone = PhoneNumber::parse(&format!(
                "+86139{:08}",
                (seed.wrapping_mul(7919) + i as u64) % 100_000_000
            ))?;
            let priority = if i % 10 == 0 {
                Priority::High
            } else {
                Priority::Normal
            };
            let locale = if i % 5 == 4 { Locale::En } else { Locale::ZhCn };
            // Sealed as the api seals it (its vault: the same container's data key).
            let sealed = self.api.vault.seal(&phone).await?;
            let shipment = Shipment::register(
                id.clone(),
                priority,
                provider(i),
                Recipient {
                    phone: Some(sealed),
                    locale,
                },
                Some(format!("TB{:016}", 2026112400000000u64 + i as u64)),
                now,
            );
            self.scheduler.store.create(&shipment).await?;
            parcels.push(Parcel { id, phone, journey });
        }
        self.drain_stream().await?;
        Ok(parcels)
    }

    /// Like [`Pipeline::register_demo_parcels`], but our side registers through the api's
    /// `POST /shipments` over HTTP (one bulk request, with the merchant API key), as a merchant's
    /// WMS back-fill would. Returns the parcels and the api's answer.
    pub async fn register_via_api(
        &mut self,
        n: usize,
        spread: Duration,
    ) -> Result<(Vec<Parcel>, serde_json::Value), BoxError> {
        let now = self.now();
        let seed = self.opts.seed;
        let mut parcels = Vec::with_capacity(n);
        let mut items = Vec::with_capacity(n);
        for i in 0..n {
            let carrier = DEMO_CARRIERS[i % DEMO_CARRIERS.len()];
            let number = waybill_number(carrier, i as u64, seed);
            let offset = spread.num_seconds().max(1) * (i as i64) / (n.max(1) as i64);
            let journey = self
                .sandbox
                .register(carrier, &number, now + Duration::seconds(offset));
            let phone = PhoneNumber::parse(&format!(
                "+86137{:08}",
                (seed.wrapping_mul(104_729) + i as u64) % 100_000_000
            ))?;
            items.push(serde_json::json!({
                "carrier": carrier,
                "number": number,
                "phone": phone.expose(),
                "locale": if i % 5 == 4 { "en" } else { "zh-CN" },
                "order_ref": format!("WMS-{seed}-{i:05}"),
                "priority": if i % 10 == 0 { "high" } else { "normal" },
            }));
            parcels.push(Parcel {
                id: ShipmentId::parse(carrier, &number)?,
                phone,
                journey,
            });
        }
        let resp = self
            .http
            .post(format!("{}/shipments", self.front.base_url()))
            .header("x-api-key", &self.api_key)
            .json(&serde_json::json!({ "shipments": items }))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            return Err(format!("POST /shipments answered {status}: {body}").into());
        }
        self.drain_stream().await?;
        Ok((parcels, body))
    }

    /// One scheduler period: advance the clock, expire the visibility of messages that failed
    /// (the queue's timeout is shorter than a tick), run the scheduler, then the trackers until
    /// the queue is empty, then the notifier until the stream is drained.
    pub async fn tick(&mut self) -> Result<TickReport, BoxError> {
        let now = self.clock.advance(self.opts.tick);
        let mut r = TickReport::default();
        let released = self.tracking.expire_failed(&self.sqs).await?;
        let mut registered = 0;
        if let Some(deps) = &self.order_sync {
            let t0 = std::time::Instant::now();
            let report = order_sync::handle(deps, self.order_schedule.event_at(now)).await?;
            self.totals.order_sync_time += t0.elapsed();
            for shop in &report.shops {
                self.totals.orders_synced += shop.orders;
                self.totals.shipments_from_orders += shop.shipments_registered;
                registered += shop.shipments_registered + shop.stopped;
            }
            r.order_sync = Some(report);
        }
        let ev = self.schedule.event_at(now);
        let t0 = std::time::Instant::now();
        let sched = scheduler::handle(&self.scheduler, ev).await?;
        self.totals.scheduler_time += t0.elapsed();
        r.enqueued = sched.enqueued;
        self.last_enqueued = sched.enqueued;
        // Nothing enqueued, nothing released, nothing injected: the queue is empty and so is
        // the stream (only the trackers write shipments). Skip the empty polls.
        let dirty = std::mem::take(&mut self.dirty);
        if r.enqueued > 0 || released > 0 || dirty {
            let t0 = std::time::Instant::now();
            let drained = self.drain_tracking().await?;
            self.totals.tracker_time += t0.elapsed();
            r.tracker_batches = drained.batches;
            r.messages = drained.received;
            r.message_failures = drained.reported_failed;
        }
        if self.opts.push_mode {
            // The providers push what changed since their last acknowledged push, over HTTP, to
            // the api's callback routes: the same requests the real ones send.
            let t0 = std::time::Instant::now();
            let pushed = self.sandbox.deliver_pushes(&self.http).await;
            self.totals.push_time += t0.elapsed();
            r.pushes_sent = pushed.sent as usize;
            r.pushes_acked = pushed.acked as usize;
            for f in &pushed.failures {
                tracing::warn!(failure = %f, "push not acknowledged; the sandbox sends it again");
            }
        }
        if r.enqueued > 0 || released > 0 || dirty || r.pushes_sent > 0 || registered > 0 {
            let t0 = std::time::Instant::now();
            let (b, n) = self.drain_stream().await?;
            self.totals.notifier_time += t0.elapsed();
            r.stream_batches = b;
            r.stream_records = n;
        }

        let t = &mut self.totals;
        t.ticks += 1;
        t.enqueued += r.enqueued as u64;
        t.tracker_batches += r.tracker_batches as u64;
        t.messages += r.messages as u64;
        t.message_failures += r.message_failures as u64;
        t.stream_batches += r.stream_batches as u64;
        t.stream_records += r.stream_records as u64;
        t.pushes_sent += r.pushes_sent as u64;
        t.pushes_acked += r.pushes_acked as u64;
        Ok(r)
    }

    /// Tick until no shipment is still being checked (every one terminal or stopped), or until
    /// `days` simulated days have passed; checks every 6 simulated hours.
    pub async fn run_until_settled(&mut self, days: i64) -> Result<(), BoxError> {
        let deadline = self.now() + Duration::days(days);
        loop {
            for _ in 0..36 {
                self.tick().await?;
            }
            let open = self
                .shipments()
                .await?
                .iter()
                .filter(|s| s.next_check_at.is_some())
                .count();
            if open == 0 || self.now() >= deadline {
                return Ok(());
            }
        }
    }

    /// Poll the tracking queue with several concurrent invocations (Lambda scales SQS consumers
    /// out the same way) until it is empty.
    async fn drain_tracking(&self) -> Result<crate::runner::sqs::SqsDrainReport, BoxError> {
        let tracker = &self.tracker;
        let clock = self.clock.clone();
        let chaos = &self.tracker_chaos;
        let one = || {
            let clock = clock.clone();
            self.tracking.drain(
                &self.sqs,
                move |event| {
                    let clock = clock.clone();
                    let invoke = move |event| {
                        let now = clock.now();
                        async move { Ok(tracker::handle_batch(tracker, event, now).await) }
                    };
                    async move { chaos.invoke(&invoke, event).await }
                },
                10_000,
            )
        };
        // Three concurrent consumers only when there is enough work to share; each ends with one
        // empty receive.
        let reports = if self.last_enqueued > 30 {
            let (a, b, c) = tokio::join!(one(), one(), one());
            vec![a?, b?, c?]
        } else {
            vec![one().await?]
        };
        let mut total = crate::runner::sqs::SqsDrainReport::default();
        for d in reports {
            total.batches += d.batches;
            total.received += d.received;
            total.deleted += d.deleted;
            total.reported_failed += d.reported_failed;
            total.function_errors += d.function_errors;
        }
        Ok(total)
    }

    /// Send a raw body to the tracking queue, as a buggy or hostile producer would.
    pub async fn inject_tracking_message(&mut self, body: &str) -> Result<(), BoxError> {
        self.sqs
            .send_message()
            .queue_url(&self.stack.tracking_queue_url)
            .message_body(body)
            .send()
            .await?;
        self.dirty = true;
        Ok(())
    }

    /// Run the notifier over everything new on the table stream (what Lambda's stream poller
    /// does between ticks); returns (invocations, records).
    pub async fn drain_stream(&mut self) -> Result<(usize, usize), BoxError> {
        let notifier = &self.notifier;
        let clock = self.clock.clone();
        let chaos = &self.notifier_chaos;
        let d = self
            .stream
            .drain(
                &self.streams,
                &self.sqs,
                |event| {
                    let clock = clock.clone();
                    let invoke = move |event| {
                        let now = clock.now();
                        async move { Ok(notifier::handle_batch(notifier, event, now).await) }
                    };
                    async move { chaos.invoke(&invoke, event).await }
                },
                10_000,
            )
            .await?;
        self.drain_analytics().await?;
        Ok((d.totals.invocations, d.totals.read - d.totals.filtered))
    }

    /// Run the analytics function over everything new on the table stream (its own mapping);
    /// returns the records it was handed. Nothing when analytics is off.
    pub async fn drain_analytics(&mut self) -> Result<usize, BoxError> {
        let Some((f, source)) = &mut self.analytics else {
            return Ok(0);
        };
        let t0 = std::time::Instant::now();
        let d = source
            .drain(
                &self.streams,
                &self.sqs,
                |event| async { Ok(analytics::handle_batch(f, event).await) },
                10_000,
            )
            .await?;
        self.totals.analytics_time += t0.elapsed();
        Ok(d.totals.delivered)
    }

    /// Hand the analytics function the whole stream again, from its trim horizon, through a
    /// fresh mapping (what a recreated event-source mapping does): every record is delivered a
    /// second time. Returns the records delivered.
    pub async fn replay_analytics(&mut self) -> Result<usize, BoxError> {
        let Some((f, _)) = &self.analytics else {
            return Ok(0);
        };
        let mut source = analytics_source(&self.stack, StartingPosition::TrimHorizon)?;
        let d = source
            .drain(
                &self.streams,
                &self.sqs,
                |event| async { Ok(analytics::handle_batch(f, event).await) },
                10_000,
            )
            .await?;
        Ok(d.totals.delivered)
    }

    /// Every item matching a filter (a paginated Scan: fine for reports and assertions,
    /// never used by the functions).
    async fn scan_all(
        &self,
        filter: &str,
        names: &[(&str, &str)],
        values: &[(&str, &str)],
    ) -> Result<Vec<HashMap<String, AttributeValue>>, BoxError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut req = self
                .dynamo
                .scan()
                .table_name(&self.stack.table_name)
                .filter_expression(filter)
                .set_exclusive_start_key(start);
            for (k, v) in names {
                req = req.expression_attribute_names(*k, *v);
            }
            for (k, v) in values {
                req = req.expression_attribute_values(*k, AttributeValue::S((*v).to_string()));
            }
            let page = req.send().await?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Every shipment in the table, as the store reads it: its `META` item with the schedule of
    /// its `SCHED` item laid over it.
    pub async fn shipments(&self) -> Result<Vec<Shipment>, BoxError> {
        let items = self
            .scan_all(
                "(sk = :m OR sk = :s) AND begins_with(pk, :ship)",
                &[],
                &[(":m", "META"), (":s", SCHED), (":ship", "SHIP#")],
            )
            .await?;
        let mut heads = Vec::new();
        let mut scheds = HashMap::new();
        for item in items {
            if item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some(SCHED)
            {
                let rec: SchedRecord = serde_dynamo::from_item(item)?;
                scheds.insert(rec.pk.clone(), rec);
            } else {
                heads.push(serde_dynamo::from_item::<_, ShipmentRecord>(item)?);
            }
        }
        let mut out = Vec::with_capacity(heads.len());
        for head in heads {
            let sched = scheds.get(&head.pk);
            out.push(parcelwatch::store::record::shipment_from_items(
                head, sched,
            )?);
        }
        Ok(out)
    }

    /// Trace-line items stored for a shipment (`EVT#…`).
    pub async fn event_items(&self, id: &ShipmentId) -> Result<usize, BoxError> {
        let out = self
            .dynamo
            .query()
            .table_name(&self.stack.table_name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :evt)")
            .expression_attribute_values(":pk", AttributeValue::S(id.pk()))
            .expression_attribute_values(":evt", AttributeValue::S("EVT#".into()))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .send()
            .await?;
        Ok(out.count() as usize)
    }

    /// The notification ledger's SMS entries that were sent: SNS message id → the status the
    /// buyer was told about (parsed from `NOTE#{from}>{to}[(sub)]@v{n}#sms`).
    pub async fn sms_ledger(
        &self,
    ) -> Result<HashMap<String, parcelwatch::domain::Status>, BoxError> {
        let items = self
            .scan_all(
                "begins_with(sk, :note) AND #st = :sent",
                &[("#st", "state")],
                &[(":note", "NOTE#"), (":sent", "sent")],
            )
            .await?;
        let mut out = HashMap::new();
        for item in &items {
            let sk = item.get("sk").and_then(|v| v.as_s().ok());
            let mid = item.get("message_id").and_then(|v| v.as_s().ok());
            let (Some(sk), Some(mid)) = (sk, mid) else {
                continue;
            };
            if !sk.ends_with("#sms") {
                continue;
            }
            let to = sk
                .split_once('>')
                .map(|(_, rest)| rest.split(['(', '@']).next().unwrap_or_default())
                .and_then(|name| name.parse().ok());
            if let Some(to) = to {
                out.insert(mid.clone(), to);
            }
        }
        Ok(out)
    }

    /// SMS the local SNS says it sent (read back from moto, not counted by our code).
    pub async fn sent_sms(&self) -> Result<Vec<SentSms>, BoxError> {
        Ok(sent_sms(&self.stack.endpoint).await?)
    }

    /// Messages in a queue, with their `error_reason` attribute when present. Messages are
    /// received and made visible again at once, so the queue keeps them.
    pub async fn peek_queue(&self, url: &str) -> Result<Vec<(String, Option<String>)>, BoxError> {
        let mut out = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..100 {
            let r = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .visibility_timeout(30)
                .send()
                .await?;
            let msgs = r.messages();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let reason = m
                    .message_attributes()
                    .and_then(|a| a.get("error_reason"))
                    .and_then(|v| v.string_value())
                    .map(str::to_string);
                out.push((m.body().unwrap_or_default().to_string(), reason));
                if let Some(h) = m.receipt_handle() {
                    handles.push(h.to_string());
                }
            }
        }
        for h in handles {
            self.sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(h)
                .visibility_timeout(0)
                .send()
                .await?;
        }
        Ok(out)
    }
}

/// Write `h` into the table as the analytics function stores its aggregates (one item per
/// route, one per carrier and stage, histogram buckets as top-level numbers), replacing any
/// item of the same key.
pub async fn write_history(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
    h: &HistorySnapshot,
) -> Result<(), BoxError> {
    let s = |v: &str| AttributeValue::S(v.to_string());
    let n = |v: u64| AttributeValue::N(v.to_string());
    for (k, r) in &h.routes {
        let mut req = dynamo
            .put_item()
            .table_name(table)
            .item("pk", s(&route_pk(&k.carrier)))
            .item("sk", s(&format!("{}#{}", k.origin, k.destination)))
            .item("carrier", s(&k.carrier))
            .item("origin", s(&k.origin))
            .item("destination", s(&k.destination))
            .item("finished", n(r.finished))
            .item("delivered", n(r.delivered))
            .item("exceptions", n(r.exceptions));
        for (i, c) in r.delivery.counts() {
            req = req.item(bucket_attr('d', i), n(c));
        }
        req.send().await?;
    }
    for ((carrier, stage), st) in &h.stages {
        let mut req = dynamo
            .put_item()
            .table_name(table)
            .item("pk", s(STAGE_PK))
            .item("sk", s(&format!("{carrier}#{stage}")))
            .item("carrier", s(carrier))
            .item("stage", s(stage.as_str()));
        for (prefix, hist) in [('t', &st.time_in_stage), ('g', &st.quiet_gap)] {
            for (i, c) in hist.counts() {
                req = req.item(bucket_attr(prefix, i), n(c));
            }
        }
        req.send().await?;
    }
    Ok(())
}

/// Wait (10 s at most) until every one of `loaded` answers for every carrier of `seed` with at
/// least the seeded number of deliveries.
async fn history_loaded(
    seed: &HistorySnapshot,
    loaded: &[&(dyn StageHistory + Send + Sync)],
) -> Result<(), BoxError> {
    let carriers = seed.carriers();
    let wanted: Vec<(String, u64)> = carriers
        .iter()
        .map(|c| (c.clone(), seed.route(c, None, None).delivery.total()))
        .filter(|(_, n)| *n > 0)
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ready = wanted.iter().all(|(c, n)| {
            loaded.iter().all(|h| {
                h.delivery_time_quantile(c, None, None, 0.5)
                    .is_some_and(|(_, got)| got >= *n)
            })
        });
        if ready {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "the functions did not load the seeded history within 10 s ({wanted:?})"
            )
            .into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The analytics function's mapping of the table stream, as template.yaml declares it.
fn analytics_source(
    stack: &LocalStack,
    starting_position: StartingPosition,
) -> Result<StreamSource, BoxError> {
    let spec = stack
        .event_sources
        .stream_of("analytics")
        .ok_or("template.yaml has no DynamoDB event for the analytics function")?;
    let failure_queue = spec
        .on_failure_queue
        .as_deref()
        .and_then(|id| match stack.resources.get(id) {
            Some(crate::provision::PhysicalResource::Queue { url, .. }) => Some(url.clone()),
            _ => None,
        })
        .ok_or("the analytics mapping has no on-failure queue")?;
    Ok(StreamSource::new(
        &stack.table_stream_arn,
        format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{}-analytics",
            stack.prefix
        ),
        starting_position,
    )?
    .with_batch_size(spec.batch_size as i32)
    .with_max_retry_attempts(spec.max_retry_attempts)
    .with_bisect_on_error(spec.bisect_on_error)
    .with_filters(spec.filter_patterns.clone())
    .with_on_failure_queue(failure_queue))
}

/// How many SMS the buyer of this parcel must receive: one per notifiable transition of the
/// simulator's truth (status level), plus the locker-overdue reminder (a sub-status change).
pub fn expected_sms(p: &Parcel, until: chrono::DateTime<chrono::Utc>) -> usize {
    let mut shipment = Shipment::register(
        p.id.clone(),
        Default::default(),
        "kdniao",
        Recipient::default(),
        None,
        until,
    );
    let mut from = Status::Pending;
    let mut n = 0;
    for (_, to) in p.journey.truth_statuses(until) {
        if to == from {
            continue;
        }
        shipment.status = to;
        let t = parcelwatch::domain::Transition {
            from,
            to,
            from_sub: None,
            to_sub: None,
        };
        n += usize::from(
            parcelwatch::domain::templates::render(&shipment, &t, Default::default()).is_some(),
        );
        from = to;
    }
    let overdue = p
        .journey
        .steps
        .iter()
        .any(|s| s.state_ex == "412" && s.at <= until);
    if overdue {
        shipment.status = Status::AvailableForPickup;
        let t = parcelwatch::domain::Transition {
            from: Status::AvailableForPickup,
            to: Status::AvailableForPickup,
            from_sub: Some(parcelwatch::domain::SubStatus::new("kdniao", "211")),
            to_sub: Some(parcelwatch::domain::SubStatus::new("kdniao", "412")),
        };
        n += usize::from(
            parcelwatch::domain::templates::render(&shipment, &t, Default::default()).is_some(),
        );
    }
    n
}
