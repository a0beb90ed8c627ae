//! CPU per check: the criterion run of `shared/benches/check.rs` (`make bench` runs it first,
//! briefly), read back from criterion's `<target>/criterion/check/<name>/new/estimates.json`.

use super::table::Figure;
use std::path::{Path, PathBuf};

/// The benchmarks of `shared/benches/check.rs`, and what each covers.
pub const CHECKS: [(&str, &str); 6] = [
    (
        "kdniao_20_lines",
        "Kdniao 8001 answer of 20 lines: parse + normalize + decide (learned cadence, apply_check, stall verdict) + DynamoDB items",
    ),
    (
        "kuaidi100_20_lines",
        "Kuaidi100 answer of the same 20 lines, the same steps",
    ),
    ("kdniao_parse_normalize", "of which: parse + normalize"),
    (
        "decide",
        "of which: decide (learned cadence from a 5,000-gap history, apply_check, stall verdict)",
    ),
    (
        "apply_check",
        "of which, in decide: apply_check alone (diff, transition, next check)",
    ),
    ("write_items", "of which: the write (EVT# + META items)"),
];

/// Criterion's estimates of one benchmark, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub mean_ns: f64,
    pub median_ns: f64,
    pub mean_ci_low_ns: f64,
    pub mean_ci_high_ns: f64,
}

/// Read `estimates.json` (criterion's format: `{"mean": {"point_estimate": ns,
/// "confidence_interval": {"lower_bound": ns, "upper_bound": ns, ..}, ..}, "median": {..}, ..}`).
pub fn read_estimate(path: &Path) -> Result<Estimate, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let get = |a: &str, b: &[&str]| {
        let mut x = &v[a];
        for k in b {
            x = &x[*k];
        }
        x.as_f64()
            .ok_or_else(|| format!("{}: no {a}.{}", path.display(), b.join(".")))
    };
    Ok(Estimate {
        mean_ns: get("mean", &["point_estimate"])?,
        median_ns: get("median", &["point_estimate"])?,
        mean_ci_low_ns: get("mean", &["confidence_interval", "lower_bound"])?,
        mean_ci_high_ns: get("mean", &["confidence_interval", "upper_bound"])?,
    })
}

/// Where criterion writes: `$CARGO_TARGET_DIR/criterion`, else `<workspace>/target/criterion`.
pub fn criterion_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| crate::moto::workspace_root().ok().map(|r| r.join("target")))
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("criterion")
}

pub fn section(dir: &Path) -> Vec<Figure> {
    let mut out = Vec::new();
    for (name, what) in CHECKS {
        let path = dir.join("check").join(name).join("new/estimates.json");
        match read_estimate(&path) {
            Ok(e) => out.push(Figure::num(
                "CPU per check",
                what,
                e.mean_ns / 1000.0,
                2,
                "µs",
                format!(
                    "criterion check/{name}, release: mean (95% CI {:.2}–{:.2} µs), median {:.2} µs; one core, machine shared",
                    e.mean_ci_low_ns / 1000.0,
                    e.mean_ci_high_ns / 1000.0,
                    e.median_ns / 1000.0
                ),
            )),
            Err(e) => out.push(Figure::text(
                "CPU per check",
                what,
                "n/a",
                "µs",
                format!("no criterion estimate ({e}); run `cargo bench -p parcelwatch --bench check`"),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_estimates_are_read() {
        let dir = std::env::temp_dir().join(format!("pw-bench-cpu-{}", std::process::id()));
        let path = dir.join("check/apply_check/new/estimates.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":900.0,"upper_bound":1100.0},"point_estimate":1000.0,"standard_error":50.0},
               "median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":950.0,"upper_bound":990.0},"point_estimate":970.0,"standard_error":10.0}}"#,
        )
        .unwrap();
        let e = read_estimate(&path).unwrap();
        assert_eq!(e.mean_ns, 1000.0);
        assert_eq!(e.median_ns, 970.0);
        assert_eq!(e.mean_ci_low_ns, 900.0);
        let figs = section(&dir);
        let apply = figs
            .iter()
            .find(|f| f.figure.starts_with("of which, in decide: apply_check"))
            .unwrap();
        assert_eq!(apply.value, "1.00");
        let missing = figs
            .iter()
            .find(|f| f.figure.contains("Kdniao 8001"))
            .unwrap();
        assert_eq!(missing.value, "n/a");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
