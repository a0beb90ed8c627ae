//! The Kdniao query endpoint (`POST /Ebusiness/EbusinessOrderHandle.aspx`), answering instant
//! queries (1002) and monitor queries (8001) from the simulated journeys, with real signature
//! checks.
//!
//! Carrier recognition (2002) answers on the same endpoint: the carriers of the registered
//! journeys with that number first, then the registry's shape-based candidates, best first.
//!
//! Answers follow the real API: HTTP 200 with `Success:false` and a Chinese `Reason` for every
//! rejected request (bad DataSign, unknown EBusinessID, unsupported RequestType, malformed
//! RequestData, missing fields, SF without `CustomerName`). Each reason names what is wrong in
//! Kdniao's words (签名/参数/格式/不支持/不存在…), which is what a client can classify on. A well-formed query for a waybill with no trace yet, known to
//! the sandbox or not, gets `Success:true`, `State:"0"`, no Traces and `Reason:"暂无轨迹信息"`:
//! the request itself was fine, so a client must not treat it as a failure. Unknown waybills
//! are counted in [`super::SandboxStats::unknown_waybill`].

use super::journey::{normalize_number, Step, Visible};
use super::Shared;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::{Form, Json};
use chrono::{DateTime, Duration, Utc};
use parcelwatch::domain::carriers::by_code;
use parcelwatch::domain::detect::detect;
use parcelwatch::domain::TrackingNumber;
use parcelwatch::providers::{ct_eq, kdniao::data_sign};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Form fields of a Kdniao request. All optional so that a missing one gets Kdniao's own
/// `Success:false` answer instead of a framework error page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct KdniaoForm {
    #[serde(rename = "RequestData")]
    pub(crate) request_data: Option<String>,
    #[serde(rename = "EBusinessID")]
    pub(crate) ebusiness_id: Option<String>,
    #[serde(rename = "RequestType")]
    pub(crate) request_type: Option<String>,
    #[serde(rename = "DataSign")]
    pub(crate) data_sign: Option<String>,
    #[serde(rename = "DataType")]
    pub(crate) data_type: Option<String>,
}

/// RequestData of 1002 / 8001.
#[derive(Debug, Deserialize)]
struct QueryRequest {
    #[serde(rename = "OrderCode", default)]
    order_code: Option<String>,
    #[serde(rename = "ShipperCode", default)]
    shipper_code: Option<String>,
    #[serde(rename = "LogisticCode", default)]
    logistic_code: Option<String>,
    #[serde(rename = "CustomerName", default)]
    customer_name: Option<String>,
}

/// RequestData of 2002.
#[derive(Debug, Deserialize)]
struct RecognizeRequest {
    #[serde(rename = "LogisticCode", default)]
    logistic_code: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryType {
    Instant1002,
    Monitor8001,
    /// Carrier recognition. Counted with `requests_other` (the stats have no 2002 counter).
    Recognize2002,
}

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    form: Result<Form<KdniaoForm>, FormRejection>,
) -> Json<Value> {
    let form = match form {
        Ok(Form(f)) => f,
        Err(rejection) => {
            shared.counters.bad_request.fetch_add(1, Ordering::Relaxed);
            return Json(failure(
                &shared.cfg.ebusiness_id,
                &format!(
                    "请求格式错误，须为application/x-www-form-urlencoded: {}",
                    rejection.body_text()
                ),
            ));
        }
    };
    Json(answer(&shared, &form))
}

pub(crate) fn failure(ebusiness_id: &str, reason: &str) -> Value {
    json!({
        "EBusinessID": ebusiness_id,
        "UpdateTime": china_time(Utc::now()),
        "Success": false,
        "Reason": reason,
    })
}

/// The response for one request, counting it in the sandbox stats.
pub(crate) fn answer(shared: &Shared, form: &KdniaoForm) -> Value {
    let c = &shared.counters;
    let query_type = match form.request_type.as_deref().map(str::trim) {
        Some("1002") => {
            c.requests_1002.fetch_add(1, Ordering::Relaxed);
            Some(QueryType::Instant1002)
        }
        Some("8001") => {
            c.requests_8001.fetch_add(1, Ordering::Relaxed);
            Some(QueryType::Monitor8001)
        }
        Some("2002") => {
            c.requests_other.fetch_add(1, Ordering::Relaxed);
            Some(QueryType::Recognize2002)
        }
        _ => {
            c.requests_other.fetch_add(1, Ordering::Relaxed);
            None
        }
    };
    let our_id = shared.cfg.ebusiness_id.as_str();
    // The merchant's daily quota is spent (see `Sandbox::set_kdniao_quota_exhausted`): queries
    // get Kdniao's quota answer until it is lifted.
    if shared.kdniao_quota_exhausted.load(Ordering::Relaxed)
        && matches!(
            query_type,
            Some(QueryType::Instant1002 | QueryType::Monitor8001)
        )
    {
        c.quota_refused.fetch_add(1, Ordering::Relaxed);
        return failure(our_id, "用户今日查询次数已超过上限，请明日再查");
    }

    let (Some(request_data), Some(ebusiness_id), Some(request_type), Some(sign)) = (
        form.request_data.as_deref(),
        form.ebusiness_id.as_deref(),
        form.request_type.as_deref(),
        form.data_sign.as_deref(),
    ) else {
        c.bad_request.fetch_add(1, Ordering::Relaxed);
        let missing: Vec<&str> = [
            ("RequestData", form.request_data.is_none()),
            ("EBusinessID", form.ebusiness_id.is_none()),
            ("RequestType", form.request_type.is_none()),
            ("DataSign", form.data_sign.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| *n)
        .collect();
        return failure(our_id, &format!("缺少必填参数: {}", missing.join(",")));
    };

    if !ct_eq(ebusiness_id.trim(), our_id) {
        c.unknown_ebusiness_id.fetch_add(1, Ordering::Relaxed);
        return failure(ebusiness_id, "EBusinessID不存在或未开通接口权限");
    }
    let expected = data_sign(request_data, &shared.cfg.app_key);
    if !ct_eq(sign, &expected) {
        c.bad_sign.fetch_add(1, Ordering::Relaxed);
        return failure(our_id, "DataSign验证失败");
    }
    let Some(query_type) = query_type else {
        c.bad_request.fetch_add(1, Ordering::Relaxed);
        return failure(
            our_id,
            &format!("RequestType不支持: {request_type}，本接口仅支持1002、8001、2002"),
        );
    };
    if form.data_type.as_deref().map(str::trim) != Some("2") {
        c.bad_request.fetch_add(1, Ordering::Relaxed);
        return failure(our_id, "DataType参数错误，必须为2(JSON)");
    }
    if query_type == QueryType::Recognize2002 {
        return recognize(shared, our_id, request_data);
    }

    let req: QueryRequest = match serde_json::from_str(request_data) {
        Ok(r) => r,
        Err(e) => {
            c.bad_request.fetch_add(1, Ordering::Relaxed);
            return failure(our_id, &format!("RequestData格式错误: {e}"));
        }
    };
    let shipper = req
        .shipper_code
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let number = normalize_number(req.logistic_code.as_deref().unwrap_or_default());
    if shipper.is_empty() || number.is_empty() {
        c.bad_request.fetch_add(1, Ordering::Relaxed);
        return failure(our_id, "缺少必填参数: ShipperCode和LogisticCode不能为空");
    }
    // SF only answers with the last four digits of the sender's or receiver's phone.
    if shipper == "SF" {
        let ok = req
            .customer_name
            .as_deref()
            .map(str::trim)
            .is_some_and(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            c.bad_request.fetch_add(1, Ordering::Relaxed);
            return failure(
                our_id,
                "参数错误：顺丰单号查询须提供CustomerName（寄件人或收件人手机号后四位）",
            );
        }
    }

    let now = shared.clock.now();
    let waybills = shared.waybills.read().unwrap_or_else(|p| p.into_inner());
    let journey = waybills.get(&(shipper.clone(), number.clone()));
    if journey.is_none() {
        c.unknown_waybill.fetch_add(1, Ordering::Relaxed);
    }
    let visible = journey.map(|j| j.visible_at(now));
    success(
        our_id,
        &req,
        &shipper,
        &number,
        query_type,
        visible.as_ref(),
    )
}

/// The 2002 answer: `{EBusinessID, Success, LogisticCode, Code, Shippers[{ShipperCode,
/// ShipperName}]}`. A number nobody recognises is still a fine request: `Success:true`, no
/// Shippers.
fn recognize(shared: &Shared, our_id: &str, request_data: &str) -> Value {
    let c = &shared.counters;
    let req: RecognizeRequest = match serde_json::from_str(request_data) {
        Ok(r) => r,
        Err(e) => {
            c.bad_request.fetch_add(1, Ordering::Relaxed);
            return failure(our_id, &format!("RequestData格式错误: {e}"));
        }
    };
    let number = normalize_number(req.logistic_code.as_deref().unwrap_or_default());
    if number.is_empty() {
        c.bad_request.fetch_add(1, Ordering::Relaxed);
        return failure(our_id, "缺少必填参数: LogisticCode不能为空");
    }

    // Registered journeys first (sorted: the map's order is not stable), then the shapes.
    let mut codes: Vec<String> = {
        let waybills = shared.waybills.read().unwrap_or_else(|p| p.into_inner());
        waybills
            .keys()
            .filter(|(_, n)| *n == number)
            .map(|(carrier, _)| carrier.clone())
            .collect()
    };
    codes.sort();
    if let Ok(parsed) = TrackingNumber::parse(&number) {
        for cand in detect(&parsed) {
            codes.push(cand.carrier.as_str().to_string());
        }
    }
    let mut seen = std::collections::HashSet::new();
    codes.retain(|code| seen.insert(code.clone()));
    let shippers: Vec<Value> = codes
        .iter()
        .map(|code| {
            let name = by_code(code).map_or(code.as_str(), |info| info.name_zh);
            json!({"ShipperCode": code, "ShipperName": name})
        })
        .collect();
    json!({
        "EBusinessID": our_id,
        "Success": true,
        "LogisticCode": number,
        "Code": 100,
        "Shippers": shippers,
    })
}

fn success(
    ebusiness_id: &str,
    req: &QueryRequest,
    shipper: &str,
    number: &str,
    query_type: QueryType,
    visible: Option<&Visible<'_>>,
) -> Value {
    let (state, state_ex, traces): (&str, &str, &[&Step]) = match visible {
        Some(v) => (v.state, v.state_ex, &v.traces),
        None => ("0", "0", &[]),
    };
    let monitor = query_type == QueryType::Monitor8001;
    let lines: Vec<Value> = traces.iter().map(|s| trace_line(s, monitor)).collect();

    let mut out = Map::new();
    out.insert("EBusinessID".into(), json!(ebusiness_id));
    out.insert(
        "OrderCode".into(),
        json!(req.order_code.as_deref().unwrap_or_default()),
    );
    out.insert("ShipperCode".into(), json!(shipper));
    out.insert("LogisticCode".into(), json!(number));
    out.insert("Success".into(), json!(true));
    out.insert(
        "Reason".into(),
        json!(if lines.is_empty() {
            "暂无轨迹信息"
        } else {
            ""
        }),
    );
    out.insert("State".into(), json!(state));
    if monitor {
        out.insert("StateEx".into(), json!(state_ex));
        // The parcel's current city: that of the latest trace line.
        let location = visible
            .and_then(|v| v.traces.last())
            .map_or("", |s| s.location.as_str());
        out.insert("Location".into(), json!(location));
    }
    out.insert("Traces".into(), Value::Array(lines));
    Value::Object(out)
}

fn trace_line(s: &Step, monitor: bool) -> Value {
    if monitor {
        json!({
            "AcceptTime": china_time(s.at),
            "AcceptStation": s.station,
            "Location": s.location,
            "Action": s.action,
            "Remark": "",
        })
    } else {
        json!({
            "AcceptTime": china_time(s.at),
            "AcceptStation": s.station,
            "Remark": "",
        })
    }
}

/// Kdniao's AcceptTime: `yyyy-MM-dd HH:mm:ss` in China time (UTC+8, no daylight saving).
pub fn china_time(t: DateTime<Utc>) -> String {
    (t.naive_utc() + Duration::hours(8))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use crate::sandbox::journey::waybill_number;
    use crate::sandbox::{Sandbox, SandboxConfig, DEFAULT_APP_KEY, DEFAULT_EBUSINESS_ID};
    use chrono::TimeZone;
    use parcelwatch::config::{KdniaoConfig, Secret};
    use parcelwatch::domain::detect::detect_carrier;
    use parcelwatch::providers::recognize::{carrier_for, KdniaoRecognizer, Recognizer};
    use std::collections::BTreeMap;

    /// The carriers the sandbox draws numbers for.
    const SANDBOX_CARRIERS: [&str; 10] = [
        "SF", "YTO", "ZTO", "STO", "YD", "JD", "EMS", "JTSD", "DBL", "YZPY",
    ];

    /// The sandbox's own number formats (`waybill_number`) against the registry rules: never a
    /// confident wrong carrier, and the letter-prefixed formats always confidently right.
    #[test]
    fn sandbox_numbers_are_never_confidently_misdetected() {
        let mut wrong = Vec::new();
        let mut table: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new();
        for carrier in SANDBOX_CARRIERS {
            for seed in 0..4u64 {
                for i in 0..250u64 {
                    let raw = waybill_number(carrier, i, seed);
                    let number = TrackingNumber::parse(&raw).expect("sandbox numbers parse");
                    let ranked = detect(&number);
                    let e = table.entry(carrier).or_default();
                    e.0 += 1;
                    if ranked
                        .first()
                        .is_some_and(|c| c.carrier.as_str() == carrier)
                    {
                        e.1 += 1;
                    }
                    match detect_carrier(&number).first() {
                        None => e.2 += 1,
                        Some(c) if c.as_str() != carrier => {
                            wrong.push(format!("{carrier} {raw} → {c}"))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        println!("sandbox  numbers  top-1   unsure");
        for (c, (n, top1, unsure)) in &table {
            println!(
                "{c:<8} {n:>7}  {:>5.1}%  {:>5.1}%",
                100.0 * f64::from(*top1) / f64::from(*n),
                100.0 * f64::from(*unsure) / f64::from(*n)
            );
        }
        assert!(wrong.is_empty(), "confident wrong answers: {wrong:?}");
        for c in ["SF", "YTO", "JD", "JTSD", "DBL"] {
            let (n, top1, unsure) = table[c];
            assert_eq!((top1, unsure), (n, 0), "{c}");
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0)
            .single()
            .expect("valid test time")
    }

    async fn sandbox() -> Sandbox {
        Sandbox::start(SandboxConfig::default(), Arc::new(SimClock::new(t0())))
            .await
            .expect("sandbox starts")
    }

    /// A signed 2002 request for `number` with `app_key`.
    async fn recognize_2002(sb: &Sandbox, number: &str, app_key: &str) -> Value {
        let rd = format!(r#"{{"LogisticCode":"{number}"}}"#);
        let sign = data_sign(&rd, app_key);
        let form = [
            ("RequestData", rd.as_str()),
            ("EBusinessID", DEFAULT_EBUSINESS_ID),
            ("RequestType", "2002"),
            ("DataSign", sign.as_str()),
            ("DataType", "2"),
        ];
        reqwest::Client::new()
            .post(sb.kdniao_endpoint())
            .form(&form)
            .send()
            .await
            .expect("request reaches the sandbox")
            .json()
            .await
            .expect("JSON body")
    }

    fn shipper_codes(v: &Value) -> Vec<String> {
        v["Shippers"]
            .as_array()
            .expect("Shippers array")
            .iter()
            .map(|s| s["ShipperCode"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[tokio::test]
    async fn recognition_2002_puts_registered_journeys_first_then_the_shapes() {
        let sb = sandbox().await;
        // A ZTO parcel whose number is STO-shaped (15 digits 77…).
        sb.register("ZTO", "773000000000001", t0());
        let v = recognize_2002(&sb, "773000000000001", DEFAULT_APP_KEY).await;
        assert_eq!(v["Success"], true, "{v}");
        assert_eq!(v["Code"], 100);
        assert_eq!(v["LogisticCode"], "773000000000001");
        assert_eq!(shipper_codes(&v), ["ZTO", "STO"]);
        assert_eq!(v["Shippers"][0]["ShipperName"], "中通快递");

        // Unregistered: the shape alone.
        let v = recognize_2002(&sb, "yt1000000000001", DEFAULT_APP_KEY).await;
        assert_eq!(shipper_codes(&v), ["YTO"]);
        assert_eq!(v["LogisticCode"], "YT1000000000001");
        let v = recognize_2002(&sb, "ZZ12345678", DEFAULT_APP_KEY).await;
        assert_eq!(
            (v["Success"].as_bool(), shipper_codes(&v).len()),
            (Some(true), 0)
        );

        // Signed like every other request.
        let v = recognize_2002(&sb, "773000000000001", "wrong-key").await;
        assert_eq!(v["Success"], false);
        let s = sb.stats();
        assert_eq!((s.requests_other, s.bad_sign), (4, 1));
    }

    #[tokio::test]
    async fn the_kdniao_recognizer_works_against_the_sandbox() {
        let sb = sandbox().await;
        sb.register("ZTO", "773000000000001", t0());
        let r = KdniaoRecognizer::new(
            KdniaoConfig {
                endpoint: sb.kdniao_endpoint(),
                ebusiness_id: sb.ebusiness_id().to_string(),
                app_key: Secret::new(sb.app_key()),
                request_type: "8001".into(),
                timeout: std::time::Duration::from_secs(5),
            },
            reqwest::Client::new(),
        );
        let number = TrackingNumber::parse("773000000000001").expect("number");
        let got: Vec<String> = r
            .recognize(&number)
            .await
            .expect("recognized")
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(got, ["ZTO", "STO"]);
        // The shape says STO (unsure); the provider knows the registered ZTO parcel.
        assert_eq!(
            carrier_for(&number, &r).await.map(String::from).as_deref(),
            Some("ZTO")
        );
        assert_eq!(sb.stats().requests_other, 2);
    }

    #[test]
    fn china_time_is_utc_plus_8() {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 24, 17, 5, 9)
            .single()
            .expect("valid");
        assert_eq!(china_time(t), "2026-11-25 01:05:09");
    }
}
