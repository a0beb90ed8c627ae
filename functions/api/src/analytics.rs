//! `GET /analytics/routes` and `GET /analytics/carriers/{carrier}/stages`: the delivery history
//! the analytics function keeps (see `parcelwatch::store::analytics`), as figures a merchant
//! reads: counts, median and 90th-percentile delivery times, exception rates, stage times.

use chrono::Duration;
use futures::future::BoxFuture;
use parcelwatch::domain::geo::parse_province;
use parcelwatch::domain::stats::{Histogram, HistorySnapshot, RouteStats, UNKNOWN_PLACE};
use parcelwatch::domain::Carrier;
use parcelwatch::store::analytics::AnalyticsStore;
use parcelwatch::store::StoreError;
use serde_json::{json, Value};

/// Where the api reads the history from. Object-safe (boxed futures), so the api's type does
/// not grow a parameter for it; every [`AnalyticsStore`] is one.
pub trait HistorySource: Send + Sync {
    /// One carrier's aggregates, or every carrier's with `None`.
    fn load<'a>(
        &'a self,
        carrier: Option<&'a str>,
    ) -> BoxFuture<'a, Result<HistorySnapshot, StoreError>>;
}

impl<T: AnalyticsStore> HistorySource for T {
    fn load<'a>(
        &'a self,
        carrier: Option<&'a str>,
    ) -> BoxFuture<'a, Result<HistorySnapshot, StoreError>> {
        Box::pin(async move {
            match carrier {
                Some(c) => self.load_carrier_history(c).await,
                None => self.load_history().await,
            }
        })
    }
}

fn present(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

/// The filter of `GET /analytics/routes`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFilter {
    pub carrier: Option<String>,
    pub origin: Option<String>,
    pub destination: Option<String>,
}

/// A query's `carrier` / `origin` / `destination`: a known carrier code, provinces by any of
/// their names (`浙江`, `浙江省`, `浙`, `Zhejiang`), or `-` for "not known". Empty = any.
pub fn parse_filter(
    carrier: Option<&str>,
    origin: Option<&str>,
    destination: Option<&str>,
) -> Result<RouteFilter, String> {
    let carrier = match present(carrier) {
        None => None,
        Some(c) => Some(
            Carrier::parse(c)
                .map_err(|e| format!("carrier: {e}"))?
                .as_str()
                .to_string(),
        ),
    };
    let province = |field: &str, v: Option<&str>| -> Result<Option<String>, String> {
        match present(v) {
            None => Ok(None),
            Some(UNKNOWN_PLACE) => Ok(Some(UNKNOWN_PLACE.to_string())),
            Some(p) => parse_province(p)
                .map(|p| Some(p.name.to_string()))
                .ok_or_else(|| {
                    format!(
                        "{field} must be a province of China (e.g. 浙江, 浙江省 or Zhejiang) or -"
                    )
                }),
        }
    };
    Ok(RouteFilter {
        carrier,
        origin: province("origin", origin)?,
        destination: province("destination", destination)?,
    })
}

fn minutes(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!((d.num_seconds() as f64 / 60.0).round() as i64)
    })
}

fn hours(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!((d.num_seconds() as f64 / 360.0).round() / 10.0)
    })
}

/// Median, 90th and 99th percentile of a histogram, in minutes (and hours for reading).
fn quantiles(h: &Histogram) -> Value {
    json!({
        "samples": h.total(),
        "p50_minutes": minutes(h.quantile(0.5)),
        "p90_minutes": minutes(h.quantile(0.9)),
        "p99_minutes": minutes(h.quantile(0.99)),
        "p50_hours": hours(h.quantile(0.5)),
        "p90_hours": hours(h.quantile(0.9)),
    })
}

/// The figures of one route (or of several merged).
pub fn route_figures(r: &RouteStats) -> Value {
    json!({
        "finished": r.finished,
        "delivered": r.delivered,
        "exceptions": r.exceptions,
        "exception_rate": r.exception_rate(),
        "delivery_time": quantiles(&r.delivery),
    })
}

/// The answer of `GET /analytics/routes`: every matching route, busiest first, and their total.
pub fn routes_view(h: &HistorySnapshot, f: &RouteFilter) -> Value {
    let mut rows: Vec<(&parcelwatch::domain::stats::RouteKey, &RouteStats)> = h
        .routes
        .iter()
        .filter(|(k, _)| {
            f.carrier.as_deref().is_none_or(|c| k.carrier == c)
                && f.origin.as_deref().is_none_or(|o| k.origin == o)
                && f.destination.as_deref().is_none_or(|d| k.destination == d)
        })
        .collect();
    rows.sort_by(|a, b| b.1.finished.cmp(&a.1.finished).then(a.0.cmp(b.0)));
    let mut total = RouteStats::default();
    for (_, r) in &rows {
        total.merge(r);
    }
    let routes: Vec<Value> = rows
        .iter()
        .map(|(k, r)| {
            let mut v = route_figures(r);
            if let Some(o) = v.as_object_mut() {
                o.insert("carrier".into(), json!(k.carrier));
                o.insert("origin".into(), json!(k.origin));
                o.insert("destination".into(), json!(k.destination));
            }
            v
        })
        .collect();
    json!({
        "filter": {
            "carrier": f.carrier,
            "origin": f.origin,
            "destination": f.destination,
        },
        "total": route_figures(&total),
        "routes": routes,
    })
}

/// The answer of `GET /analytics/carriers/{carrier}/stages`, stages in journey order.
pub fn stages_view(h: &HistorySnapshot, carrier: &str) -> Value {
    let stages: Vec<Value> = h
        .stages
        .iter()
        .filter(|((c, _), _)| c == carrier)
        .map(|((_, stage), st)| {
            json!({
                "stage": stage.as_str(),
                "time_in_stage": quantiles(&st.time_in_stage),
                "quiet_gap": quantiles(&st.quiet_gap),
            })
        })
        .collect();
    json!({ "carrier": carrier, "stages": stages })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parcelwatch::domain::stats::{RouteKey, StageStats};
    use parcelwatch::domain::Status;

    #[test]
    fn filters_take_carrier_codes_and_province_names() {
        let f = parse_filter(Some("yto"), Some("Zhejiang"), Some("京")).unwrap();
        assert_eq!(
            f,
            RouteFilter {
                carrier: Some("YTO".into()),
                origin: Some("浙江".into()),
                destination: Some("北京".into()),
            }
        );
        let any = parse_filter(None, Some(" "), Some("-")).unwrap();
        assert_eq!((any.carrier, any.origin), (None, None));
        assert_eq!(any.destination.as_deref(), Some("-"));
        let e = parse_filter(None, Some("Atlantis"), None).unwrap_err();
        assert!(e.starts_with("origin must be a province"), "{e}");
        assert!(parse_filter(Some("!!"), None, None).is_err());
    }

    #[test]
    fn routes_are_listed_busiest_first_with_their_total() {
        let mut h = HistorySnapshot::default();
        for (o, d, n, exc) in [("浙江", "北京", 2u64, 1u64), ("广东", "北京", 5, 0)] {
            let mut r = RouteStats {
                finished: n,
                delivered: n - exc,
                exceptions: exc,
                ..Default::default()
            };
            for _ in 0..n - exc {
                r.delivery.record(Duration::hours(48));
            }
            h.routes.insert(
                RouteKey {
                    carrier: "YTO".into(),
                    origin: o.into(),
                    destination: d.into(),
                },
                r,
            );
        }
        let v = routes_view(&h, &parse_filter(None, None, Some("北京")).unwrap());
        assert_eq!(v["routes"][0]["origin"], "广东");
        assert_eq!(v["routes"][1]["origin"], "浙江");
        assert_eq!(v["total"]["finished"], 7);
        assert_eq!(v["total"]["delivered"], 6);
        assert_eq!(v["total"]["exception_rate"], json!(1.0 / 7.0));
        let p50 = v["total"]["delivery_time"]["p50_minutes"].as_i64().unwrap();
        assert!((p50 - 48 * 60).abs() < 48 * 6, "{p50}");
        assert_eq!(v["total"]["delivery_time"]["samples"], 6);
        let none = routes_view(&h, &parse_filter(Some("SF"), None, None).unwrap());
        assert_eq!(none["routes"], json!([]));
        assert_eq!(none["total"]["exception_rate"], Value::Null);
        assert_eq!(none["total"]["delivery_time"]["p50_minutes"], Value::Null);

        let mut st = StageStats::default();
        st.quiet_gap.record(Duration::hours(3));
        h.stages
            .insert(("YTO".into(), Status::InTransit), st.clone());
        h.stages.insert(("YTO".into(), Status::PickedUp), st);
        let v = stages_view(&h, "YTO");
        assert_eq!(v["stages"][0]["stage"], "PickedUp");
        assert_eq!(v["stages"][1]["stage"], "InTransit");
        assert_eq!(v["stages"][1]["quiet_gap"]["samples"], 1);
        assert_eq!(v["stages"][1]["time_in_stage"]["samples"], 0);
    }
}
