//! The order platforms' side of the sandbox: the fw199 enhanced Taobao order list and TOP
//! `taobao.trades.sold.increment.get`, with their real signature checks.
//!
//! Routes:
//! - `POST /gateway/taobao/order/ext/list` — fw199 (form, MD5 sign over every field, `code:0`
//!   answers with `data:{total, items:[trade…]}` as in the vendor's sample; window on the
//!   modified time with `date_type=1`, else on the created time; `order_asc=ASC` ascending, else
//!   descending).
//! - `POST /router/rest` — TOP, method `taobao.trades.sold.increment.get` (md5 and hmac signs;
//!   `error_response` in TOP's shape: 21/22 method, 29 app key, 31 timestamp, 25 signature, 27
//!   session, 40/41 arguments, 7 throttling). Newest first; `total_results` unless
//!   `use_has_next=true`, then `has_next` alone. The sandbox's one session is every TOP shop's.
//! - `POST /sandbox/orders` — `{shop, platform, n, created_at}`: [`Sandbox::generate_orders`].
//!
//! Timestamps must be within ten minutes of the sandbox clock — or of the wall clock, since
//! clients stamp requests with the real time while the sandbox may run simulated time.
//! Orders are kept per platform: a shop generated on fw199 is not visible through TOP.

use super::{Sandbox, Shared};
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Form, Json, Router};
use chrono::{DateTime, Duration, Utc};
use parcelwatch::domain::order::{
    carrier_from_company_name, Order, Platform, SubOrder, TradeStatus, REFUND_SUCCESS,
};
use parcelwatch::orders::fw199::fw199_sign;
use parcelwatch::orders::top::{top_sign, METHOD as TOP_METHOD, RESPONSE_KEY as TOP_RESPONSE_KEY};
use parcelwatch::orders::{parse_china_time, trade_to_json, SignMethod};
use parcelwatch::providers::ct_eq;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

pub const FW199_PATH: &str = "/gateway/taobao/order/ext/list";
pub const TOP_PATH: &str = "/router/rest";
pub const DEFAULT_FW199_APPID: &str = "sandbox-fw199-appid";
pub const DEFAULT_FW199_SECRET: &str = "sandbox-fw199-secret";
pub const DEFAULT_TOP_APP_KEY: &str = "23000001";
pub const DEFAULT_TOP_SECRET: &str = "sandbox-top-secret";
pub const DEFAULT_TOP_SESSION: &str = "sandbox-top-session";
/// The sandbox fw199's "too many calls" code (the vendor documents none).
pub const FW199_THROTTLE_CODE: i64 = 429;
/// Allowed clock skew of a request's timestamp.
const MAX_SKEW: Duration = Duration::minutes(10);

/// Carriers generated orders ship with, and the company name sellers pick for each.
const COMPANIES: [&str; 10] = [
    "圆通速递",
    "中通快递",
    "申通快递",
    "韵达快递",
    "顺丰速运",
    "京东快递",
    "EMS",
    "极兔速递",
    "邮政快递包裹",
    "德邦快递",
];

type OrderKey = (Platform, String, String);

#[derive(Debug, Default)]
struct Book {
    orders: BTreeMap<OrderKey, Order>,
    /// Per platform: (requests still refused, seconds the ban is said to last).
    throttle: HashMap<Platform, (u32, u64)>,
    /// Orders still to be answered with blank waybill fields and phone.
    blank_next: u32,
    next_order: u64,
    next_waybill: u64,
    requests: HashMap<Platform, u64>,
    rejected: HashMap<Platform, u64>,
}

/// Orders the sandbox's platforms hold.
#[derive(Debug, Default)]
pub(crate) struct OrderBook {
    book: Mutex<Book>,
}

impl OrderBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The order platforms' routes, merged into the sandbox router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(FW199_PATH, post(fw199_handle))
        .route(TOP_PATH, post(top_handle))
        .route("/sandbox/orders", post(generate_route))
}

fn key(o: &Order) -> OrderKey {
    (o.platform, o.shop.clone(), o.tid.clone())
}

fn skew_ok(shared: &Shared, t: DateTime<Utc>) -> bool {
    let near = |now: DateTime<Utc>| (t - now).abs() <= MAX_SKEW;
    near(shared.clock.now()) || near(Utc::now())
}

/// Take one throttled request, if the platform is throttling: the ban's seconds.
fn throttled(book: &mut Book, platform: Platform) -> Option<u64> {
    match book.throttle.get_mut(&platform) {
        Some((n, secs)) if *n > 0 => {
            *n -= 1;
            Some(*secs)
        }
        _ => None,
    }
}

/// Orders of a platform (one shop, or all) in a window, sorted, rendered (blanking as asked).
fn window(
    book: &mut Book,
    platform: Platform,
    shop: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by_modified: bool,
    ascending: bool,
) -> Vec<Order> {
    let mut list: Vec<Order> = book
        .orders
        .values()
        .filter(|o| o.platform == platform && shop.is_none_or(|s| o.shop == s))
        .filter(|o| {
            let t = if by_modified { o.modified } else { o.created };
            t.is_some_and(|t| t >= from && t <= to)
        })
        .cloned()
        .collect();
    let at = |o: &Order| if by_modified { o.modified } else { o.created };
    list.sort_by(|a, b| at(a).cmp(&at(b)).then_with(|| a.tid.cmp(&b.tid)));
    if !ascending {
        list.reverse();
    }
    list
}

fn page_of(book: &mut Book, list: Vec<Order>, page_no: u64, page_size: u64) -> Vec<Value> {
    let start = (page_no.saturating_sub(1)).saturating_mul(page_size) as usize;
    list.into_iter()
        .skip(start)
        .take(page_size as usize)
        .map(|mut o| {
            if book.blank_next > 0 {
                book.blank_next -= 1;
                o.receiver_mobile = None;
                for s in &mut o.orders {
                    s.invoice_no = None;
                    s.logistics_company = None;
                }
            }
            trade_to_json(&o)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// fw199
// ---------------------------------------------------------------------------------------------

fn fw199_error(code: i64, message: &str) -> Json<Value> {
    Json(json!({ "code": code, "message": message, "data": null }))
}

async fn fw199_handle(
    State(shared): State<Arc<Shared>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Json<Value> {
    let p = match form {
        Ok(Form(p)) => p,
        Err(r) => return fw199_error(1004, &format!("参数错误: {}", r.body_text())),
    };
    let mut book = shared.orders.lock();
    *book.requests.entry(Platform::Fw199).or_default() += 1;
    let answer = fw199_answer(&shared, &mut book, &p);
    if answer.0["code"] != 0 {
        *book.rejected.entry(Platform::Fw199).or_default() += 1;
    }
    answer
}

fn fw199_answer(shared: &Shared, book: &mut Book, p: &HashMap<String, String>) -> Json<Value> {
    let get = |k: &str| p.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if get("appid") != Some(DEFAULT_FW199_APPID) {
        return fw199_error(1002, "appid不存在");
    }
    let Some(sign) = get("sign") else {
        return fw199_error(1001, "缺少sign参数");
    };
    let expected = fw199_sign(
        p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        DEFAULT_FW199_SECRET,
    );
    if !ct_eq(&sign.to_ascii_lowercase(), &expected) {
        return fw199_error(1001, "sign签名错误");
    }
    let ts = get("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0));
    match ts {
        Some(t) if skew_ok(shared, t) => {}
        _ => return fw199_error(1003, "timestamp参数错误或已过期"),
    }
    let Some(shop) = get("tb_seller_nick") else {
        return fw199_error(1004, "参数错误: tb_seller_nick不能为空");
    };
    let (Some(from), Some(to)) = (
        get("start_created").and_then(parse_china_time),
        get("end_created").and_then(parse_china_time),
    ) else {
        return fw199_error(
            1004,
            "参数错误: start_created/end_created须为yyyy-MM-dd HH:mm:ss",
        );
    };
    let page_no = get("page_no").map_or(Some(1), |v| v.parse::<u64>().ok().filter(|n| *n >= 1));
    let page_size = get("page_size").map_or(Some(100), |v| {
        v.parse::<u64>().ok().filter(|n| (1..=500).contains(n))
    });
    let (Some(page_no), Some(page_size)) = (page_no, page_size) else {
        return fw199_error(1004, "参数错误: page_no/page_size (page_size最大500)");
    };
    if let Some(secs) = throttled(book, Platform::Fw199) {
        return fw199_error(
            FW199_THROTTLE_CODE,
            &format!("调用过于频繁,请{secs}秒后重试"),
        );
    }
    let by_modified = get("date_type") == Some("1");
    let ascending = get("order_asc").is_some_and(|v| v.eq_ignore_ascii_case("ASC"));
    let list = window(
        book,
        Platform::Fw199,
        Some(shop),
        from,
        to,
        by_modified,
        ascending,
    );
    let total = list.len();
    let items = page_of(book, list, page_no, page_size);
    Json(json!({
        "code": 0,
        "message": "ok",
        "data": { "total": total, "items": items },
    }))
}

// ---------------------------------------------------------------------------------------------
// TOP
// ---------------------------------------------------------------------------------------------

fn top_error(code: i64, msg: &str, sub: Option<(&str, &str)>) -> Json<Value> {
    let mut err = json!({ "code": code, "msg": msg, "request_id": "sandbox" });
    if let Some((sub_code, sub_msg)) = sub {
        err["sub_code"] = json!(sub_code);
        err["sub_msg"] = json!(sub_msg);
    }
    Json(json!({ "error_response": err }))
}

async fn top_handle(
    State(shared): State<Arc<Shared>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Json<Value> {
    let p = match form {
        Ok(Form(p)) => p,
        Err(r) => {
            return top_error(
                41,
                "Invalid arguments",
                Some(("isv.invalid-parameter", &r.body_text())),
            )
        }
    };
    let mut book = shared.orders.lock();
    *book.requests.entry(Platform::Top).or_default() += 1;
    let answer = top_answer(&shared, &mut book, &p);
    if answer.0.get("error_response").is_some() {
        *book.rejected.entry(Platform::Top).or_default() += 1;
    }
    answer
}

fn top_answer(shared: &Shared, book: &mut Book, p: &HashMap<String, String>) -> Json<Value> {
    let get = |k: &str| p.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    match get("method") {
        None => return top_error(21, "Missing method", None),
        Some(TOP_METHOD) => {}
        Some(_) => return top_error(22, "Invalid method", None),
    }
    match get("app_key") {
        None => return top_error(28, "Missing app key", None),
        Some(DEFAULT_TOP_APP_KEY) => {}
        Some(_) => return top_error(29, "Invalid app Key", None),
    }
    match get("timestamp").map(parse_china_time) {
        None => return top_error(30, "Missing timestamp", None),
        Some(Some(t)) if skew_ok(shared, t) => {}
        Some(_) => return top_error(31, "Invalid timestamp", None),
    }
    let method = match get("sign_method").map(SignMethod::parse) {
        None => SignMethod::Md5,
        Some(Some(m)) => m,
        Some(None) => {
            return top_error(
                25,
                "Invalid signature",
                Some(("isv.invalid-sign-method", "sign_method")),
            )
        }
    };
    let Some(sign) = get("sign") else {
        return top_error(24, "Missing signature", None);
    };
    let expected = top_sign(
        p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        DEFAULT_TOP_SECRET,
        method,
    );
    if !ct_eq(&sign.to_ascii_uppercase(), &expected) {
        return top_error(25, "Invalid signature", None);
    }
    match get("session") {
        None => return top_error(26, "Missing session", None),
        Some(DEFAULT_TOP_SESSION) => {}
        Some(_) => {
            return top_error(
                27,
                "Invalid session",
                Some(("invalid-sessionkey", "session key is invalid or expired")),
            )
        }
    }
    if let Some(secs) = throttled(book, Platform::Top) {
        return top_error(
            7,
            "App Call Limited",
            Some((
                "accesscontrol.limited-by-app-access-count",
                &format!("This ban will last for {secs} more seconds"),
            )),
        );
    }
    if get("fields").is_none() {
        return top_error(40, "Missing required arguments:fields", None);
    }
    let (Some(from), Some(to)) = (
        get("start_modified").and_then(parse_china_time),
        get("end_modified").and_then(parse_china_time),
    ) else {
        return top_error(
            40,
            "Missing required arguments:start_modified,end_modified",
            None,
        );
    };
    if to < from || to - from > Duration::days(1) {
        return top_error(
            41,
            "Invalid arguments",
            Some((
                "isv.invalid-parameter:start_modified",
                "start_modified and end_modified must be within one day",
            )),
        );
    }
    let page_no = get("page_no").map_or(Some(1), |v| v.parse::<u64>().ok().filter(|n| *n >= 1));
    let page_size = get("page_size").map_or(Some(40), |v| {
        v.parse::<u64>().ok().filter(|n| (1..=100).contains(n))
    });
    let (Some(page_no), Some(page_size)) = (page_no, page_size) else {
        return top_error(
            41,
            "Invalid arguments",
            Some((
                "isv.invalid-parameter:page_size",
                "page_size must be 1..100",
            )),
        );
    };
    let list = window(book, Platform::Top, None, from, to, true, false);
    let total = list.len() as u64;
    let trades = page_of(book, list, page_no, page_size);
    let mut resp = json!({ "trades": { "trade": trades } });
    if get("use_has_next") == Some("true") {
        resp["has_next"] = json!(page_no * page_size < total);
    } else {
        resp["total_results"] = json!(total);
    }
    Json(json!({ TOP_RESPONSE_KEY: resp }))
}

// ---------------------------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct GenerateBody {
    shop: String,
    platform: Platform,
    n: usize,
    created_at: DateTime<Utc>,
}

async fn generate_route(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<GenerateBody>, JsonRejection>,
) -> (StatusCode, Json<Value>) {
    let b = match body {
        Ok(Json(b)) => b,
        Err(r) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": r.body_text() })),
            )
        }
    };
    if b.n > 10_000 || b.shop.trim().is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "shop must be set and n at most 10000" })),
        );
    }
    let orders = generate(&shared, b.shop.trim(), b.platform, b.n, b.created_at);
    (StatusCode::OK, Json(json!({ "orders": orders })))
}

/// Make the carrier know every waybill of an order (journeys start at the consign time).
fn register_waybills(shared: &Shared, order: &Order) {
    for s in &order.orders {
        let (Some(company), Some(number)) = (&s.logistics_company, &s.invoice_no) else {
            continue;
        };
        if let Some(carrier) = carrier_from_company_name(company) {
            let shipped_at = s
                .consign_time
                .or(order.modified)
                .unwrap_or_else(|| shared.clock.now());
            shared.register(None, carrier.as_str(), number, shipped_at);
        }
    }
}

fn generate(
    shared: &Shared,
    shop: &str,
    platform: Platform,
    n: usize,
    created_at: DateTime<Utc>,
) -> Vec<Order> {
    let seed = shared.cfg.seed;
    let mut out = Vec::with_capacity(n);
    {
        let mut book = shared.orders.lock();
        for i in 0..n {
            book.next_order += 1;
            let seq = book.next_order;
            let created = created_at + Duration::minutes(i as i64);
            let consigned = created + Duration::hours(2);
            let tid = (2_000_000_000_000_000 + seq).to_string();
            let mut waybill = |company: &str| {
                book.next_waybill += 1;
                let carrier = carrier_from_company_name(company)
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default();
                super::journey::waybill_number(&carrier, book.next_waybill, seed)
            };
            let company = |k: u64| COMPANIES[((seq + k) % COMPANIES.len() as u64) as usize];
            let sub = |k: u64, company: Option<(&str, String)>| {
                let mut s = SubOrder::new(
                    format!("{tid}{k}"),
                    if company.is_some() {
                        TradeStatus::WaitBuyerConfirmGoods
                    } else {
                        TradeStatus::WaitSellerSendGoods
                    },
                );
                if let Some((name, number)) = company {
                    s.logistics_company = Some(name.to_string());
                    s.invoice_no = Some(number);
                    s.consign_time = Some(consigned);
                }
                s
            };
            let (status, subs) = match seq % 6 {
                // Split parcels: two sub-orders, two waybills, two carriers.
                1 => {
                    let (a, b) = (company(0), company(1));
                    let (wa, wb) = (waybill(a), waybill(b));
                    (
                        TradeStatus::WaitBuyerConfirmGoods,
                        vec![sub(1, Some((a, wa))), sub(2, Some((b, wb)))],
                    )
                }
                // Two sub-orders in one parcel.
                2 => {
                    let a = company(0);
                    let w = waybill(a);
                    (
                        TradeStatus::WaitBuyerConfirmGoods,
                        vec![sub(1, Some((a, w.clone()))), sub(2, Some((a, w)))],
                    )
                }
                // Part shipped.
                3 => {
                    let a = company(0);
                    let w = waybill(a);
                    (
                        TradeStatus::SellerConsignedPart,
                        vec![sub(1, Some((a, w))), sub(2, None)],
                    )
                }
                _ => {
                    let a = company(0);
                    let w = waybill(a);
                    (
                        TradeStatus::WaitBuyerConfirmGoods,
                        vec![sub(1, Some((a, w)))],
                    )
                }
            };
            let order = Order {
                platform,
                shop: shop.to_string(),
                tid,
                status,
                created: Some(created),
                modified: Some(consigned),
                receiver_mobile: Some(format!("138{:08}", seq % 100_000_000)),
                orders: subs,
            };
            book.orders.insert(key(&order), order.clone());
            out.push(order);
        }
    }
    for o in &out {
        register_waybills(shared, o);
    }
    out
}

/// Apply a change to a stored order and stamp it modified now.
fn modify(
    shared: &Shared,
    platform: Platform,
    shop: &str,
    tid: &str,
    change: impl FnOnce(&mut Order) -> bool,
) -> Option<Order> {
    let now = shared.clock.now();
    let mut book = shared.orders.lock();
    let o = book
        .orders
        .get_mut(&(platform, shop.to_string(), tid.to_string()))?;
    if !change(o) {
        return None;
    }
    o.modified = Some(now);
    Some(o.clone())
}

/// The sandbox's order platforms, driven by tests and the demo.
impl Sandbox {
    /// `…/gateway/taobao/order/ext/list`
    pub fn fw199_endpoint(&self) -> String {
        format!("{}{}", self.base_url(), FW199_PATH)
    }

    /// `…/router/rest`
    pub fn top_endpoint(&self) -> String {
        format!("{}{}", self.base_url(), TOP_PATH)
    }

    /// Store an order as given (its `modified` defaults to the sandbox clock's now) and register
    /// the journeys of its waybills.
    pub fn create_order(&self, mut order: Order) -> Order {
        if order.modified.is_none() {
            order.modified = Some(self.shared.clock.now());
        }
        self.shared
            .orders
            .lock()
            .orders
            .insert(key(&order), order.clone());
        register_waybills(&self.shared, &order);
        order
    }

    /// `n` deterministic orders of `shop`, created a minute apart from `created_at`, consigned
    /// (and last modified) two hours after creation, with Chinese company names and waybills
    /// whose journeys the carrier sandbox knows. By sequence: every 6th from the first is split
    /// in two parcels of two carriers, the next shares one parcel between two sub-orders, the
    /// next is `SELLER_CONSIGNED_PART`, the rest ship one sub-order.
    pub fn generate_orders(
        &self,
        shop: &str,
        platform: Platform,
        n: usize,
        created_at: DateTime<Utc>,
    ) -> Vec<Order> {
        generate(&self.shared, shop, platform, n, created_at)
    }

    /// All orders the platform holds for the shop, by tid.
    pub fn orders(&self, platform: Platform, shop: &str) -> Vec<Order> {
        self.shared
            .orders
            .lock()
            .orders
            .values()
            .filter(|o| o.platform == platform && o.shop == shop)
            .cloned()
            .collect()
    }

    /// Close the trade (`TRADE_CLOSED`, every sub-order too). `None` when unknown.
    pub fn close_order(&self, platform: Platform, shop: &str, tid: &str) -> Option<Order> {
        modify(&self.shared, platform, shop, tid, |o| {
            o.status = TradeStatus::TradeClosed;
            for s in &mut o.orders {
                s.status = TradeStatus::TradeClosed;
            }
            true
        })
    }

    /// Refund one sub-order (`refund_status=SUCCESS`, sub-order closed; the trade closes when
    /// none is left open). `None` when the order or sub-order is unknown.
    pub fn refund_sub_order(
        &self,
        platform: Platform,
        shop: &str,
        tid: &str,
        oid: &str,
    ) -> Option<Order> {
        modify(&self.shared, platform, shop, tid, |o| {
            let Some(s) = o.orders.iter_mut().find(|s| s.oid == oid) else {
                return false;
            };
            s.refund_status = Some(REFUND_SUCCESS.to_string());
            s.status = TradeStatus::TradeClosed;
            if o.orders.iter().all(|s| s.status.is_closed()) {
                o.status = TradeStatus::TradeClosed;
            }
            true
        })
    }

    /// Refuse the platform's next `n_requests` (after their auth checks) as throttled, saying
    /// the ban lasts `ban_seconds`: TOP code 7 `accesscontrol.limited-by-app-access-count`,
    /// fw199 code [`FW199_THROTTLE_CODE`].
    pub fn set_throttle(&self, platform: Platform, n_requests: u32, ban_seconds: u64) {
        self.shared
            .orders
            .lock()
            .throttle
            .insert(platform, (n_requests, ban_seconds));
    }

    /// Answer the next `n` orders served (either platform) as during a sales event: waybill,
    /// company name and phone blank. The stored orders keep them.
    pub fn blank_fields_next(&self, n: u32) {
        self.shared.orders.lock().blank_next = n;
    }

    /// (requests, rejected requests) the platform has seen.
    pub fn order_requests(&self, platform: Platform) -> (u64, u64) {
        let b = self.shared.orders.lock();
        (
            b.requests.get(&platform).copied().unwrap_or(0),
            b.rejected.get(&platform).copied().unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SimClock};
    use crate::sandbox::SandboxConfig;
    use parcelwatch::config::Secret;
    use parcelwatch::domain::order::plan_order;
    use parcelwatch::orders::china_time;
    use parcelwatch::orders::{
        Fw199Client, Fw199Config, OrderError, OrderSource, TopClient, TopConfig,
    };
    use std::time::Duration as StdDuration;

    async fn sandbox() -> (Sandbox, SimClock, DateTime<Utc>) {
        // The clients stamp requests with the wall clock; keep the sandbox near it.
        let now = DateTime::<Utc>::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let clock = SimClock::new(now);
        let sb = Sandbox::start(
            SandboxConfig {
                seed: 11,
                ..SandboxConfig::default()
            },
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        (sb, clock, now)
    }

    fn fw199(sb: &Sandbox, secret: &str) -> Fw199Client {
        Fw199Client::new(
            Fw199Config {
                endpoint: sb.fw199_endpoint(),
                appid: DEFAULT_FW199_APPID.into(),
                secret: Secret::new(secret),
                sysid: None,
                timeout: StdDuration::from_secs(5),
            },
            reqwest::Client::new(),
        )
    }

    fn top(sb: &Sandbox, secret: &str, session: &str, sign_method: SignMethod) -> TopClient {
        TopClient::new(
            TopConfig {
                endpoint: sb.top_endpoint(),
                app_key: DEFAULT_TOP_APP_KEY.into(),
                secret: Secret::new(secret),
                session: Secret::new(session),
                sign_method,
                timeout: StdDuration::from_secs(5),
            },
            reqwest::Client::new(),
        )
    }

    #[tokio::test]
    async fn fw199_pages_ascending_by_modified_time_with_real_signs() {
        let (sb, _clock, now) = sandbox().await;
        let created = now - Duration::hours(20);
        let made = sb.generate_orders("kingdo", Platform::Fw199, 7, created);
        sb.generate_orders("other", Platform::Fw199, 2, created);
        assert_eq!(made.len(), 7);
        let client = fw199(&sb, DEFAULT_FW199_SECRET);
        let from = now - Duration::days(1);
        let p1 = client.page("kingdo", from, now, 1, 3).await.unwrap();
        assert_eq!(p1.total, Some(7));
        assert!(p1.has_next);
        let p3 = client.page("kingdo", from, now, 3, 3).await.unwrap();
        assert!(!p3.has_next);
        assert_eq!(p3.orders.len(), 1);
        let p2 = client.page("kingdo", from, now, 2, 3).await.unwrap();
        let tids: Vec<String> = [p1.orders, p2.orders, p3.orders]
            .concat()
            .into_iter()
            .map(|o| o.tid)
            .collect();
        let want: Vec<String> = made.iter().map(|o| o.tid.clone()).collect();
        assert_eq!(tids, want, "ascending, every order once");
        // The client read back exactly what the sandbox holds.
        let back = client.page("kingdo", from, now, 1, 500).await.unwrap();
        assert_eq!(back.orders, made);

        // Window on the modified time: only orders modified within it.
        let m3 = made[3].modified.unwrap();
        let narrow = client
            .page(
                "kingdo",
                m3 - Duration::seconds(30),
                m3 + Duration::seconds(90),
                1,
                100,
            )
            .await
            .unwrap();
        let tids: Vec<&str> = narrow.orders.iter().map(|o| o.tid.as_str()).collect();
        assert_eq!(tids, [made[3].tid.as_str(), made[4].tid.as_str()]);

        let bad = fw199(&sb, "wrong-secret")
            .page("kingdo", from, now, 1, 3)
            .await;
        match bad {
            Err(OrderError::Permanent { reason }) => assert!(reason.contains("签名"), "{reason}"),
            other => panic!("wrong secret accepted: {other:?}"),
        }
        assert_eq!(sb.order_requests(Platform::Fw199), (6, 1));
    }

    #[tokio::test]
    async fn generated_orders_have_known_journeys_and_every_shape() {
        let (sb, _clock, now) = sandbox().await;
        let made = sb.generate_orders("kingdo", Platform::Top, 6, now - Duration::hours(5));
        let mut shapes = (0, 0, 0);
        for o in &made {
            let plans = plan_order(o);
            let tracked: Vec<_> = plans
                .iter()
                .filter_map(|p| match p {
                    parcelwatch::domain::order::SubOrderPlan::Track { id, oids, .. } => {
                        Some((id.clone(), oids.len()))
                    }
                    _ => None,
                })
                .collect();
            assert!(!tracked.is_empty(), "{o:?}");
            for (id, _) in &tracked {
                assert!(
                    sb.journey(id.carrier.as_str(), id.number.as_str())
                        .is_some(),
                    "{id} has no journey"
                );
            }
            if tracked.len() == 2 {
                shapes.0 += 1;
            }
            if tracked.iter().any(|(_, n)| *n == 2) {
                shapes.1 += 1;
            }
            if o.status == TradeStatus::SellerConsignedPart {
                shapes.2 += 1;
            }
            assert!(o.phone().is_some());
        }
        assert_eq!(shapes, (1, 1, 1), "split, shared, part-shipped");
        // Same seed, same waybills.
        let (other, _c, _) = sandbox().await;
        let again = other.generate_orders("kingdo", Platform::Top, 6, now - Duration::hours(5));
        assert_eq!(again, made);
    }

    #[tokio::test]
    async fn top_signs_sessions_methods_and_windows() {
        let (sb, _clock, now) = sandbox().await;
        let made = sb.generate_orders("kingdo", Platform::Top, 5, now - Duration::hours(6));
        for method in [SignMethod::Md5, SignMethod::Hmac] {
            let page = top(&sb, DEFAULT_TOP_SECRET, DEFAULT_TOP_SESSION, method)
                .page("kingdo", now - Duration::hours(23), now, 1, 100)
                .await
                .unwrap();
            assert_eq!(page.total, Some(5), "{method:?}");
            // Newest first.
            let tids: Vec<&str> = page.orders.iter().map(|o| o.tid.as_str()).collect();
            let mut want: Vec<&str> = made.iter().map(|o| o.tid.as_str()).collect();
            want.reverse();
            assert_eq!(tids, want);
        }
        let bad_sign = top(&sb, "nope", DEFAULT_TOP_SESSION, SignMethod::Hmac)
            .page("kingdo", now - Duration::hours(1), now, 1, 100)
            .await
            .unwrap_err();
        assert!(!bad_sign.is_retryable());
        assert!(bad_sign.to_string().contains("25"), "{bad_sign}");
        let bad_session = top(&sb, DEFAULT_TOP_SECRET, "expired", SignMethod::Md5)
            .page("kingdo", now - Duration::hours(1), now, 1, 100)
            .await
            .unwrap_err();
        assert!(!bad_session.is_retryable());
        assert!(bad_session.to_string().contains("27"), "{bad_session}");

        // A window before every consign time is empty.
        let early = top(
            &sb,
            DEFAULT_TOP_SECRET,
            DEFAULT_TOP_SESSION,
            SignMethod::Md5,
        )
        .page(
            "kingdo",
            now - Duration::hours(23),
            now - Duration::hours(5),
            1,
            100,
        )
        .await
        .unwrap();
        assert_eq!((early.total, early.orders.len()), (Some(0), 0));

        // Raw requests: unknown method, a window longer than a day, a stale timestamp.
        let http = reqwest::Client::new();
        let send = |mut form: Vec<(String, String)>| {
            let http = http.clone();
            let url = sb.top_endpoint();
            async move {
                let sign = top_sign(
                    form.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    DEFAULT_TOP_SECRET,
                    SignMethod::Md5,
                );
                form.push(("sign".into(), sign));
                let v: Value = http
                    .post(url)
                    .form(&form)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v
            }
        };
        let base =
            |method: &str, ts: DateTime<Utc>, from: DateTime<Utc>| -> Vec<(String, String)> {
                [
                    ("method", method.to_string()),
                    ("app_key", DEFAULT_TOP_APP_KEY.to_string()),
                    ("session", DEFAULT_TOP_SESSION.to_string()),
                    ("timestamp", china_time(ts)),
                    ("format", "json".to_string()),
                    ("v", "2.0".to_string()),
                    ("sign_method", "md5".to_string()),
                    ("fields", "tid".to_string()),
                    ("start_modified", china_time(from)),
                    ("end_modified", china_time(now)),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
            };
        let v = send(base(
            "taobao.trade.fullinfo.get",
            now,
            now - Duration::hours(1),
        ))
        .await;
        assert_eq!(v["error_response"]["code"], 22, "{v}");
        let v = send(base(TOP_METHOD, now, now - Duration::hours(25))).await;
        assert_eq!(v["error_response"]["code"], 41, "{v}");
        let v = send(base(
            TOP_METHOD,
            now - Duration::hours(3),
            now - Duration::hours(1),
        ))
        .await;
        assert_eq!(v["error_response"]["code"], 31, "{v}");
        let mut has_next = base(TOP_METHOD, now, now - Duration::hours(23));
        has_next.push(("use_has_next".into(), "true".into()));
        has_next.push(("page_size".into(), "2".into()));
        let v = send(has_next).await;
        let resp = &v[TOP_RESPONSE_KEY];
        assert_eq!(resp["has_next"], true, "{v}");
        assert!(resp.get("total_results").is_none(), "{v}");
    }

    #[tokio::test]
    async fn throttling_says_how_long_and_then_lifts() {
        let (sb, _clock, now) = sandbox().await;
        sb.generate_orders("kingdo", Platform::Top, 1, now - Duration::hours(3));
        sb.generate_orders("kingdo", Platform::Fw199, 1, now - Duration::hours(3));
        let t = top(
            &sb,
            DEFAULT_TOP_SECRET,
            DEFAULT_TOP_SESSION,
            SignMethod::Md5,
        );
        let f = fw199(&sb, DEFAULT_FW199_SECRET);
        sb.set_throttle(Platform::Top, 1, 30);
        sb.set_throttle(Platform::Fw199, 2, 12);
        let from = now - Duration::hours(23);
        let e = t.page("kingdo", from, now, 1, 100).await.unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(StdDuration::from_secs(30)));
        assert_eq!(
            t.page("kingdo", from, now, 1, 100)
                .await
                .unwrap()
                .orders
                .len(),
            1
        );
        for _ in 0..2 {
            let e = f.page("kingdo", from, now, 1, 100).await.unwrap_err();
            assert_eq!(e.retry_after(), Some(StdDuration::from_secs(12)), "{e}");
        }
        assert_eq!(
            f.page("kingdo", from, now, 1, 100)
                .await
                .unwrap()
                .orders
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn modifications_bump_modified_and_blanks_are_served_not_stored() {
        let (sb, clock, now) = sandbox().await;
        let made = sb.generate_orders("kingdo", Platform::Fw199, 3, now - Duration::hours(5));
        let split = made
            .iter()
            .find(|o| o.orders.len() == 2 && o.orders[0].invoice_no != o.orders[1].invoice_no)
            .unwrap();
        clock.advance(Duration::minutes(3));
        let refunded = sb
            .refund_sub_order(Platform::Fw199, "kingdo", &split.tid, &split.orders[1].oid)
            .unwrap();
        assert_eq!(refunded.modified, Some(now + Duration::minutes(3)));
        assert_eq!(refunded.orders[1].refund_status.as_deref(), Some("SUCCESS"));
        assert_eq!(refunded.status, TradeStatus::WaitBuyerConfirmGoods);
        let other = made.iter().find(|o| o.tid != split.tid).unwrap();
        let closed = sb
            .close_order(Platform::Fw199, "kingdo", &other.tid)
            .unwrap();
        assert_eq!(closed.status, TradeStatus::TradeClosed);
        assert!(sb.close_order(Platform::Fw199, "kingdo", "nope").is_none());
        assert!(sb
            .refund_sub_order(Platform::Fw199, "kingdo", &split.tid, "nope")
            .is_none());

        // Only the modified orders are in a window starting after the generation.
        let client = fw199(&sb, DEFAULT_FW199_SECRET);
        let recent = client
            .page(
                "kingdo",
                now + Duration::minutes(1),
                now + Duration::minutes(4),
                1,
                100,
            )
            .await
            .unwrap();
        assert_eq!(recent.total, Some(2));

        sb.blank_fields_next(1);
        let page = client
            .page(
                "kingdo",
                now - Duration::days(1),
                now + Duration::minutes(4),
                1,
                100,
            )
            .await
            .unwrap();
        let first = &page.orders[0];
        assert_eq!(first.receiver_mobile, None);
        assert!(first
            .orders
            .iter()
            .all(|s| s.invoice_no.is_none() && s.logistics_company.is_none()));
        assert!(
            page.orders[1].orders[0].invoice_no.is_some(),
            "only one order blanked"
        );
        assert!(sb
            .orders(Platform::Fw199, "kingdo")
            .iter()
            .all(|o| o.orders[0].invoice_no.is_some()));
    }

    #[tokio::test]
    async fn the_admin_route_generates_orders() {
        let (sb, _clock, now) = sandbox().await;
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}/sandbox/orders", sb.base_url()))
            .json(&json!({"shop": "kingdo", "platform": "top", "n": 4, "created_at": now - Duration::hours(3)}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["orders"].as_array().map(Vec::len), Some(4));
        assert_eq!(sb.orders(Platform::Top, "kingdo").len(), 4);
        let bad = http
            .post(format!("{}/sandbox/orders", sb.base_url()))
            .json(&json!({"shop": "kingdo", "platform": "tmall", "n": 1, "created_at": now}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    }

    /// The order-sync handler, with the real clients, against the sandbox: split parcels,
    /// part-shipped orders, throttling, a sales-event blank answer, then a close and a refund.
    #[tokio::test]
    async fn order_sync_end_to_end_over_both_platforms() {
        use order_sync::{run_sync, OrderSyncConfig, ShopSpec};
        use parcelwatch::store::orders::MemoryOrderStore;
        use parcelwatch::store::MemoryStore;

        let (sb, clock, now) = sandbox().await;
        let fw_orders = sb.generate_orders("kingdo", Platform::Fw199, 12, now - Duration::hours(6));
        let top_orders = sb.generate_orders("可拆卸aa", Platform::Top, 6, now - Duration::hours(6));
        let fw = fw199(&sb, DEFAULT_FW199_SECRET);
        let tp = top(
            &sb,
            DEFAULT_TOP_SECRET,
            DEFAULT_TOP_SESSION,
            SignMethod::Hmac,
        );
        let cfg = OrderSyncConfig {
            shops: vec![
                ShopSpec {
                    platform: Platform::Fw199,
                    shop: "kingdo".into(),
                },
                ShopSpec {
                    platform: Platform::Top,
                    shop: "可拆卸aa".into(),
                },
            ],
            overlap: Duration::seconds(300),
            page_size: Some(5),
            max_window: Duration::hours(24),
            default_provider: "kdniao".into(),
        };
        let (orders, shipments) = (MemoryOrderStore::new(), MemoryStore::new(4));
        let parcels = |list: &[Order]| -> usize {
            list.iter()
                .flat_map(plan_order)
                .filter(|p| matches!(p, parcelwatch::domain::order::SubOrderPlan::Track { .. }))
                .count()
        };

        // TOP is throttled on the first run: fw199 goes on, TOP keeps its watermark.
        sb.set_throttle(Platform::Top, 1, 20);
        let r = run_sync(Some(&fw), Some(&tp), &orders, &shipments, &cfg, now).await;
        let (f, t) = (&r.shops[0], &r.shops[1]);
        assert_eq!(f.error, None);
        assert_eq!(f.orders, 12);
        assert_eq!(f.pages, 4, "probe + 3 pages backwards");
        assert_eq!(f.shipments_registered as usize, parcels(&fw_orders));
        assert_eq!(
            f.skipped.get("not_shipped"),
            Some(&2),
            "two part-shipped orders"
        );
        assert_eq!(t.retry_after_seconds, Some(20));
        assert_eq!(orders.watermark(Platform::Top, "可拆卸aa"), None);

        clock.advance(Duration::minutes(5));
        let now2 = clock.now();
        sb.blank_fields_next(1000);
        let r = run_sync(Some(&fw), Some(&tp), &orders, &shipments, &cfg, now2).await;
        let t = &r.shops[1];
        assert_eq!(t.error, None);
        // A sales-event answer: every TOP order blank, nothing registered, nothing stopped.
        assert_eq!(t.orders, 6);
        assert_eq!(t.shipments_registered, 0, "{t:?}");
        assert_eq!(t.stopped, 0);
        assert!(
            t.skipped.get("incomplete").copied().unwrap_or(0) >= 6,
            "{t:?}"
        );
        sb.blank_fields_next(0);
        clock.advance(Duration::minutes(5));
        orders.sync.lock().unwrap().clear();
        let r = run_sync(Some(&fw), Some(&tp), &orders, &shipments, &cfg, clock.now()).await;
        let total: u64 = r.shops.iter().map(|s| s.shipments_registered).sum();
        assert!(
            total > 0,
            "the blanked orders are registered once answered in full"
        );
        assert_eq!(
            shipments.shipments.lock().unwrap().len(),
            parcels(&fw_orders) + parcels(&top_orders)
        );

        // Close one fw199 order and refund a split parcel's sub-order on TOP.
        clock.advance(Duration::minutes(5));
        let closed = sb
            .close_order(Platform::Fw199, "kingdo", &fw_orders[5].tid)
            .unwrap();
        let split = top_orders
            .iter()
            .find(|o| o.orders.len() == 2 && o.orders[0].invoice_no != o.orders[1].invoice_no)
            .unwrap();
        sb.refund_sub_order(Platform::Top, "可拆卸aa", &split.tid, &split.orders[1].oid)
            .unwrap();
        clock.advance(Duration::minutes(5));
        let r = run_sync(Some(&fw), Some(&tp), &orders, &shipments, &cfg, clock.now()).await;
        assert_eq!(r.shops[0].stopped + r.shops[1].stopped, 2, "{r:?}");
        for (o, i) in [(&closed, 0usize), (split, 1)] {
            let id = o.orders[i].shipment_id().unwrap();
            let s = shipments.shipment(&id).unwrap();
            assert_eq!(s.next_check_at, None, "{id}");
            assert!(s
                .last_error
                .as_deref()
                .unwrap()
                .starts_with("tracking stopped"));
            assert!(sb
                .journey(id.carrier.as_str(), id.number.as_str())
                .is_some());
        }
        let kept = split.orders[0].shipment_id().unwrap();
        assert!(shipments.shipment(&kept).unwrap().next_check_at.is_some());
    }
}
