//! Which carrier printed a waybill number, guessed from its shape alone.
//!
//! Deliberately conservative: only number patterns that one carrier (or one postal family) owns
//! are recognised. All-digit numbers are shared by ZTO, STO, Yunda, Best and others and are never
//! guessed: the caller must name the carrier. A wrong guess would be tracked against the wrong
//! carrier until someone noticed, which is worse than asking.

use super::ids::{Carrier, TrackingNumber};

/// Candidate carriers for `number`, most likely first. Empty when unsure.
pub fn detect_carrier(number: &TrackingNumber) -> Vec<Carrier> {
    let n = number.as_str();
    let codes: &[&str] = if let Some(rest) = n.strip_prefix("SF") {
        // SF Express: `SF` + 12 or 13 digits (SF1234567890123).
        if matches!(rest.len(), 12 | 13) && all_digits(rest) {
            &["SF"]
        } else {
            &[]
        }
    } else if let Some(rest) = n.strip_prefix("JD") {
        // JD Logistics: JDV…, JDX…, JDAZ…, JD + digits; 13-20 characters in all.
        if (13..=20).contains(&n.len()) && rest.chars().all(|c| c.is_ascii_alphanumeric()) {
            &["JD"]
        } else {
            &[]
        }
    } else if let Some(rest) = n.strip_prefix("YT") {
        // YTO Express: `YT` + 13 digits.
        if rest.len() == 13 && all_digits(rest) {
            &["YTO"]
        } else {
            &[]
        }
    } else if let Some(rest) = n.strip_prefix("JT") {
        // J&T Express: `JT` + 13 digits.
        if rest.len() == 13 && all_digits(rest) {
            &["JTSD"]
        } else {
            &[]
        }
    } else if let Some(rest) = n.strip_prefix("DPK") {
        // Deppon: `DPK` + 9-12 digits.
        if (9..=12).contains(&rest.len()) && all_digits(rest) {
            &["DBL"]
        } else {
            &[]
        }
    } else if is_upu_s10_cn(n) {
        // UPU S10 with a valid check digit, issued in China: `E?` is an EMS item, the other
        // service indicators (C parcels, R registered mail, L, V…) China Post; either may carry both.
        if n.starts_with('E') {
            &["EMS", "YZPY"]
        } else {
            &["YZPY", "EMS"]
        }
    } else {
        &[]
    };
    codes
        .iter()
        .filter_map(|c| Carrier::parse(c).ok())
        .collect()
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

    fn detect(n: &str) -> Vec<String> {
        detect_carrier(&TrackingNumber::parse(n).unwrap())
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn owned_prefixes_name_their_carrier() {
        let table: &[(&str, &[&str])] = &[
            ("SF1234567890123", &["SF"]),
            ("sf123456789012", &["SF"]),
            ("JDV000123456789", &["JD"]),
            ("JDX001234567890", &["JD"]),
            ("JD0012345678901", &["JD"]),
            ("YT1000000000001", &["YTO"]),
            ("JT3000000000001", &["JTSD"]),
            ("DPK200000000001", &["DBL"]),
            // S10 check digit of 47312482: 4*8+7*6+3*4+1*2+2*3+4*5+8*9+2*7 = 200 → 11-2 = 9.
            ("EA473124829CN", &["EMS", "YZPY"]),
            ("CP473124829CN", &["YZPY", "EMS"]),
        ];
        for (number, want) in table {
            assert_eq!(detect(number), *want, "{number}");
        }
    }

    #[test]
    fn unsure_numbers_are_not_guessed() {
        for number in [
            // All digits: ZTO, STO, Yunda, Best… share these shapes.
            "780000000000003",
            "773000000000001",
            "4300000000001",
            // Right prefix, wrong length or alphabet.
            "SF12345",
            "SF12345678901234",
            "YT100000000000",
            "YTA000000000001",
            "JT30000000000011",
            "JD12345",
            "DPK1234",
            // S10 shape with a wrong check digit, or not issued in China.
            "EA473124828CN",
            "EA473124829US",
        ] {
            assert_eq!(detect(number), Vec::<String>::new(), "{number}");
        }
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
}
