//! Each fault, on each endpoint, through the real clients of `parcelwatch`.

use super::*;
use crate::sandbox::journey::JourneyKind;
use crate::sandbox::orders::{
    DEFAULT_FW199_APPID, DEFAULT_FW199_SECRET, DEFAULT_TOP_APP_KEY, DEFAULT_TOP_SECRET,
    DEFAULT_TOP_SESSION,
};
use crate::sandbox::testkit::{query, sandbox, t0};
use parcelwatch::config::{KdniaoConfig, Secret};
use parcelwatch::domain::order::Platform;
use parcelwatch::orders::{
    Fw199Client, Fw199Config, OrderError, OrderSource, SignMethod, TopClient, TopConfig,
};
use parcelwatch::providers::kdniao::KdniaoClient;
use parcelwatch::providers::kdniao_push::{KdniaoPushConfig, KdniaoSubscriber};
use parcelwatch::providers::kuaidi100::{
    Kuaidi100Client, Kuaidi100Config, Kuaidi100QueryConfig, Kuaidi100Subscriber,
};
use parcelwatch::providers::push::Subscriber;
use parcelwatch::providers::taobao::{TaobaoClient, TaobaoConfig};
use parcelwatch::providers::{ProviderError, TraceProvider, TraceQuery};
use std::time::Instant;

/// How a client call ended, in the terms the pipeline acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Retryable {
        retry_after: Option<Duration>,
        reason: String,
    },
    Permanent(String),
}

impl From<ProviderError> for Outcome {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Retryable {
                reason,
                retry_after,
                ..
            } => Outcome::Retryable {
                retry_after,
                reason,
            },
            ProviderError::Permanent { reason, .. } => Outcome::Permanent(reason),
        }
    }
}

impl From<OrderError> for Outcome {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Retryable {
                reason,
                retry_after,
            } => Outcome::Retryable {
                retry_after,
                reason,
            },
            OrderError::Permanent { reason } => Outcome::Permanent(reason),
        }
    }
}

fn outcome<T, E: Into<Outcome>>(r: Result<T, E>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => e.into(),
    }
}

fn kdniao(sb: &Sandbox, timeout: Duration) -> KdniaoClient {
    KdniaoClient::new(
        KdniaoConfig {
            endpoint: sb.kdniao_endpoint(),
            ebusiness_id: sb.ebusiness_id().to_owned(),
            app_key: Secret::new(sb.app_key()),
            request_type: "8001".into(),
            timeout,
        },
        reqwest::Client::new(),
    )
}

fn kdniao_subscriber(sb: &Sandbox, timeout: Duration) -> KdniaoSubscriber {
    KdniaoSubscriber::new(
        KdniaoPushConfig {
            subscribe_endpoint: sb.kdniao_subscribe_endpoint(),
            ebusiness_id: sb.ebusiness_id().to_owned(),
            app_key: Secret::new(sb.app_key()),
            callback_url: "http://127.0.0.1:9/push/kdniao".into(),
            timeout,
        },
        reqwest::Client::new(),
    )
}

fn kuaidi100(sb: &Sandbox, timeout: Duration) -> Kuaidi100Client {
    Kuaidi100Client::new(
        Kuaidi100QueryConfig {
            endpoint: sb.kuaidi100_query_endpoint(),
            customer: sb.kuaidi100_customer().to_owned(),
            key: Secret::new(sb.kuaidi100_key()),
            timeout,
        },
        reqwest::Client::new(),
    )
}

fn kuaidi100_subscriber(sb: &Sandbox, timeout: Duration) -> Kuaidi100Subscriber {
    Kuaidi100Subscriber::new(
        Kuaidi100Config {
            subscribe_endpoint: sb.kuaidi100_subscribe_endpoint(),
            key: Secret::new(sb.kuaidi100_key()),
            customer: Some(sb.kuaidi100_customer().to_owned()),
            salt: Secret::new("salt"),
            callback_url: "http://127.0.0.1:9/push/kuaidi100".into(),
            timeout,
        },
        reqwest::Client::new(),
    )
}

fn taobao(sb: &Sandbox, timeout: Duration) -> TaobaoClient {
    TaobaoClient::new(
        TaobaoConfig {
            endpoint: sb.top_endpoint(),
            app_key: DEFAULT_TOP_APP_KEY.into(),
            secret: Secret::new(DEFAULT_TOP_SECRET),
            session: Secret::new(DEFAULT_TOP_SESSION),
            sign_method: SignMethod::Md5,
            timeout,
        },
        reqwest::Client::new(),
    )
}

fn top(sb: &Sandbox, timeout: Duration) -> TopClient {
    TopClient::new(
        TopConfig {
            endpoint: sb.top_endpoint(),
            app_key: DEFAULT_TOP_APP_KEY.into(),
            secret: Secret::new(DEFAULT_TOP_SECRET),
            session: Secret::new(DEFAULT_TOP_SESSION),
            sign_method: SignMethod::Md5,
            timeout,
        },
        reqwest::Client::new(),
    )
}

fn fw199(sb: &Sandbox, timeout: Duration) -> Fw199Client {
    Fw199Client::new(
        Fw199Config {
            endpoint: sb.fw199_endpoint(),
            appid: DEFAULT_FW199_APPID.into(),
            secret: Secret::new(DEFAULT_FW199_SECRET),
            sysid: None,
            timeout,
        },
        reqwest::Client::new(),
    )
}

fn yto() -> TraceQuery {
    query("YTO", "YT1234567890123", None)
}

/// One request to `ep` through its real client.
async fn call(sb: &Sandbox, ep: FaultedEndpoint, timeout: Duration) -> Outcome {
    let now = Utc::now();
    match ep {
        FaultedEndpoint::KdniaoQuery => outcome(kdniao(sb, timeout).query(&yto()).await),
        FaultedEndpoint::KdniaoSubscribe => {
            outcome(kdniao_subscriber(sb, timeout).subscribe(&yto()).await)
        }
        FaultedEndpoint::Kuaidi100Query => outcome(kuaidi100(sb, timeout).query(&yto()).await),
        FaultedEndpoint::Kuaidi100Subscribe => {
            outcome(kuaidi100_subscriber(sb, timeout).subscribe(&yto()).await)
        }
        FaultedEndpoint::TaobaoTrace => {
            let q = TraceQuery {
                order_ref: Some("top:shop:3000000000000001".into()),
                ..yto()
            };
            outcome(taobao(sb, timeout).query(&q).await)
        }
        FaultedEndpoint::TopOrders => outcome(
            top(sb, timeout)
                .page("shop", now - chrono::Duration::minutes(30), now, 1, 50)
                .await,
        ),
        FaultedEndpoint::Fw199Orders => outcome(
            fw199(sb, timeout)
                .page("shop", now - chrono::Duration::minutes(30), now, 1, 50)
                .await,
        ),
    }
}

fn quick(kind: FaultKind, seed: u64) -> ProviderFaults {
    ProviderFaults {
        timeout_hold: Duration::from_millis(200),
        slow_hold: Duration::from_millis(200),
        ..ProviderFaults::only(kind, 1.0, seed)
    }
}

#[tokio::test]
async fn every_fault_on_every_endpoint_is_retryable_for_the_real_clients() {
    let (sb, _clock) = sandbox(1).await;
    let client_timeout = Duration::from_secs(5);
    for kind in FaultKind::ALL {
        sb.set_provider_faults(quick(kind, 9));
        for ep in FaultedEndpoint::ALL {
            let got = call(&sb, ep, client_timeout).await;
            let Outcome::Retryable {
                retry_after,
                reason,
            } = &got
            else {
                panic!("{} {}: {got:?}", ep.name(), kind.name());
            };
            match (kind, ep) {
                (FaultKind::Http5xx, _) => assert!(reason.contains("HTTP 5"), "{reason}"),
                (FaultKind::Timeout, _) => assert!(reason.contains("504"), "{reason}"),
                (FaultKind::Garbage | FaultKind::Truncated, _) => {
                    assert!(reason.contains("unreadable"), "{reason}")
                }
                (FaultKind::Throttle, FaultedEndpoint::KdniaoQuery) => {
                    assert!(reason.contains("daily query limit"), "{reason}");
                    assert!(retry_after.is_some());
                }
                (FaultKind::Throttle, FaultedEndpoint::Kuaidi100Query) => {
                    assert_eq!(*retry_after, Some(Duration::from_secs(30 * 60)), "{reason}")
                }
                (
                    FaultKind::Throttle,
                    FaultedEndpoint::TaobaoTrace
                    | FaultedEndpoint::TopOrders
                    | FaultedEndpoint::Fw199Orders,
                ) => assert_eq!(*retry_after, Some(Duration::from_secs(1)), "{reason}"),
                _ => {}
            }
        }
    }
    let counts = sb.provider_fault_counts();
    for kind in FaultKind::ALL {
        for ep in FaultedEndpoint::ALL {
            let key = format!("{}.{}", ep.name(), kind.name());
            assert_eq!(counts.get(&key), Some(&1), "{key}: {counts:?}");
        }
    }
    assert_eq!(counts.len(), 49, "no request passed: {counts:?}");
    // None of them reached a handler.
    assert_eq!(sb.stats().total_requests(), 0);
    assert_eq!(sb.kuaidi100_stats().requests, 0);
    let push = sb.push_stats();
    assert_eq!(
        (
            push.kdniao_subscribe_requests,
            push.kuaidi100_subscribe_requests
        ),
        (0, 0)
    );
}

#[tokio::test]
async fn hangs_and_slow_bodies_hold_the_request_or_time_the_client_out() {
    let (sb, _clock) = sandbox(2).await;
    let http = reqwest::Client::new();
    let form = [("param", "{}"), ("customer", "x"), ("sign", "x")];

    sb.set_provider_faults(ProviderFaults {
        timeout_hold: Duration::from_millis(600),
        ..ProviderFaults::only(FaultKind::Timeout, 1.0, 1)
    });
    let started = Instant::now();
    let resp = http
        .post(sb.kuaidi100_query_endpoint())
        .form(&form)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), reqwest::StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(600));
    // A client with a shorter timeout gives up: its own timed-out error, retryable.
    let got = call(
        &sb,
        FaultedEndpoint::Kuaidi100Query,
        Duration::from_millis(150),
    )
    .await;
    assert!(
        matches!(&got, Outcome::Retryable { reason, .. } if reason.contains("timed out")),
        "{got:?}"
    );

    sb.set_provider_faults(ProviderFaults {
        slow_hold: Duration::from_millis(800),
        ..ProviderFaults::only(FaultKind::SlowBody, 1.0, 1)
    });
    let started = Instant::now();
    let resp = http
        .post(sb.kuaidi100_query_endpoint())
        .form(&form)
        .send()
        .await
        .expect("answer");
    let headers_after = started.elapsed();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let body = resp.text().await.expect("body");
    let body_after = started.elapsed();
    assert!(
        headers_after < Duration::from_millis(400),
        "{headers_after:?}"
    );
    assert!(body_after >= Duration::from_millis(700), "{body_after:?}");
    let v: Value = serde_json::from_str(&body).expect("the whole refusal arrives");
    assert_eq!(v["returnCode"], "500");
    let got = call(
        &sb,
        FaultedEndpoint::KdniaoQuery,
        Duration::from_millis(300),
    )
    .await;
    assert!(
        matches!(&got, Outcome::Retryable { reason, .. } if reason.contains("timed out")),
        "{got:?}"
    );
    let counts = sb.provider_fault_counts();
    assert_eq!(counts.get("kuaidi100.query.timeout"), Some(&2));
    assert_eq!(counts.get("kuaidi100.query.slow_body"), Some(&1));
    assert_eq!(counts.get("kdniao.query.slow_body"), Some(&1));
}

#[tokio::test]
async fn wire_shapes_of_the_fast_faults() {
    let (sb, _clock) = sandbox(3).await;
    let http = reqwest::Client::new();
    let send = |ep: &'static str| {
        let http = http.clone();
        let url = sb.kdniao_endpoint();
        async move {
            let resp = http
                .post(url)
                .form(&[("RequestType", ep), ("RequestData", "{}")])
                .send()
                .await
                .expect("answer");
            let status = resp.status();
            (status, resp.text().await.expect("body"))
        }
    };
    sb.set_provider_faults(ProviderFaults::only(FaultKind::Http5xx, 1.0, 1));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, body) = send("8001").await;
        assert!(body.contains("nginx"), "{body}");
        statuses.push(status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![500, 502, 503]);

    sb.set_provider_faults(ProviderFaults::only(FaultKind::Garbage, 1.0, 1));
    let (status, body) = send("1002").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");

    sb.set_provider_faults(ProviderFaults::only(FaultKind::Truncated, 1.0, 1));
    let (status, body) = send("8001").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(body.starts_with('{') && body.len() > 40, "{body}");
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");

    sb.set_provider_faults(ProviderFaults::only(FaultKind::Refused, 1.0, 1));
    let (_, body) = send("8001").await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (v["Success"].clone(), v["Reason"].clone()),
        (json!(false), json!("系统繁忙，请稍后再试"))
    );

    // Recognition (2002) is never faulted.
    let (status, body) = send("2002").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(!body.contains("系统繁忙"), "{body}");
    let counts = sb.provider_fault_counts();
    assert_eq!(counts.get("kdniao.query.http_5xx"), Some(&3));
    assert_eq!(counts.get("kdniao.query.garbage"), Some(&1));
    assert_eq!(counts.get("kdniao.query.truncated"), Some(&1));
    assert_eq!(counts.get("kdniao.query.refused"), Some(&1));
    assert_eq!(counts.values().sum::<u64>(), 6);
}

#[tokio::test]
async fn a_faulted_request_advances_no_sandbox_state() {
    let (sb, clock) = sandbox(4).await;
    let j = sb.register_kind(JourneyKind::Delivered, "YTO", "YT1234567890123", t0());
    clock.set(j.steps[2].at);
    let t = Duration::from_secs(5);

    // Kuaidi100: a faulted query does not open the 30-minute window.
    sb.set_provider_faults(ProviderFaults::only(FaultKind::Refused, 1.0, 1));
    assert_ne!(
        call(&sb, FaultedEndpoint::Kuaidi100Query, t).await,
        Outcome::Ok
    );
    sb.set_provider_faults(ProviderFaults::default());
    let snap = kuaidi100(&sb, t).query(&yto()).await.expect("answered");
    assert_eq!(snap.events.len(), 3);
    let k = sb.kuaidi100_stats();
    assert_eq!((k.requests, k.answered, k.too_frequent), (1, 1, 0));

    // Kdniao 8008: a faulted subscription registers nothing.
    sb.set_provider_faults(ProviderFaults::only(FaultKind::Throttle, 1.0, 1));
    assert_ne!(
        call(&sb, FaultedEndpoint::KdniaoSubscribe, t).await,
        Outcome::Ok
    );
    assert_ne!(
        call(&sb, FaultedEndpoint::Kuaidi100Subscribe, t).await,
        Outcome::Ok
    );
    assert!(sb.subscriptions().is_empty());
    sb.set_provider_faults(ProviderFaults::default());
    assert_eq!(
        call(&sb, FaultedEndpoint::KdniaoSubscribe, t).await,
        Outcome::Ok
    );
    assert_eq!(sb.subscriptions().len(), 1);

    // Kdniao: the quota failure and the request counters only see real requests.
    sb.set_provider_faults(ProviderFaults::only(FaultKind::Garbage, 1.0, 1));
    assert_ne!(
        call(&sb, FaultedEndpoint::KdniaoQuery, t).await,
        Outcome::Ok
    );
    assert_eq!(sb.stats().requests_8001, 0);

    // TOP: the sandbox's own throttle budget is not spent by faulted requests.
    sb.set_throttle(Platform::Top, 1, 7);
    sb.set_provider_faults(ProviderFaults::only(FaultKind::Http5xx, 1.0, 1));
    assert_ne!(call(&sb, FaultedEndpoint::TopOrders, t).await, Outcome::Ok);
    sb.set_provider_faults(ProviderFaults::default());
    let got = call(&sb, FaultedEndpoint::TopOrders, t).await;
    assert!(
        matches!(&got, Outcome::Retryable { retry_after: Some(d), .. } if *d == Duration::from_secs(7)),
        "the budgeted throttle is still there: {got:?}"
    );
    assert_eq!(call(&sb, FaultedEndpoint::TopOrders, t).await, Outcome::Ok);

    let counts = sb.provider_fault_counts();
    assert_eq!(counts.get("kuaidi100.query.refused"), Some(&1));
    assert_eq!(counts.get("kuaidi100.query.passed"), Some(&1));
    assert_eq!(counts.get("kdniao.subscribe.throttle"), Some(&1));
    assert_eq!(counts.get("kuaidi100.subscribe.throttle"), Some(&1));
    assert_eq!(counts.get("kdniao.subscribe.passed"), Some(&1));
    assert_eq!(counts.get("top.orders.http_5xx"), Some(&1));
    assert_eq!(counts.get("top.orders.passed"), Some(&2));
}

#[tokio::test]
async fn a_seeded_mix_repeats_and_counts_every_request() {
    let mix = |seed| ProviderFaults {
        seed,
        http_5xx: 0.1,
        timeout: 0.1,
        slow_body: 0.1,
        garbage: 0.1,
        truncated: 0.1,
        refused: 0.1,
        throttle: 0.1,
        timeout_hold: Duration::from_millis(10),
        slow_hold: Duration::from_millis(10),
        ..ProviderFaults::default()
    };
    let mut runs = Vec::new();
    for seed in [5, 5, 6] {
        let (sb, _clock) = sandbox(10).await;
        sb.set_provider_faults(mix(seed));
        let mut pattern = Vec::new();
        for _ in 0..40 {
            let got = call(&sb, FaultedEndpoint::KdniaoQuery, Duration::from_secs(5)).await;
            assert!(
                !matches!(got, Outcome::Permanent(_)),
                "a fault must never look permanent: {got:?}"
            );
            pattern.push(got == Outcome::Ok);
        }
        let counts = sb.provider_fault_counts();
        assert_eq!(counts.values().sum::<u64>(), 40, "{counts:?}");
        let passed = pattern.iter().filter(|ok| **ok).count() as u64;
        assert_eq!(
            counts.get("kdniao.query.passed").copied().unwrap_or(0),
            passed
        );
        assert_eq!(sb.stats().requests_8001, passed);
        let kinds = counts.keys().filter(|k| !k.ends_with(".passed")).count();
        assert!(kinds >= 4, "{counts:?}");
        runs.push((pattern, counts));
    }
    assert_eq!(runs[0], runs[1], "same seed, same faults");
    assert_ne!(runs[0].0, runs[2].0, "another seed, other faults");
}
