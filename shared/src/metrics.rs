//! Metrics as CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per data point,
//! which Lambda's log pipeline turns into a CloudWatch metric with no API call and no extra
//! permission. Locally and in tests the same lines are counted in-process so that assertions
//! can read them back.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The namespace of every parcelwatch metric.
pub const NAMESPACE: &str = "parcelwatch";

static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn key(name: &str, dims: &[(&str, &str)]) -> String {
    let mut k = name.to_string();
    for (d, v) in dims {
        k.push_str(&format!("|{d}={v}"));
    }
    k
}

/// The EMF document of one count: `{"_aws": {...}, "<dim>": "<value>", ..., "<name>": n}`.
pub fn emf_line(name: &str, dims: &[(&str, &str)], value: u64, timestamp_ms: i64) -> String {
    let mut doc = serde_json::Map::new();
    let dim_names: Vec<&str> = dims.iter().map(|(d, _)| *d).collect();
    doc.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dim_names],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        }),
    );
    for (d, v) in dims {
        doc.insert(
            (*d).to_string(),
            serde_json::Value::String((*v).to_string()),
        );
    }
    doc.insert(name.to_string(), serde_json::Value::from(value));
    serde_json::Value::Object(doc).to_string()
}

/// Inside Lambda (or `cargo lambda watch`, which sets the same variable) EMF lines go to stdout,
/// where CloudWatch Logs picks them up; elsewhere (the in-process local runner, tests) they would
/// only clutter the output, so they are just counted.
fn in_lambda() -> bool {
    static IN_LAMBDA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_LAMBDA.get_or_init(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some())
}

/// Count one event: printed as EMF (a metric in CloudWatch) when running in Lambda, and kept
/// for [`count_of`].
pub fn count(name: &str, dims: &[(&str, &str)]) {
    if in_lambda() {
        let line = emf_line(name, dims, 1, chrono::Utc::now().timestamp_millis());
        println!("{line}");
    }
    let mut c = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    *c.entry(key(name, dims)).or_default() += 1;
}

/// How many times [`count`] was called with exactly this name and these dimensions in this
/// process.
pub fn count_of(name: &str, dims: &[(&str, &str)]) -> u64 {
    let c = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    c.get(&key(name, dims)).copied().unwrap_or(0)
}

/// Total of a metric over all its dimension values in this process.
pub fn total_of(name: &str) -> u64 {
    let c = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    c.iter()
        .filter(|(k, _)| k.split('|').next() == Some(name))
        .map(|(_, v)| *v)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_names_its_metric_dimensions_and_value() {
        let line = emf_line(
            "ProviderFailover",
            &[("From", "kdniao"), ("To", "kuaidi100")],
            1,
            42,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 42);
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "parcelwatch");
        assert_eq!(m["Dimensions"][0], serde_json::json!(["From", "To"]));
        assert_eq!(m["Metrics"][0]["Name"], "ProviderFailover");
        assert_eq!(v["From"], "kdniao");
        assert_eq!(v["To"], "kuaidi100");
        assert_eq!(v["ProviderFailover"], 1);
    }

    #[test]
    fn counts_are_kept_per_dimension_set() {
        count("TestMetricA", &[("P", "x")]);
        count("TestMetricA", &[("P", "x")]);
        count("TestMetricA", &[("P", "y")]);
        assert_eq!(count_of("TestMetricA", &[("P", "x")]), 2);
        assert_eq!(count_of("TestMetricA", &[("P", "y")]), 1);
        assert_eq!(total_of("TestMetricA"), 3);
    }
}
