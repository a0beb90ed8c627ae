//! The Kdniao query endpoint (`POST /Ebusiness/EbusinessOrderHandle.aspx`), answering instant
//! queries (1002) and monitor queries (8001) from the simulated journeys, with real signature
//! checks.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryType {
    Instant1002,
    Monitor8001,
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
        _ => {
            c.requests_other.fetch_add(1, Ordering::Relaxed);
            None
        }
    };
    let our_id = shared.cfg.ebusiness_id.as_str();

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
            &format!("RequestType不支持: {request_type}，本接口仅支持1002、8001"),
        );
    };
    if form.data_type.as_deref().map(str::trim) != Some("2") {
        c.bad_request.fetch_add(1, Ordering::Relaxed);
        return failure(our_id, "DataType参数错误，必须为2(JSON)");
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
    use chrono::TimeZone;

    #[test]
    fn china_time_is_utc_plus_8() {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 24, 17, 5, 9)
            .single()
            .expect("valid");
        assert_eq!(china_time(t), "2026-11-25 01:05:09");
    }
}
