//! The figures of `make bench` as one table: printed, and written to `bench/results.md` and
//! `bench/results.json` at the repository root.

use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One row: what was measured, its value and unit, and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub section: &'static str,
    pub figure: String,
    /// As printed (rounded).
    pub value: String,
    pub unit: String,
    pub how: String,
    /// The number behind `value`, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<f64>,
}

impl Figure {
    pub fn num(
        section: &'static str,
        figure: impl Into<String>,
        number: f64,
        decimals: usize,
        unit: impl Into<String>,
        how: impl Into<String>,
    ) -> Figure {
        Figure {
            section,
            figure: figure.into(),
            value: fmt_num(number, decimals),
            unit: unit.into(),
            how: how.into(),
            number: number.is_finite().then_some(number),
        }
    }

    pub fn text(
        section: &'static str,
        figure: impl Into<String>,
        value: impl Into<String>,
        unit: impl Into<String>,
        how: impl Into<String>,
    ) -> Figure {
        Figure {
            section,
            figure: figure.into(),
            value: value.into(),
            unit: unit.into(),
            how: how.into(),
            number: None,
        }
    }
}

/// `12,345.6` style: thousands separated, `decimals` places; NaN as `n/a`.
pub fn fmt_num(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if x < 0.0 && s.chars().any(|c| c != '0' && c != '.') {
        "-"
    } else {
        ""
    };
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// The table as markdown (pipes in cells escaped).
pub fn markdown(figures: &[Figure]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = String::from(
        "| section | figure | value | unit | how measured |\n|---|---|---:|---|---|\n",
    );
    for f in figures {
        let _infallible = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            f.section,
            cell(&f.figure),
            cell(&f.value),
            cell(&f.unit),
            cell(&f.how)
        );
    }
    out
}

/// The table for a terminal: section, figure, value and unit in columns; how, below each
/// section's rows would be too wide, so it follows the unit.
pub fn plain(figures: &[Figure]) -> String {
    let w_fig = figures
        .iter()
        .map(|f| f.figure.chars().count())
        .max()
        .unwrap_or(0);
    let w_val = figures
        .iter()
        .map(|f| f.value.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let mut section = "";
    for f in figures {
        if f.section != section {
            section = f.section;
            let _infallible = writeln!(out, "\n== {section}");
        }
        let pad_fig = w_fig - f.figure.chars().count();
        let pad_val = w_val - f.value.chars().count();
        let _infallible = writeln!(
            out,
            "  {}{} {}{} {}  ({})",
            f.figure,
            " ".repeat(pad_fig),
            " ".repeat(pad_val),
            f.value,
            f.unit,
            f.how
        );
    }
    out
}

/// Write `results.md` (the table under a heading with the conditions) and `results.json`
/// (`json` as given) into `dir`.
pub fn write(
    dir: &Path,
    conditions: &str,
    figures: &[Figure],
    json: &serde_json::Value,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let md = format!(
        "# `make bench` results\n\n{conditions}\n\n{}\nWritten by `make bench` (`local/src/bench`); the same figures with more detail are in `results.json`.\n",
        markdown(figures)
    );
    std::fs::write(dir.join("results.md"), md)?;
    let text = serde_json::to_string_pretty(json).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("results.json"), text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_rounded() {
        assert_eq!(fmt_num(1234567.891, 1), "1,234,567.9");
        assert_eq!(fmt_num(999.0, 0), "999");
        assert_eq!(fmt_num(-1500.0, 0), "-1,500");
        assert_eq!(fmt_num(0.04, 2), "0.04");
        assert_eq!(fmt_num(f64::NAN, 2), "n/a");
    }

    #[test]
    fn markdown_rows_escape_pipes() {
        let f = Figure::num("cpu", "a|b", 1.5, 1, "µs", "criterion");
        let md = markdown(&[f]);
        assert!(
            md.contains("| cpu | a\\|b | 1.5 | µs | criterion |"),
            "{md}"
        );
        assert_eq!(md.lines().count(), 3);
    }
}
