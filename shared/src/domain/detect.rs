//! Which carrier printed a waybill number, guessed from its shape alone, from the number rules
//! of the carrier registry ([`super::carriers`]).
//!
//! [`detect`] ranks every carrier with a matching rule. A carrier's score is its best matching
//! rule's confidence; when the scores of all matching carriers add up to more than 1 they are
//! shared out in proportion, so a number that fits several carriers' shapes equally gets low
//! confidence for each. [`detect_carrier`] keeps only the confident candidates: shapes one
//! carrier owns (letter prefixes, China-issued UPU S10 numbers with a valid check digit).
//! All-digit numbers are shared by ZTO, STO, Yunda, EMS, Best and others and are never
//! confident: a wrong guess would be tracked against the wrong carrier until someone noticed,
//! which is worse than asking (or than asking a provider, see `providers::recognize`).

use super::carriers::{Pattern, CARRIERS, CONFIDENT};
use super::ids::{Carrier, TrackingNumber};

/// A carrier a number may belong to, with how sure we are and the rule that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub carrier: Carrier,
    /// 0..=1, comparable across candidates of one number.
    pub confidence: f32,
    /// The registry rule that matched, e.g. `SF+12/13 digits`.
    pub rule: &'static str,
}

impl Candidate {
    /// Sure enough to take without asking anyone.
    pub fn is_confident(&self) -> bool {
        self.confidence >= CONFIDENT
    }
}

/// Every carrier whose number rules match `number`, best first (ties in registry order).
/// Empty when no rule matches.
pub fn detect(number: &TrackingNumber) -> Vec<Candidate> {
    let n = number.as_str();
    let mut found: Vec<Candidate> = Vec::new();
    for info in CARRIERS {
        let best = info
            .rules
            .iter()
            .filter(|r| matches(&r.pattern, n))
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence));
        let Some(rule) = best else { continue };
        // Registry codes are valid carrier codes (tested in carriers.rs); skip rather than panic.
        let Ok(carrier) = Carrier::parse(info.code) else {
            continue;
        };
        found.push(Candidate {
            carrier,
            confidence: rule.confidence,
            rule: rule.name,
        });
    }
    let total: f32 = found.iter().map(|c| c.confidence).sum();
    if total > 1.0 {
        for c in &mut found {
            c.confidence /= total;
        }
    }
    // Stable sort: equal confidences keep registry order.
    found.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    found
}

/// The confident candidate carriers for `number`, most likely first. Empty when unsure: the
/// caller must name the carrier (or ask a provider).
pub fn detect_carrier(number: &TrackingNumber) -> Vec<Carrier> {
    detect(number)
        .into_iter()
        .filter(Candidate::is_confident)
        .map(|c| c.carrier)
        .collect()
}

fn matches(pattern: &Pattern, n: &str) -> bool {
    match *pattern {
        Pattern::Digits { prefixes, min, max } => {
            (min..=max).contains(&n.len())
                && prefixes.iter().any(|p| {
                    n.strip_prefix(p)
                        .is_some_and(|rest| !rest.is_empty() && all_digits(rest))
                })
        }
        Pattern::PrefixAlnum { prefix, min, max } => {
            let Some(rest) = n.strip_prefix(prefix) else {
                return false;
            };
            let trailing_digits = rest.bytes().rev().take_while(u8::is_ascii_digit).count();
            (min..=max).contains(&n.len())
                && rest.bytes().all(|b| b.is_ascii_alphanumeric())
                && trailing_digits >= 8
        }
        Pattern::S10Cn { first, except } => {
            let Some(&lead) = n.as_bytes().first() else {
                return false;
            };
            let lead = char::from(lead);
            is_upu_s10_cn(n) && (first.is_empty() || first.contains(lead)) && !except.contains(lead)
        }
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `AA123456785CN`: two letters, eight serial digits, a mod-11 check digit, `CN`.
fn is_upu_s10_cn(n: &str) -> bool {
    let b = n.as_bytes();
    if b.len() != 13 || !n.ends_with("CN") {
        return false;
    }
    if !b[..2].iter().all(u8::is_ascii_uppercase) || !b[2..11].iter().all(u8::is_ascii_digit) {
        return false;
    }
    const WEIGHTS: [u32; 8] = [8, 6, 4, 2, 3, 5, 9, 7];
    let sum: u32 = b[2..10]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = match 11 - sum % 11 {
        10 => 0,
        11 => 5,
        c => c,
    };
    u32::from(b[10] - b'0') == check
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn confident(n: &str) -> Vec<String> {
        detect_carrier(&TrackingNumber::parse(n).unwrap())
            .into_iter()
            .map(String::from)
            .collect()
    }

    fn ranked(n: &str) -> Vec<(String, f32)> {
        detect(&TrackingNumber::parse(n).unwrap())
            .into_iter()
            .map(|c| (c.carrier.to_string(), c.confidence))
            .collect()
    }

    #[test]
    fn owned_shapes_name_their_carrier_confidently() {
        let table: &[(&str, &str)] = &[
            ("SF1234567890123", "SF"),
            ("sf123456789012", "SF"),
            ("JDV000123456789", "JD"),
            ("JDX001234567890", "JD"),
            ("JDVA01234567890", "JD"),
            ("JD0012345678901", "JD"),
            ("YT1000000000001", "YTO"),
            ("JT3000000000001", "JTSD"),
            ("DPK200000000001", "DBL"),
            // S10 check digit of 47312482: 4*8+7*6+3*4+1*2+2*3+4*5+8*9+2*7 = 200 → 11-2 = 9.
            ("EA473124829CN", "EMS"),
            ("CP473124829CN", "YZPY"),
            ("RR100000003CN", "YZPY"),
        ];
        for (number, want) in table {
            assert_eq!(confident(number), vec![want.to_string()], "{number}");
            let top = &detect(&TrackingNumber::parse(number).unwrap())[0];
            assert!(
                top.is_confident() && !top.rule.is_empty(),
                "{number}: {top:?}"
            );
        }
        // The runner-up of an S10 number is the other postal brand, not confident.
        let r = ranked("EA473124829CN");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].0, "YZPY");
        assert!(r[1].1 < CONFIDENT);
    }

    #[test]
    fn unsure_numbers_are_not_guessed() {
        for number in [
            // All digits: ZTO, STO, Yunda, Best… share these shapes.
            "780000000000003",
            "773000000000001",
            "4300000000001",
            "1045338392499",
            "9893442769997",
            "268012345678",
            // Right prefix, wrong length or alphabet.
            "SF12345",
            "SF12345678901234",
            "YT100000000000",
            "YTA000000000001",
            "JT30000000000011",
            "JD12345",
            "JDVABCDEFGHIJK",
            "DPK1234",
            // S10 shape with a wrong check digit, or not issued in China.
            "EA473124828CN",
            "EA473124829US",
        ] {
            assert_eq!(confident(number), Vec::<String>::new(), "{number}");
        }
    }

    #[test]
    fn numeric_shapes_are_ranked_but_never_confident() {
        let cases: &[(&str, &str, usize)] = &[
            // (number, expected top-1, expected number of candidates)
            ("773000000000001", "STO", 2), // 15 digits 77…: STO, then ZTO's 7…
            ("780000000000003", "ZTO", 1),
            ("75312345678901", "ZTO", 1),
            ("4300000000001", "YD", 1),
            ("3967950525457", "YD", 1), // Kdniao's own 2002 example answer: YD
            ("462012345678901", "YD", 1),
            ("1045338392499", "EMS", 2), // EMS, then Yunda's 10…
            ("9893442769997", "YZPY", 2),
            ("268012345678", "STO", 3), // STO, ZTO (2…), old SF
            ("6012345678", "YTO", 1),
        ];
        for (number, top, count) in cases {
            let r = ranked(number);
            assert_eq!(r.len(), *count, "{number}: {r:?}");
            assert_eq!(r[0].0, *top, "{number}: {r:?}");
            assert!(r.iter().all(|(_, c)| *c < CONFIDENT), "{number}: {r:?}");
            assert!(r.windows(2).all(|w| w[0].1 >= w[1].1), "{number}: {r:?}");
            let total: f32 = r.iter().map(|(_, c)| c).sum();
            assert!(total <= 1.0 + 1e-5, "{number}: {r:?}");
        }
        assert!(ranked("ZZ12345678").is_empty());
        assert!(ranked("12345678").is_empty());
    }

    #[test]
    fn s10_check_digit_special_cases() {
        // Sum 00000000 → 0 → 11 - 0 = 11 → check digit 5.
        assert!(is_upu_s10_cn("EE000000005CN"));
        assert!(!is_upu_s10_cn("EE000000000CN"));
        // 10000000: 8 → 11 - 8 = 3.
        assert!(is_upu_s10_cn("RR100000003CN"));
        // 00000010: 9*1=9 → 2; 10000001 → 8+7=15 → 15%11=4 → 7.
        assert!(is_upu_s10_cn("RR000000102CN"));
        assert!(is_upu_s10_cn("RR100000017CN"));
        // A sum ≡ 1 (mod 11) gives 10 → check digit 0: 00060000 → 2*6 = 12.
        assert!(is_upu_s10_cn("RR000600000CN"));
        assert!(!is_upu_s10_cn("RR000600001CN"));
    }

    /// `CARRIER NUMBER` lines; `#` starts a comment.
    const LABELLED: &str = include_str!("../../tests/fixtures/carrier_numbers.txt");

    #[derive(Default)]
    struct Tally {
        total: u32,
        top1: u32,
        unsure: u32,
        confident_wrong: Vec<String>,
    }

    /// Top-1 accuracy and "unsure" rate per carrier over the labelled numbers; run with
    /// `--nocapture` to see the table. Every confident answer must be right.
    #[test]
    fn labelled_numbers_accuracy() {
        let mut per: BTreeMap<String, Tally> = BTreeMap::new();
        for (i, line) in LABELLED.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (label, number) = line
                .split_once(char::is_whitespace)
                .unwrap_or_else(|| panic!("line {}: `{line}` is not CARRIER NUMBER", i + 1));
            let label = label.trim();
            assert!(
                crate::domain::carriers::by_code(label).is_some(),
                "line {}: unknown carrier {label}",
                i + 1
            );
            let number = TrackingNumber::parse(number.trim())
                .unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
            let ranked = detect(&number);
            let t = per.entry(label.to_string()).or_default();
            t.total += 1;
            if ranked.first().is_some_and(|c| c.carrier.as_str() == label) {
                t.top1 += 1;
            }
            match detect_carrier(&number).first() {
                None => t.unsure += 1,
                Some(c) if c.as_str() != label => {
                    t.confident_wrong.push(format!("{label} {number} → {c}"))
                }
                Some(_) => {}
            }
        }

        println!("carrier  numbers  top-1   unsure");
        let (mut total, mut top1, mut unsure) = (0, 0, 0);
        for (c, t) in &per {
            println!(
                "{c:<8} {:>7}  {:>5.1}%  {:>5.1}%",
                t.total,
                100.0 * f64::from(t.top1) / f64::from(t.total),
                100.0 * f64::from(t.unsure) / f64::from(t.total),
            );
            total += t.total;
            top1 += t.top1;
            unsure += t.unsure;
        }
        let top1_rate = f64::from(top1) / f64::from(total);
        println!(
            "all      {total:>7}  {:>5.1}%  {:>5.1}%",
            100.0 * top1_rate,
            100.0 * f64::from(unsure) / f64::from(total)
        );

        let wrong: Vec<&String> = per.values().flat_map(|t| &t.confident_wrong).collect();
        assert!(wrong.is_empty(), "confident wrong answers: {wrong:?}");
        for code in [
            "SF", "JD", "EMS", "YZPY", "YTO", "ZTO", "STO", "YD", "JTSD", "DBL", "HTKY",
        ] {
            let n = per.get(code).map_or(0, |t| t.total);
            assert!(n >= 10, "{code}: only {n} labelled numbers");
        }
        // Carriers whose every format is a letter prefix: always confidently right.
        for code in ["JD", "JTSD", "DBL"] {
            let t = &per[code];
            assert_eq!((t.top1, t.unsure), (t.total, 0), "{code}");
        }
        // Set from the measurement (96.7% over 243 numbers when written): a drop means a rule
        // got worse or a new overlap appeared.
        assert!(
            top1_rate >= MIN_TOP1,
            "overall top-1 {top1_rate:.3} < {MIN_TOP1}"
        );
    }

    const MIN_TOP1: f64 = 0.95;
}
