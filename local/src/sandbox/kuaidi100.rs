//! The Kuaidi100 real-time query endpoint (`POST /poll/query.do`), answering from the simulated
//! journeys as visible at the sandbox clock, with Kuaidi100's real checks.
//!
//! Routes:
//! - `POST /poll/query.do` — form fields `customer`, `sign`, `param` (PROTOCOLS.md §2).
//! - `GET /sandbox/kuaidi100/stats` — [`Kuaidi100Stats`].
//!
//! Checks, in order, each answered `{"result":false,"returnCode":…,"message":…}` with HTTP 200:
//! 1. the body is a form with `customer`, `sign` and `param` → else 400 参数不完整;
//! 2. `customer` is the sandbox's ([`DEFAULT_KUAIDI100_CUSTOMER`]) → else 503 (the signature
//!    cannot be checked for an unknown customer; counted as `unknown_customer`);
//! 3. `sign == UPPER(MD5(param + key + customer))`, exactly (upper case) → else 503 验证签名失败;
//! 4. `param` is JSON with `com` and a 6–32 character `num` → else 400;
//! 5. `com` is a carrier the sandbox knows → else 400 (unknown carrier);
//! 6. SF and ZTO carry a `phone` of at least 4 digits → else 408. Journeys have no phone, so
//!    any digits pass; they must be there;
//! 7. **the 30-minute rule**: a second query of the same waybill less than 30 minutes (sandbox
//!    clock) after the last one that passed these checks gets 502 "查询过于频繁" (counted as
//!    `too_frequent`). A refused query does not restart the window;
//! 8. a waybill the sandbox does not know, or one without trace lines yet → 500 查询无结果.
//!
//! Otherwise the answer is Kuaidi100's trace shape (`message`, `nu`, `ischeck`, `condition`,
//! `com`, `status:"200"`, `state`, `data` newest first unless `order` is `asc`), built by
//! [`super::push::kuaidi100_push_for`], the same translation the sandbox's pushes use, so a
//! query and a push of the same journey at the same time carry the same trace.

use super::journey::normalize_number;
use super::push::{kuaidi100_push_for, DEFAULT_KUAIDI100_CUSTOMER, DEFAULT_KUAIDI100_KEY};
use super::{Sandbox, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use parcelwatch::providers::ct_eq;
use parcelwatch::providers::kuaidi100::{carrier_of, query_sign};
use parcelwatch::providers::push::Form;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Path of Kuaidi100's real-time query, as on `poll.kuaidi100.com`.
pub const KUAIDI100_QUERY_PATH: &str = "/poll/query.do";

/// Minimum sandbox-clock time between two answered queries of one waybill.
pub fn query_min_interval() -> Duration {
    Duration::minutes(30)
}

/// Query counters, read with [`Sandbox::kuaidi100_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kuaidi100Stats {
    /// Every request, counted on arrival.
    pub requests: u64,
    /// Answered with a trace (`status:"200"`).
    pub answered: u64,
    /// Answered 500 查询无结果 (unknown waybill or no line yet).
    pub no_result: u64,
    /// Of `no_result`: waybills the sandbox does not know.
    pub unknown_waybill: u64,
    /// 400: missing form fields, `param` not JSON, `com`/`num` missing or malformed.
    pub bad_request: u64,
    /// 400: a `com` the sandbox does not know.
    pub unknown_carrier: u64,
    /// 503: a `customer` other than the sandbox's.
    pub unknown_customer: u64,
    /// 503: the `sign` does not verify.
    pub bad_sign: u64,
    /// 408: SF / ZTO without a phone suffix.
    pub bad_phone: u64,
    /// 502: queried again within 30 minutes.
    pub too_frequent: u64,
}

/// Per-sandbox state of the query endpoint: counters and the 30-minute windows.
#[derive(Debug, Default)]
pub(crate) struct QueryState {
    requests: AtomicU64,
    answered: AtomicU64,
    no_result: AtomicU64,
    unknown_waybill: AtomicU64,
    bad_request: AtomicU64,
    unknown_carrier: AtomicU64,
    unknown_customer: AtomicU64,
    bad_sign: AtomicU64,
    bad_phone: AtomicU64,
    too_frequent: AtomicU64,
    /// (carrier, number) → sandbox time of the last query that passed the checks.
    last_query: Mutex<HashMap<(String, String), DateTime<Utc>>>,
}

impl QueryState {
    fn stats(&self) -> Kuaidi100Stats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Kuaidi100Stats {
            requests: r(&self.requests),
            answered: r(&self.answered),
            no_result: r(&self.no_result),
            unknown_waybill: r(&self.unknown_waybill),
            bad_request: r(&self.bad_request),
            unknown_carrier: r(&self.unknown_carrier),
            unknown_customer: r(&self.unknown_customer),
            bad_sign: r(&self.bad_sign),
            bad_phone: r(&self.bad_phone),
            too_frequent: r(&self.too_frequent),
        }
    }

    /// Record a query of `key` at `now`; `Err(next allowed time)` when inside the window of
    /// the previous one (which is then left as it was).
    fn admit(&self, key: (String, String), now: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        let mut last = self.last_query.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(prev) = last.get(&key) {
            let next = *prev + query_min_interval();
            if now < next {
                return Err(next);
            }
        }
        last.insert(key, now);
        Ok(())
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(KUAIDI100_QUERY_PATH, post(handle))
        .route("/sandbox/kuaidi100/stats", get(get_stats))
}

async fn handle(State(shared): State<Arc<Shared>>, body: Bytes) -> Json<Value> {
    Json(answer(&shared, &body))
}

async fn get_stats(State(shared): State<Arc<Shared>>) -> Json<Kuaidi100Stats> {
    Json(shared.kuaidi100.stats())
}

fn error(code: &str, message: &str) -> Value {
    json!({ "result": false, "returnCode": code, "message": message })
}

/// Kuaidi100's China-time text of an instant, for messages.
fn china(t: DateTime<Utc>) -> String {
    (t + Duration::hours(8))
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The answer to one query body, counted in the stats.
fn answer(shared: &Shared, body: &[u8]) -> Value {
    let st = &shared.kuaidi100;
    bump(&st.requests);
    let bad = |message: &str| {
        bump(&st.bad_request);
        error("400", message)
    };

    let Some(form) = std::str::from_utf8(body)
        .ok()
        .and_then(|b| Form::parse(b).ok())
    else {
        return bad("参数不完整：请求须为UTF-8的application/x-www-form-urlencoded");
    };
    let (Some(customer), Some(sign), Some(param)) =
        (form.get("customer"), form.get("sign"), form.get("param"))
    else {
        let missing: Vec<&str> = ["customer", "sign", "param"]
            .into_iter()
            .filter(|f| form.get(f).is_none())
            .collect();
        return bad(&format!("参数不完整：缺少{}", missing.join(",")));
    };
    if !ct_eq(customer.trim(), DEFAULT_KUAIDI100_CUSTOMER) {
        bump(&st.unknown_customer);
        return error("503", "验证签名失败：customer不存在");
    }
    let expected = query_sign(param, DEFAULT_KUAIDI100_KEY, DEFAULT_KUAIDI100_CUSTOMER);
    if !ct_eq(sign.trim(), &expected) {
        bump(&st.bad_sign);
        return error("503", "验证签名失败");
    }

    let Ok(param) = serde_json::from_str::<Value>(param) else {
        return bad("参数不完整：param不是JSON");
    };
    let text = |v: &Value| v.as_str().map(str::trim).unwrap_or_default().to_owned();
    let com = text(&param["com"]).to_ascii_lowercase();
    let num = normalize_number(&text(&param["num"]));
    if com.is_empty() || !(6..=32).contains(&num.chars().count()) {
        return bad("参数不完整：com不能为空，num须为6-32位");
    }
    let Some(carrier) = carrier_of(&com) else {
        bump(&st.unknown_carrier);
        return error("400", "找不到对应公司，请检查com参数");
    };
    if carrier.needs_phone_suffix() {
        let phone = text(&param["phone"]);
        let ok = phone.len() >= 4 && phone.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            bump(&st.bad_phone);
            return error(
                "408",
                "电话号码校验失败：该快递公司须提供收件人或寄件人手机号后四位",
            );
        }
    }

    let now = shared.clock.now();
    let key = (carrier.as_str().to_owned(), num);
    if let Err(next) = st.admit(key.clone(), now) {
        bump(&st.too_frequent);
        return error(
            "502",
            &format!(
                "查询过于频繁：同一单号30分钟内只能查询一次，请于{}后再查",
                china(next)
            ),
        );
    }

    let (carrier, number) = key;
    let Some(journey) = shared.journey(&carrier, &number) else {
        bump(&st.unknown_waybill);
        bump(&st.no_result);
        return error("500", "查询无结果，请隔段时间再查");
    };
    let Some((push, _signed)) = kuaidi100_push_for(&journey, now, &com, &number) else {
        bump(&st.no_result);
        return error("500", "查询无结果，请隔段时间再查");
    };
    let Some(mut result) = push.last_result else {
        bump(&st.no_result);
        return error("500", "查询无结果，请隔段时间再查");
    };
    result.condition = Some("F00".to_owned());
    if text(&param["order"]).eq_ignore_ascii_case("asc") {
        result.data.reverse();
    }
    match serde_json::to_value(&result) {
        Ok(v) => {
            bump(&st.answered);
            v
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a Kuaidi100 query answer");
            error("501", "服务器错误")
        }
    }
}

impl Sandbox {
    /// The URL to configure as `KUAIDI100_QUERY_ENDPOINT`.
    pub fn kuaidi100_query_endpoint(&self) -> String {
        format!("{}{}", self.base_url(), KUAIDI100_QUERY_PATH)
    }

    pub fn kuaidi100_stats(&self) -> Kuaidi100Stats {
        self.shared.kuaidi100.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::super::journey::{plan_kind, truth_status_after_return, JourneyKind};

    use super::*;

    use crate::sandbox::testkit::{query, sandbox, t0};

    use parcelwatch::config::{KdniaoConfig, Secret};
    use parcelwatch::domain::{Status, TraceSnapshot};
    use parcelwatch::providers::kdniao::KdniaoClient;
    use parcelwatch::providers::kuaidi100::{
        decode_query_response, Kuaidi100Client, Kuaidi100QueryConfig,
    };
    use parcelwatch::providers::{ProviderError, TraceProvider};

    fn client(sb: &Sandbox, key: &str) -> Kuaidi100Client {
        Kuaidi100Client::new(
            Kuaidi100QueryConfig {
                endpoint: sb.kuaidi100_query_endpoint(),
                customer: sb.kuaidi100_customer().to_owned(),
                key: Secret::new(key),
                timeout: std::time::Duration::from_secs(5),
            },
            reqwest::Client::new(),
        )
    }

    async fn post_form(sb: &Sandbox, pairs: &[(&str, &str)]) -> Value {
        reqwest::Client::new()
            .post(sb.kuaidi100_query_endpoint())
            .form(pairs)
            .send()
            .await
            .expect("request reaches the sandbox")
            .json()
            .await
            .expect("JSON answer")
    }

    /// A signed form for `param`, with the sandbox's customer and key.
    async fn post_param(sb: &Sandbox, param: &str) -> Value {
        let sign = query_sign(param, DEFAULT_KUAIDI100_KEY, DEFAULT_KUAIDI100_CUSTOMER);
        post_form(
            sb,
            &[
                ("customer", DEFAULT_KUAIDI100_CUSTOMER),
                ("sign", &sign),
                ("param", param),
            ],
        )
        .await
    }

    /// The status the tracker records for a snapshot (shipment.rs `provider_verdict_in_context`
    /// for a fresh shipment): a sign after a return leg is Returned.
    fn in_context(s: &TraceSnapshot) -> Status {
        let returning = s.events.iter().any(|e| e.status == Some(Status::Returning));
        match s.status {
            Status::Delivered if returning => Status::Returned,
            other => other,
        }
    }

    #[tokio::test]
    async fn the_client_reads_a_journey_as_the_truth() {
        let (sb, clock) = sandbox(1).await;
        let j = sb.register_kind(JourneyKind::Delivered, "YTO", "YT7412345678901", t0());
        let c = client(&sb, sb.kuaidi100_key());
        assert_eq!(c.name(), "kuaidi100");

        let out = j
            .steps
            .iter()
            .find(|s| s.state_ex == "202")
            .expect("out for delivery");
        clock.set(out.at);
        let snap = c
            .query(&query("YTO", "YT7412345678901", None))
            .await
            .expect("answered");
        assert_eq!(snap.status, Status::OutForDelivery);
        let lines = j.visible_at(out.at).traces.len();
        assert_eq!(snap.events.len(), lines);
        let newest = snap.events.iter().map(|e| e.time).max();
        assert_eq!(newest, Some(out.at));

        let end = j.ends_at().expect("journey ends");
        clock.set(end);
        let done = c
            .query(&query("YTO", "YT7412345678901", None))
            .await
            .expect("answered");
        assert_eq!(done.status, Status::Delivered);
        let s = sb.kuaidi100_stats();
        assert_eq!((s.requests, s.answered, s.too_frequent), (2, 2, 0));
    }

    #[tokio::test]
    async fn sf_needs_a_phone_and_zto_is_checked_by_the_server() {
        let (sb, clock) = sandbox(2).await;
        let j = sb.register("SF", "SF1234567890123", t0());
        sb.register("ZTO", "731234567890123", t0());
        clock.set(j.ends_at().expect("ends"));
        let c = client(&sb, sb.kuaidi100_key());

        let with_phone = c
            .query(&query("SF", "SF1234567890123", Some("13812345678")))
            .await
            .expect("SF with a phone is answered");
        assert!(!with_phone.events.is_empty());
        assert_eq!(sb.kuaidi100_stats().answered, 1);

        // SF without a phone is refused before any request.
        let e = c
            .query(&query("SF", "SF1234567890123", None))
            .await
            .expect_err("SF without a phone");
        assert!(!e.is_retryable(), "{e}");
        assert_eq!(sb.kuaidi100_stats().requests, 1);

        // ZTO without a phone reaches Kuaidi100, which answers 408: Permanent.
        match c.query(&query("ZTO", "731234567890123", None)).await {
            Err(ProviderError::Permanent { reason, .. }) => {
                assert!(reason.contains("408"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let s = sb.kuaidi100_stats();
        assert_eq!((s.requests, s.bad_phone), (2, 1));
        // The refused ZTO query did not open a window: with a phone it is answered at once.
        assert!(c
            .query(&query("ZTO", "731234567890123", Some("13900001111")))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_wrong_key_or_customer_is_permanent() {
        let (sb, _clock) = sandbox(3).await;
        sb.register("YTO", "YT7412345678901", t0());
        let e = client(&sb, "not-the-key")
            .query(&query("YTO", "YT7412345678901", None))
            .await
            .expect_err("bad key");
        assert!(!e.is_retryable() && e.to_string().contains("503"), "{e}");
        assert_eq!(sb.kuaidi100_stats().bad_sign, 1);

        let other_customer = Kuaidi100Client::new(
            Kuaidi100QueryConfig {
                endpoint: sb.kuaidi100_query_endpoint(),
                customer: "SOMEONEELSE".into(),
                key: Secret::new(sb.kuaidi100_key()),
                timeout: std::time::Duration::from_secs(5),
            },
            reqwest::Client::new(),
        );
        let e = other_customer
            .query(&query("YTO", "YT7412345678901", None))
            .await
            .expect_err("unknown customer");
        assert!(!e.is_retryable(), "{e}");
        let s = sb.kuaidi100_stats();
        assert_eq!((s.unknown_customer, s.bad_sign, s.answered), (1, 1, 0));
    }

    #[tokio::test]
    async fn a_second_query_within_30_minutes_is_refused_as_retryable() {
        let (sb, clock) = sandbox(4).await;
        let j = sb.register_kind(JourneyKind::Delivered, "YD", "431234567890123", t0());
        clock.set(j.steps[0].at);
        let c = client(&sb, sb.kuaidi100_key());
        let q = query("YD", "431234567890123", None);
        assert!(c.query(&q).await.is_ok());

        clock.advance(Duration::minutes(29));
        match c.query(&q).await {
            Err(ProviderError::Retryable {
                reason,
                retry_after,
                ..
            }) => {
                assert!(reason.contains("502"), "{reason}");
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(1800)));
            }
            other => panic!("{other:?}"),
        }
        // The refusal does not restart the window: 30 minutes after the answered query is fine.
        clock.advance(Duration::minutes(1));
        assert!(c.query(&q).await.is_ok());
        // Other waybills have their own windows.
        assert!(c
            .query(&query("YD", "439999999999999", None))
            .await
            .is_ok_and(|s| s.status == Status::Pending));
        let s = sb.kuaidi100_stats();
        assert_eq!(
            (
                s.requests,
                s.answered,
                s.too_frequent,
                s.no_result,
                s.unknown_waybill
            ),
            (4, 2, 1, 1, 1)
        );
    }

    #[tokio::test]
    async fn the_wire_checks_answer_kuaidi100_codes() {
        let (sb, clock) = sandbox(5).await;
        let j = sb.register_kind(JourneyKind::Delivered, "YTO", "YT1234567890123", t0());
        let code = |v: &Value| v["returnCode"].as_str().unwrap_or_default().to_owned();

        // Registered, no line yet: 500 no result, which the client reads as Pending.
        let before = post_param(&sb, r#"{"com":"yuantong","num":"YT1234567890123"}"#).await;
        assert_eq!(code(&before), "500", "{before}");
        assert_eq!(
            decode_query_response(&before.to_string())
                .expect("not an error")
                .status,
            Status::Pending
        );

        let missing = post_form(&sb, &[("customer", DEFAULT_KUAIDI100_CUSTOMER)]).await;
        assert_eq!(code(&missing), "400");
        assert!(
            missing["message"]
                .as_str()
                .is_some_and(|m| m.contains("sign,param")),
            "{missing}"
        );
        let garbage = post_param(&sb, "{not json").await;
        assert_eq!(code(&garbage), "400");
        let short = post_param(&sb, r#"{"com":"yuantong","num":"YT1"}"#).await;
        assert_eq!(code(&short), "400");
        let unknown_com = post_param(&sb, r#"{"com":"zhaijisong","num":"ZJS123456789"}"#).await;
        assert_eq!(code(&unknown_com), "400");
        let sf = post_param(&sb, r#"{"com":"shunfeng","num":"SF1234567890123"}"#).await;
        assert_eq!(code(&sf), "408");
        let sf_letters = post_param(
            &sb,
            r#"{"com":"shunfeng","num":"SF1234567890123","phone":"abcd"}"#,
        )
        .await;
        assert_eq!(code(&sf_letters), "408");

        // A lower-case sign is not Kuaidi100's sign.
        let param = r#"{"com":"yuantong","num":"YT1234567890123"}"#;
        let lower = query_sign(param, DEFAULT_KUAIDI100_KEY, DEFAULT_KUAIDI100_CUSTOMER)
            .to_ascii_lowercase();
        let v = post_form(
            &sb,
            &[
                ("customer", DEFAULT_KUAIDI100_CUSTOMER),
                ("sign", &lower),
                ("param", param),
            ],
        )
        .await;
        assert_eq!(
            v,
            json!({"result": false, "returnCode": "503", "message": "验证签名失败"})
        );

        // Later, in Kuaidi100's shape, newest first by default, oldest first on request.
        clock.set(j.ends_at().expect("ends"));
        let desc = post_param(&sb, r#"{"com":"yuantong","num":"yt1234567890123"}"#).await;
        assert_eq!(desc["status"], "200", "{desc}");
        assert_eq!(desc["nu"], "YT1234567890123");
        assert_eq!(desc["com"], "yuantong");
        assert_eq!(desc["ischeck"], "1");
        assert_eq!(desc["state"], "301");
        let data = desc["data"].as_array().expect("data");
        assert_eq!(data[0]["statusCode"], "301");
        for field in [
            "time",
            "ftime",
            "context",
            "location",
            "status",
            "statusCode",
        ] {
            assert!(data[0].get(field).is_some(), "{field} missing: {}", data[0]);
        }
        assert!(data
            .windows(2)
            .all(|w| w[0]["ftime"].as_str() >= w[1]["ftime"].as_str()));

        clock.advance(Duration::minutes(30));
        let asc = post_param(
            &sb,
            r#"{"com":"yuantong","num":"YT1234567890123","order":"asc"}"#,
        )
        .await;
        let asc_data = asc["data"].as_array().expect("data");
        assert_eq!(asc_data.first(), data.last());
        assert_eq!(asc_data.len(), data.len());

        let s = sb.kuaidi100_stats();
        assert_eq!(
            (
                s.requests,
                s.bad_request,
                s.unknown_carrier,
                s.bad_phone,
                s.bad_sign
            ),
            (10, 3, 1, 2, 1)
        );
        assert_eq!((s.answered, s.no_result, s.unknown_waybill), (2, 1, 0));

        let over_http: Kuaidi100Stats = reqwest::Client::new()
            .get(format!("{}/sandbox/kuaidi100/stats", sb.base_url()))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        assert_eq!(over_http, s);
    }

    /// The sandbox's two readings of one journey, at the same instant, agree: the Kuaidi100
    /// query and the Kdniao 8001 query map to the same canonical status (read in context, as
    /// the tracker does), and that status is the journey's truth. Queries of one waybill less
    /// than 30 minutes apart are skipped (Kuaidi100 would lock it).
    #[tokio::test]
    async fn kuaidi100_and_kdniao_readings_of_a_journey_agree() {
        let (sb, clock) = sandbox(11).await;
        let k100 = client(&sb, sb.kuaidi100_key());
        let kdniao = KdniaoClient::new(
            KdniaoConfig {
                endpoint: sb.kdniao_endpoint(),
                ebusiness_id: sb.ebusiness_id().to_owned(),
                app_key: Secret::new(sb.app_key()),
                request_type: "8001".into(),
                timeout: std::time::Duration::from_secs(5),
            },
            reqwest::Client::new(),
        );
        let mut checked = 0;
        let mut skipped = 0;
        let mut seen = std::collections::BTreeSet::new();
        for (i, kind) in JourneyKind::ALL.into_iter().enumerate() {
            // One waybill per journey: the 30-minute windows are per waybill.
            for carrier in ["YTO", "SF"] {
                let number = format!("{carrier}76543210987{i:02}");
                let j = sb.register_kind(kind, carrier, &number, t0());
                assert_eq!(j, plan_kind(kind, 11, carrier, &number, t0()));
                let q = query(carrier, &number, Some("13812345678"));
                let mut last_k100: Option<DateTime<Utc>> = None;
                let mut returning = false;
                for s in &j.steps {
                    let truth = truth_status_after_return(s.state_ex, returning);
                    returning |= s.state_ex == "404";
                    if last_k100.is_some_and(|t| s.at < t + query_min_interval()) {
                        skipped += 1;
                        continue;
                    }
                    clock.set(s.at);
                    last_k100 = Some(s.at);
                    let a = k100.query(&q).await.expect("kuaidi100 answers");
                    let b = kdniao.query(&q).await.expect("kdniao answers");
                    assert_eq!(
                        in_context(&a),
                        in_context(&b),
                        "{kind:?} {carrier} at {} ({}): {a:?} / {b:?}",
                        s.at,
                        s.state_ex
                    );
                    assert_eq!(in_context(&a), truth, "{kind:?} {carrier} {}", s.state_ex);
                    assert_eq!(a.events.len(), b.events.len(), "same lines");
                    seen.insert(truth.as_str());
                    checked += 1;
                }
            }
        }
        assert!(checked > 80, "{checked} checked, {skipped} skipped");
        assert!(
            skipped < checked / 4,
            "{checked} checked, {skipped} skipped"
        );
        for status in [
            "PickedUp",
            "InTransit",
            "ArrivedAtDestinationCity",
            "OutForDelivery",
            "AvailableForPickup",
            "Delivered",
            "Exception",
            "Returning",
            "Returned",
        ] {
            assert!(seen.contains(status), "{status} never compared: {seen:?}");
        }
        assert_eq!(sb.kuaidi100_stats().too_frequent, 0);
    }
}
