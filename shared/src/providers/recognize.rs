//! Carrier recognition by a provider, the fallback when a number's shape is not enough
//! (all-digit numbers, see [`crate::domain::detect`]): Kdniao 2002 and Kuaidi100 `autonumber`.
//!
//! Both answer with provider codes; they are mapped through the carrier registry and codes we do
//! not track are dropped (logged once, see [`super::unknown`]). [`resolve_carrier`] combines
//! the shape rules with a recognizer's answer; [`carrier_for`] does the whole thing, asking the
//! provider (a paid call) only when the rules are not confident.

use super::kdniao::data_sign;
use super::push::{body_prefix, permanent, retryable};
use super::unknown::note_unknown;
use super::ProviderError;
use crate::config::{parsed, required, ConfigError, Env, KdniaoConfig, Secret};
use crate::domain::carriers::{by_code, by_kuaidi100};
use crate::domain::detect::{detect, Candidate};
use crate::domain::{Carrier, TrackingNumber};
use crate::http::{get, post_form, UrlInErrors};
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// Kdniao's RequestType for carrier recognition.
pub const KDNIAO_RECOGNIZE_TYPE: &str = "2002";

/// Something that names the carrier(s) a waybill number may belong to, best first.
pub trait Recognizer: Send + Sync {
    /// Provider name for logs and errors: `kdniao`.
    fn name(&self) -> &'static str;
    /// Known carriers only, best first, no duplicates; empty when the provider has no idea.
    fn recognize(
        &self,
        number: &TrackingNumber,
    ) -> impl Future<Output = Result<Vec<Carrier>, ProviderError>> + Send;
}

/// Pick a carrier: a confident rule wins; otherwise the first recognized carrier that
/// parcelwatch knows; otherwise the best rule candidate, if any.
pub fn resolve_carrier(rule_candidates: &[Candidate], recognized: &[Carrier]) -> Option<Carrier> {
    let best_rule = rule_candidates
        .iter()
        .max_by(|a, b| a.confidence.total_cmp(&b.confidence));
    if let Some(c) = best_rule.filter(|c| c.is_confident()) {
        return Some(c.carrier.clone());
    }
    recognized
        .iter()
        .find(|c| c.is_known())
        .cloned()
        .or_else(|| best_rule.map(|c| c.carrier.clone()))
}

/// The carrier of `number`: from its shape when that is confident (no provider call), else
/// from `recognizer`, else the best shape guess. A failing recognizer is logged and ignored:
/// recognition is a convenience, the caller can still ask a person.
pub async fn carrier_for<R: Recognizer>(
    number: &TrackingNumber,
    recognizer: &R,
) -> Option<Carrier> {
    let rules = detect(number);
    if rules.first().is_some_and(Candidate::is_confident) {
        return resolve_carrier(&rules, &[]);
    }
    let recognized = match recognizer.recognize(number).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(provider = recognizer.name(), number = %number, retryable = e.is_retryable(), error = %e, "carrier recognition failed");
            Vec::new()
        }
    };
    resolve_carrier(&rules, &recognized)
}

/// Keep known carriers, in order, once each; note the unknown codes.
fn known_carriers<'a>(
    provider: &'static str,
    field: &'static str,
    codes: impl Iterator<Item = &'a str>,
    lookup: fn(&str) -> Option<&'static crate::domain::CarrierInfo>,
) -> Vec<Carrier> {
    let mut out: Vec<Carrier> = Vec::new();
    for code in codes.map(str::trim).filter(|c| !c.is_empty()) {
        match lookup(code).and_then(|info| Carrier::parse(info.code).ok()) {
            Some(c) if !out.contains(&c) => out.push(c),
            Some(_) => {}
            None => {
                note_unknown(provider, field, code);
            }
        }
    }
    out
}

/// A JSON value as text: strings as they are, numbers and bools printed.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Kdniao 2002
// ---------------------------------------------------------------------------------------------

const KDNIAO: &str = super::kdniao::PROVIDER;

/// The 2002 RequestData: `{"LogisticCode":"…"}`.
pub fn kdniao_request_data(number: &TrackingNumber) -> String {
    format!(
        "{{\"LogisticCode\":{}}}",
        Value::String(number.as_str().to_string())
    )
}

/// Read a 2002 answer `{EBusinessID, Success, LogisticCode, Code, Shippers[{ShipperCode,
/// ShipperName}]}` into our carriers.
pub fn parse_kdniao_recognition(
    body: &str,
    number: &TrackingNumber,
) -> Result<Vec<Carrier>, ProviderError> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        retryable(
            KDNIAO,
            format!("unreadable 2002 response ({e}): {}", body_prefix(body, 80)),
        )
    })?;
    let Some(obj) = v.as_object() else {
        return Err(retryable(
            KDNIAO,
            format!("2002 response is not an object: {}", body_prefix(body, 80)),
        ));
    };
    let success = match obj.get("Success") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    };
    let shippers = obj
        .get("Shippers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !success && shippers.is_empty() {
        let reason = obj.get("Reason").and_then(text).unwrap_or_default();
        return kdniao_failure(&reason);
    }
    if let Some(got) = obj.get("LogisticCode").and_then(text) {
        if !got.is_empty() && !got.eq_ignore_ascii_case(number.as_str()) {
            return Err(retryable(
                KDNIAO,
                format!("2002 answer is for waybill {got}, not {number}"),
            ));
        }
    }
    let codes: Vec<String> = shippers
        .iter()
        .filter_map(|s| s.get("ShipperCode").and_then(text))
        .collect();
    Ok(known_carriers(
        KDNIAO,
        "ShipperCode",
        codes.iter().map(String::as_str),
        by_code,
    ))
}

/// A `Success:false` 2002 answer: bad credentials are permanent, "cannot recognise" is an empty
/// answer, anything else (busy, quota, unknown) is worth another try.
fn kdniao_failure(reason: &str) -> Result<Vec<Carrier>, ProviderError> {
    let lower = reason.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if has(&["上限", "限额", "次数", "超过", "limit"]) {
        return Err(retryable(KDNIAO, format!("2002 quota: {reason}")));
    }
    if has(&["识别", "无结果", "暂无", "not recogni", "no result"]) {
        return Ok(Vec::new());
    }
    if has(&[
        "签名",
        "sign",
        "ebusinessid",
        "用户",
        "商户",
        "权限",
        "未开通",
        "appkey",
        "参数",
        "格式",
        "不支持",
    ]) {
        return Err(permanent(KDNIAO, format!("2002 rejected: {reason}")));
    }
    Err(retryable(KDNIAO, format!("2002 failed: {reason}")))
}

/// Kdniao 2002 over the query endpoint, signed like the 1002/8001 queries.
#[derive(Debug, Clone)]
pub struct KdniaoRecognizer {
    cfg: KdniaoConfig,
    http: reqwest::Client,
}

impl KdniaoRecognizer {
    /// Same settings as the query client; its `request_type` is not used (always 2002).
    pub fn new(cfg: KdniaoConfig, http: reqwest::Client) -> Self {
        KdniaoRecognizer { cfg, http }
    }

    async fn call(&self, number: &TrackingNumber) -> Result<Vec<Carrier>, ProviderError> {
        let request_data = kdniao_request_data(number);
        let sign = data_sign(&request_data, self.cfg.app_key.expose());
        // Raw values: the form encoder URL-encodes each exactly once.
        let form = [
            ("RequestData", request_data.as_str()),
            ("EBusinessID", self.cfg.ebusiness_id.as_str()),
            ("RequestType", KDNIAO_RECOGNIZE_TYPE),
            ("DataSign", sign.as_str()),
            ("DataType", "2"),
        ];
        let body = post_form(&self.http, &self.cfg.endpoint, self.cfg.timeout, &form)
            .await
            .map_err(|f| f.for_provider(KDNIAO))?;
        parse_kdniao_recognition(&body, number)
    }
}

impl Recognizer for KdniaoRecognizer {
    fn name(&self) -> &'static str {
        KDNIAO
    }

    async fn recognize(&self, number: &TrackingNumber) -> Result<Vec<Carrier>, ProviderError> {
        self.call(number).await
    }
}

// ---------------------------------------------------------------------------------------------
// Kuaidi100 autonumber
// ---------------------------------------------------------------------------------------------

const KUAIDI100: &str = super::kuaidi100::PROVIDER;

/// Kuaidi100 `autonumber/auto` settings (paid accounts only, PROTOCOLS.md §2).
#[derive(Debug, Clone)]
pub struct Kuaidi100AutoConfig {
    /// `KUAIDI100_AUTONUMBER_ENDPOINT`, default [`Self::DEFAULT_ENDPOINT`].
    pub endpoint: String,
    /// `KUAIDI100_KEY`. Travels in the query string: keep it out of errors (see `call`).
    pub key: Secret,
    /// `PROVIDER_TIMEOUT_MS`, default 5 s.
    pub timeout: Duration,
}

impl Kuaidi100AutoConfig {
    pub const DEFAULT_ENDPOINT: &'static str = "http://www.kuaidi100.com/autonumber/auto";

    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Kuaidi100AutoConfig {
            endpoint: env
                .get("KUAIDI100_AUTONUMBER_ENDPOINT")
                .unwrap_or_else(|| Self::DEFAULT_ENDPOINT.into()),
            key: Secret::new(required(env, "KUAIDI100_KEY")?),
            timeout: Duration::from_millis(parsed(env, "PROVIDER_TIMEOUT_MS", 5000u64)?),
        })
    }
}

/// Read an `autonumber` answer `[{comCode, name, lengthPre, noPre, noCount}]` (best first) into
/// our carriers. An error object `{"result":false,"returnCode":…,"message":…}` is classified.
pub fn parse_kuaidi100_auto(body: &str) -> Result<Vec<Carrier>, ProviderError> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        retryable(
            KUAIDI100,
            format!(
                "unreadable autonumber response ({e}): {}",
                body_prefix(body, 80)
            ),
        )
    })?;
    match v {
        Value::Array(items) => {
            let coms: Vec<String> = items
                .iter()
                .filter_map(|i| i.get("comCode").and_then(text))
                .collect();
            Ok(known_carriers(
                KUAIDI100,
                "comCode",
                coms.iter().map(String::as_str),
                by_kuaidi100,
            ))
        }
        Value::Object(obj) => {
            let code = obj.get("returnCode").and_then(text).unwrap_or_default();
            let message = obj.get("message").and_then(text).unwrap_or_default();
            match code.as_str() {
                // No result: nothing recognised.
                "500" => Ok(Vec::new()),
                // Bad data, bad signature, bad or expired key.
                "400" | "503" | "600" | "601" => Err(permanent(
                    KUAIDI100,
                    format!("autonumber rejected ({code}): {message}"),
                )),
                _ => Err(retryable(
                    KUAIDI100,
                    format!("autonumber failed ({code}): {message}"),
                )),
            }
        }
        _ => Err(retryable(
            KUAIDI100,
            format!(
                "autonumber answer is neither a list nor an error: {}",
                body_prefix(body, 80)
            ),
        )),
    }
}

/// Kuaidi100 `GET {endpoint}?num=…&key=…`.
#[derive(Debug, Clone)]
pub struct Kuaidi100Recognizer {
    cfg: Kuaidi100AutoConfig,
    http: reqwest::Client,
}

impl Kuaidi100Recognizer {
    pub fn new(cfg: Kuaidi100AutoConfig, http: reqwest::Client) -> Self {
        Kuaidi100Recognizer { cfg, http }
    }

    async fn call(&self, number: &TrackingNumber) -> Result<Vec<Carrier>, ProviderError> {
        let url = reqwest::Url::parse_with_params(
            &self.cfg.endpoint,
            &[("num", number.as_str()), ("key", self.cfg.key.expose())],
        )
        .map_err(|e| permanent(KUAIDI100, format!("bad autonumber endpoint: {e}")))?;
        // reqwest errors print their URL, which holds the key: strip it from every error.
        let body = get(&self.http, url, self.cfg.timeout, UrlInErrors::Hidden)
            .await
            .map_err(|f| f.for_provider(KUAIDI100))?;
        parse_kuaidi100_auto(&body)
    }
}

impl Recognizer for Kuaidi100Recognizer {
    fn name(&self) -> &'static str {
        KUAIDI100
    }

    async fn recognize(&self, number: &TrackingNumber) -> Result<Vec<Carrier>, ProviderError> {
        self.call(number).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::detect::detect;

    fn num(n: &str) -> TrackingNumber {
        TrackingNumber::parse(n).unwrap()
    }

    fn carrier(c: &str) -> Carrier {
        Carrier::parse(c).unwrap()
    }

    fn codes(v: &[Carrier]) -> Vec<&str> {
        v.iter().map(Carrier::as_str).collect()
    }

    #[test]
    fn a_confident_rule_beats_the_provider() {
        let rules = detect(&num("YT1000000000001"));
        assert_eq!(
            resolve_carrier(&rules, &[carrier("ZTO")]),
            Some(carrier("YTO"))
        );
    }

    #[test]
    fn otherwise_the_first_known_recognized_carrier_wins() {
        // 15 digits 77…: STO by shape, but not confidently.
        let rules = detect(&num("773000000000001"));
        assert_eq!(rules[0].carrier, carrier("STO"));
        assert_eq!(
            resolve_carrier(&rules, &[carrier("XYZ"), carrier("ZTO"), carrier("STO")]),
            Some(carrier("ZTO"))
        );
        // Nothing recognised: the best rule guess.
        assert_eq!(resolve_carrier(&rules, &[]), Some(carrier("STO")));
        assert_eq!(
            resolve_carrier(&rules, &[carrier("XYZ")]),
            Some(carrier("STO"))
        );
        // No rule, no recognition: nothing.
        assert_eq!(resolve_carrier(&detect(&num("ZZ12345678")), &[]), None);
        assert_eq!(
            resolve_carrier(&detect(&num("ZZ12345678")), &[carrier("YD")]),
            Some(carrier("YD"))
        );
    }

    #[test]
    fn kdniao_2002_request_and_answers() {
        assert_eq!(
            kdniao_request_data(&num("3967950525457")),
            r#"{"LogisticCode":"3967950525457"}"#
        );
        let n = num("3967950525457");
        let ok = r#"{"EBusinessID":"1257021","Success":true,"LogisticCode":"3967950525457","Code":100,
            "Shippers":[{"ShipperCode":"YD","ShipperName":"韵达快递"},{"ShipperCode":"XXWL","ShipperName":"某物流"},
                        {"ShipperCode":"zto","ShipperName":"中通快递"},{"ShipperCode":"YD","ShipperName":"韵达快递"}]}"#;
        assert_eq!(
            codes(&parse_kdniao_recognition(ok, &n).unwrap()),
            ["YD", "ZTO"]
        );
        let none = r#"{"EBusinessID":"1","Success":true,"LogisticCode":"3967950525457","Code":100,"Shippers":[]}"#;
        assert!(parse_kdniao_recognition(none, &n).unwrap().is_empty());
        let unrecognised = r#"{"EBusinessID":"1","Success":false,"Reason":"未能识别该单号"}"#;
        assert!(parse_kdniao_recognition(unrecognised, &n)
            .unwrap()
            .is_empty());
        let bad_sign = r#"{"EBusinessID":"1","Success":false,"Reason":"DataSign验证失败"}"#;
        assert!(!parse_kdniao_recognition(bad_sign, &n)
            .unwrap_err()
            .is_retryable());
        let busy = r#"{"EBusinessID":"1","Success":false,"Reason":"系统繁忙"}"#;
        assert!(parse_kdniao_recognition(busy, &n)
            .unwrap_err()
            .is_retryable());
        let quota = r#"{"Success":false,"Reason":"今日查询次数超过上限"}"#;
        assert!(parse_kdniao_recognition(quota, &n)
            .unwrap_err()
            .is_retryable());
        let other =
            r#"{"Success":true,"LogisticCode":"1111111111111","Shippers":[{"ShipperCode":"YD"}]}"#;
        let e = parse_kdniao_recognition(other, &n).unwrap_err();
        assert!(
            e.is_retryable() && e.to_string().contains("1111111111111"),
            "{e}"
        );
        assert!(parse_kdniao_recognition("<html>", &n)
            .unwrap_err()
            .is_retryable());
        assert!(parse_kdniao_recognition("[]", &n)
            .unwrap_err()
            .is_retryable());
    }

    #[test]
    fn kuaidi100_autonumber_answers() {
        let ok = r#"[{"comCode":"yunda","name":"韵达快递","lengthPre":13,"noPre":"39","noCount":100},
                     {"comCode":"zhaijisong","name":"宅急送"},{"comCode":"ZhongTong"},{"name":"no code"}]"#;
        assert_eq!(codes(&parse_kuaidi100_auto(ok).unwrap()), ["YD", "ZTO"]);
        assert!(parse_kuaidi100_auto("[]").unwrap().is_empty());
        let no_result = r#"{"result":false,"returnCode":"500","message":"查询无结果"}"#;
        assert!(parse_kuaidi100_auto(no_result).unwrap().is_empty());
        let bad_key = r#"{"result":false,"returnCode":"601","message":"key已过期"}"#;
        assert!(!parse_kuaidi100_auto(bad_key).unwrap_err().is_retryable());
        let busy = r#"{"result":false,"returnCode":"502","message":"服务器繁忙"}"#;
        assert!(parse_kuaidi100_auto(busy).unwrap_err().is_retryable());
        assert!(parse_kuaidi100_auto("oops").unwrap_err().is_retryable());
        assert!(parse_kuaidi100_auto("42").unwrap_err().is_retryable());
    }

    #[test]
    fn kuaidi100_config_reads_the_key_and_defaults_the_endpoint() {
        let env: std::collections::HashMap<String, String> =
            [("KUAIDI100_KEY".to_string(), "k".to_string())].into();
        let cfg = Kuaidi100AutoConfig::from_env(&env).unwrap();
        assert_eq!(cfg.endpoint, Kuaidi100AutoConfig::DEFAULT_ENDPOINT);
        assert_eq!(cfg.key.expose(), "k");
        assert!(Kuaidi100AutoConfig::from_env(&std::collections::HashMap::new()).is_err());
    }

    // ----- over real HTTP, against tiny axum servers on loopback -----

    mod http {
        use super::*;
        use axum::extract::{Query, State};
        use axum::http::StatusCode;
        use axum::routing::{get, post};
        use axum::{Form, Router};
        use std::collections::HashMap;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        const APP_KEY: &str = "test-appkey-0000";

        async fn serve(app: Router) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            format!("http://{addr}")
        }

        /// Checks the form like Kdniao and answers 2002 from the number's last digit.
        async fn kdniao(Form(form): Form<HashMap<String, String>>) -> String {
            let rd = form.get("RequestData").cloned().unwrap_or_default();
            let signed = form
                .get("DataSign")
                .is_some_and(|s| *s == data_sign(&rd, APP_KEY));
            if !signed || form.get("RequestType").map(String::as_str) != Some("2002") {
                return r#"{"EBusinessID":"1237100","Success":false,"Reason":"DataSign验证失败"}"#
                    .into();
            }
            let v: Value = serde_json::from_str(&rd).unwrap();
            let n = v["LogisticCode"].as_str().unwrap().to_string();
            let shippers = if n.ends_with('7') {
                r#"[{"ShipperCode":"YD","ShipperName":"韵达快递"},{"ShipperCode":"HHTT","ShipperName":"天天快递"}]"#
            } else {
                "[]"
            };
            format!(
                r#"{{"EBusinessID":"1237100","Success":true,"LogisticCode":"{n}","Code":100,"Shippers":{shippers}}}"#
            )
        }

        fn kdniao_client(base: &str, app_key: &str) -> KdniaoRecognizer {
            KdniaoRecognizer::new(
                KdniaoConfig {
                    endpoint: format!("{base}/Ebusiness/EbusinessOrderHandle.aspx"),
                    ebusiness_id: "1237100".into(),
                    app_key: Secret::new(app_key),
                    request_type: "8001".into(),
                    timeout: Duration::from_secs(5),
                },
                reqwest::Client::new(),
            )
        }

        #[tokio::test]
        async fn kdniao_2002_round_trip() {
            let base =
                serve(Router::new().route("/Ebusiness/EbusinessOrderHandle.aspx", post(kdniao)))
                    .await;
            let c = kdniao_client(&base, APP_KEY);
            assert_eq!(c.name(), "kdniao");
            let got = c.recognize(&num("3967950525457")).await.unwrap();
            assert_eq!(codes(&got), ["YD"]);
            assert!(c.recognize(&num("3967950525450")).await.unwrap().is_empty());
            let wrong_key = kdniao_client(&base, "nope");
            assert!(!wrong_key
                .recognize(&num("3967950525457"))
                .await
                .unwrap_err()
                .is_retryable());
            // The combined path: numeric shape not confident, the provider decides.
            assert_eq!(
                carrier_for(&num("1045338392497"), &c).await,
                Some(carrier("YD"))
            );
        }

        #[derive(Clone, Default)]
        struct Calls(Arc<AtomicUsize>);

        async fn auto(
            State(calls): State<Calls>,
            Query(q): Query<HashMap<String, String>>,
        ) -> (StatusCode, String) {
            calls.0.fetch_add(1, Ordering::SeqCst);
            if q.get("key").map(String::as_str) != Some("secret-key") {
                return (
                    StatusCode::OK,
                    r#"{"result":false,"returnCode":"600","message":"key无效"}"#.into(),
                );
            }
            match q.get("num").map(String::as_str) {
                Some("773000000000001") => (
                    StatusCode::OK,
                    r#"[{"comCode":"zhongtong","name":"中通快递","lengthPre":15,"noPre":"773","noCount":9}]"#
                        .into(),
                ),
                Some("500500500500") => (StatusCode::BAD_GATEWAY, "bad gateway".into()),
                _ => (StatusCode::OK, "[]".into()),
            }
        }

        fn auto_client(endpoint: String, key: &str) -> Kuaidi100Recognizer {
            Kuaidi100Recognizer::new(
                Kuaidi100AutoConfig {
                    endpoint,
                    key: Secret::new(key),
                    timeout: Duration::from_secs(5),
                },
                reqwest::Client::new(),
            )
        }

        #[tokio::test]
        async fn kuaidi100_autonumber_round_trip() {
            let calls = Calls::default();
            let base = serve(
                Router::new()
                    .route("/autonumber/auto", get(auto))
                    .with_state(calls.clone()),
            )
            .await;
            let endpoint = format!("{base}/autonumber/auto");
            let c = auto_client(endpoint.clone(), "secret-key");
            assert_eq!(c.name(), "kuaidi100");
            assert_eq!(
                codes(&c.recognize(&num("773000000000001")).await.unwrap()),
                ["ZTO"]
            );
            assert!(c.recognize(&num("4300000000001")).await.unwrap().is_empty());
            assert!(c
                .recognize(&num("500500500500"))
                .await
                .unwrap_err()
                .is_retryable());
            let bad = auto_client(endpoint, "wrong")
                .recognize(&num("773000000000001"))
                .await
                .unwrap_err();
            assert!(!bad.is_retryable(), "{bad}");
            assert_eq!(calls.0.load(Ordering::SeqCst), 4);

            // The provider overrides the (unconfident) STO shape guess...
            assert_eq!(
                carrier_for(&num("773000000000001"), &c).await,
                Some(carrier("ZTO"))
            );
            assert_eq!(calls.0.load(Ordering::SeqCst), 5);
            // ...and is not even asked when the shape is confident.
            assert_eq!(
                carrier_for(&num("YT1000000000001"), &c).await,
                Some(carrier("YTO"))
            );
            assert_eq!(calls.0.load(Ordering::SeqCst), 5);
        }

        #[tokio::test]
        async fn transport_errors_never_show_the_key() {
            let dead = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let a = l.local_addr().unwrap();
                drop(l);
                format!("http://{a}/autonumber/auto")
            };
            let e = auto_client(dead, "secret-key")
                .recognize(&num("773000000000001"))
                .await
                .unwrap_err();
            assert!(e.is_retryable(), "{e}");
            assert!(!e.to_string().contains("secret-key"), "{e}");
            // A failing recognizer falls back to the best shape guess.
            let dead2 = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let a = l.local_addr().unwrap();
                drop(l);
                format!("http://{a}/autonumber/auto")
            };
            assert_eq!(
                carrier_for(&num("773000000000001"), &auto_client(dead2, "k")).await,
                Some(carrier("STO"))
            );
        }
    }
}
