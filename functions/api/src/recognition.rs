//! Finding the carrier of registration items the number rules cannot place (all-digit numbers,
//! shared by ZTO, STO, Yunda, EMS…): a provider's recognition (Kdniao 2002, Kuaidi100
//! `autonumber`) is asked, within a per-request budget.
//!
//! Decisions:
//! - The rules come first: items they place confidently never reach here (see
//!   [`crate::register::parse_item`]), so they cost no provider call.
//! - Only the provider's answer is taken, never the best low-confidence rule candidate (unlike
//!   [`parcelwatch::providers::recognize::carrier_for`], which falls back to it): a wrong carrier
//!   means a parcel that is never tracked, with nobody told; refusing asks the merchant instead.
//! - A failing provider (network, quota, refused credentials) refuses the item with a reason and
//!   leaves the other items of a bulk request alone.
//! - At most `API_MAX_RECOGNITIONS` distinct numbers are asked per request (a number repeated
//!   in one request is asked once), in item order; later unsure items are refused, so a bulk
//!   call of unknown formats cannot burn the merchant's paid 2002 quota.
//! - All recognitions of a request share [`RECOGNITION_BUDGET`], so a slow provider cannot
//!   push the request past the function's timeout (which would lose every item's answer).

use crate::register::{CarrierSource, CarrierUnsure, Item, Parsed, ParsedItem};
use futures::{stream, StreamExt};
use parcelwatch::domain::{Carrier, TrackingNumber};
use parcelwatch::providers::recognize::{resolve_carrier, Recognizer};
use parcelwatch::providers::ProviderError;
use std::time::Duration;

/// Recognitions in flight at once.
pub const RECOGNITION_CONCURRENCY: usize = 8;
/// Time all recognitions of one request may take together (the api's Lambda timeout is 10 s;
/// the writes come after).
pub const RECOGNITION_BUDGET: Duration = Duration::from_secs(5);

/// The recognizer of an api that has none (`Option<NoRecognizer>` is always `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRecognizer {}

impl Recognizer for NoRecognizer {
    fn name(&self) -> &'static str {
        match *self {}
    }

    async fn recognize(&self, _: &TrackingNumber) -> Result<Vec<Carrier>, ProviderError> {
        match *self {}
    }
}

/// How a provider's recognition is named in answers (`detected_by`) and reasons.
pub fn recognition_label(provider: &'static str) -> &'static str {
    match provider {
        "kdniao" => "kdniao-2002",
        "kuaidi100" => "kuaidi100-auto",
        other => other,
    }
}

const AMBIGUOUS: &str = "carrier required: the number's format is ambiguous and";

/// Why one recognition gave no carrier.
#[derive(Debug)]
enum Miss {
    /// The provider answered, with no carrier parcelwatch tracks.
    NotRecognized,
    Failed(ProviderError),
    TimedOut,
}

fn miss_reason(label: &str, miss: &Miss) -> String {
    match miss {
        Miss::NotRecognized => {
            format!("{AMBIGUOUS} {label} did not recognize it; send the carrier")
        }
        Miss::Failed(e) if e.is_retryable() => format!(
            "{AMBIGUOUS} recognition failed: {label} is unavailable; retry later or send the carrier"
        ),
        Miss::Failed(_) => {
            format!("{AMBIGUOUS} recognition failed: {label} refused the request; send the carrier")
        }
        Miss::TimedOut => format!(
            "{AMBIGUOUS} recognition failed: {label} did not answer in time; retry later or send the carrier"
        ),
    }
}

fn over_budget_reason(max: usize) -> String {
    format!(
        "{AMBIGUOUS} this request already used its {max} carrier recognitions; send the carrier \
         or register it in another request"
    )
}

/// Finish the items of one request: unsure carriers are recognized by `recognizer` (at most
/// `max` distinct numbers, all within `budget`) or refused. Never fails: every miss is that
/// item's reason.
pub async fn resolve_items<R: Recognizer>(
    recognizer: Option<&R>,
    max: usize,
    budget: Duration,
    items: Vec<ParsedItem>,
) -> Vec<Item> {
    let Some(recognizer) = recognizer else {
        return items
            .into_iter()
            .map(|i| i.and_then(Parsed::without_recognition))
            .collect();
    };
    let label = recognition_label(recognizer.name());

    // The distinct unsure numbers, in item order; the first `max` are asked.
    let mut unsure: Vec<TrackingNumber> = Vec::new();
    for item in &items {
        if let Ok(Parsed::CarrierUnsure(u)) = item {
            if !unsure.contains(&u.number) {
                unsure.push(u.number.clone());
            }
        }
    }
    let over_budget = unsure.len().saturating_sub(max);
    unsure.truncate(max);

    let deadline = tokio::time::Instant::now() + budget;
    // Owned numbers: a closure over `&TrackingNumber` would make the future's `Send` bound
    // higher-ranked (see the bulk registration in the handler).
    let answers: Vec<(TrackingNumber, Result<Carrier, Miss>)> = stream::iter(unsure)
        .map(|number| async move {
            let answer =
                match tokio::time::timeout_at(deadline, recognizer.recognize(&number)).await {
                    Err(_elapsed) => Err(Miss::TimedOut),
                    Ok(Err(e)) => Err(Miss::Failed(e)),
                    // No rule candidates: only a carrier the provider named is taken.
                    Ok(Ok(carriers)) => resolve_carrier(&[], &carriers).ok_or(Miss::NotRecognized),
                };
            match &answer {
                Ok(carrier) => {
                    tracing::info!(number = %number, carrier = %carrier, detected_by = label, "carrier recognized");
                }
                Err(Miss::Failed(e)) => {
                    tracing::warn!(number = %number, detected_by = label, retryable = e.is_retryable(), error = %e, "carrier recognition failed");
                }
                Err(miss) => {
                    tracing::info!(number = %number, detected_by = label, outcome = ?miss, "carrier not recognized");
                }
            }
            (number, answer)
        })
        .buffered(RECOGNITION_CONCURRENCY)
        .collect()
        .await;
    if over_budget > 0 {
        tracing::warn!(
            asked = answers.len(),
            over_budget,
            max,
            "carrier recognitions per request exhausted; unsure numbers refused"
        );
    }

    let finish = |u: CarrierUnsure| -> Item {
        match answers.iter().find(|(n, _)| *n == u.number) {
            None => Err(u.refuse(over_budget_reason(max))),
            Some((_, Ok(carrier))) => {
                Ok(u.with_carrier(carrier.clone(), CarrierSource::Recognized(label)))
            }
            Some((_, Err(miss))) => Err(u.refuse(miss_reason(label, miss))),
        }
    };
    items
        .into_iter()
        .map(|item| match item? {
            Parsed::Ready(new) => Ok(new),
            Parsed::CarrierUnsure(u) => finish(u),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{parse_registration, Registration, CARRIER_REQUIRED};

    /// Names ZTO for numbers ending in 1, nothing we track for 2, fails for the rest.
    struct Table;
    impl Recognizer for Table {
        fn name(&self) -> &'static str {
            "kuaidi100"
        }
        async fn recognize(&self, n: &TrackingNumber) -> Result<Vec<Carrier>, ProviderError> {
            match n.as_str().chars().last() {
                Some('1') => Ok(vec![
                    Carrier::parse("XYZW").unwrap(),
                    Carrier::parse("ZTO").unwrap(),
                ]),
                Some('2') => Ok(vec![Carrier::parse("XYZW").unwrap()]),
                Some('3') => Err(ProviderError::Permanent {
                    provider: "kuaidi100",
                    reason: "autonumber rejected (601): key".into(),
                }),
                _ => Err(ProviderError::Retryable {
                    provider: "kuaidi100",
                    reason: "busy".into(),
                    retry_after: None,
                }),
            }
        }
    }

    fn items(body: &str) -> Vec<ParsedItem> {
        match parse_registration(body, 500).unwrap() {
            Registration::Bulk(items) => items,
            Registration::Single(item) => vec![item],
        }
    }

    #[tokio::test]
    async fn each_miss_has_its_own_reason_and_the_label_names_the_provider() {
        let got = resolve_items(
            Some(&Table),
            50,
            RECOGNITION_BUDGET,
            items(
                r#"{"shipments":[{"number":"773000000000001"},{"number":"773000000000002"},
                {"number":"773000000000003"},{"number":"773000000000004"},{"number":"SF1234567890123"}]}"#,
            ),
        )
        .await;
        let zto = got[0].as_ref().unwrap();
        assert_eq!(zto.id.to_string(), "ZTO/773000000000001");
        assert_eq!(zto.carrier_source.detected_by(), Some("kuaidi100-auto"));
        let reason = |i: usize| got[i].as_ref().unwrap_err().reason.clone();
        assert_eq!(
            reason(1),
            "carrier required: the number's format is ambiguous and kuaidi100-auto did not \
             recognize it; send the carrier"
        );
        assert_eq!(
            reason(2),
            "carrier required: the number's format is ambiguous and recognition failed: \
             kuaidi100-auto refused the request; send the carrier"
        );
        assert_eq!(
            reason(3),
            "carrier required: the number's format is ambiguous and recognition failed: \
             kuaidi100-auto is unavailable; retry later or send the carrier"
        );
        assert!(!reason(3).contains("busy"), "no provider internals");
        assert_eq!(
            got[4].as_ref().unwrap().carrier_source,
            CarrierSource::Rules
        );
    }

    #[tokio::test]
    async fn without_a_recognizer_unsure_numbers_are_refused_as_before() {
        let got = resolve_items::<NoRecognizer>(
            None,
            50,
            RECOGNITION_BUDGET,
            items(r#"{"shipments":[{"number":"773000000000001"},{"number":"YT1000000000001"}]}"#),
        )
        .await;
        assert_eq!(got[0].as_ref().unwrap_err().reason, CARRIER_REQUIRED);
        assert_eq!(
            got[1].as_ref().unwrap().id.to_string(),
            "YTO/YT1000000000001"
        );
    }

    /// Never answers.
    struct Silent;
    impl Recognizer for Silent {
        fn name(&self) -> &'static str {
            "kdniao"
        }
        async fn recognize(&self, _: &TrackingNumber) -> Result<Vec<Carrier>, ProviderError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_provider_that_never_answers_costs_the_budget_not_the_request() {
        let budget = Duration::from_millis(50);
        let started = std::time::Instant::now();
        let got = resolve_items(
            Some(&Silent),
            50,
            budget,
            items(r#"{"shipments":[{"number":"773000000000001"},{"number":"YT1000000000001"}]}"#),
        )
        .await;
        let took = started.elapsed();
        assert!(took >= budget && took < Duration::from_secs(2), "{took:?}");
        assert_eq!(
            got[0].as_ref().unwrap_err().reason,
            "carrier required: the number's format is ambiguous and recognition failed: \
             kdniao-2002 did not answer in time; retry later or send the carrier"
        );
        assert!(got[1].is_ok());
    }
}
