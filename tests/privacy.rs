//! No clear phone number at rest or in a log line. A full local run (parcels registered through
//! the api's HTTP front and straight into the table, orders pulled by order-sync from both
//! platforms, push mode, three simulated days, SMS through the local SNS) with every log line
//! captured as the functions write them (JSON, span fields included); then the log and every
//! item of the table are scanned for anything spelled like a mainland mobile number. The SMS
//! still reached the right numbers, read back from the local SNS: the phones were sealed on the
//! way in (KMS envelope encryption, moto's KMS) and opened only by the notifier.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Duration;
use parcelwatch::domain::order::Platform;
use parcelwatch_local::pipeline::{expected_sms, Parcel, Pipeline, PipelineOptions};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

const FW_SHOP: &str = "pw-privacy-fw";
const TOP_SHOP: &str = "pw-privacy-top";

// ---------------------------------------------------------------------------------------------
// The scanner
// ---------------------------------------------------------------------------------------------

/// Every mainland mobile number in `text`, in any of the spellings people and systems use:
/// `13812345678`, `8613812345678`, `+8613812345678`, `+86 138 1234 5678`, `138-1234-5678`. A
/// match stands alone: no digit right before or after it (a 13-digit timestamp or a tracking
/// number holding the same digits is not a phone); a spelling with separators also stands apart
/// from letters (hex ids such as UUIDs hold digit groups joined by dashes), an unseparated one
/// from hex letters (a UUID's last group can hold 11 digits in a row). Returns the digits of
/// each match.
fn find_phones(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let sep = |i: usize| matches!(b.get(i), Some(b' ' | b'-'));
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts_here = (b[i] == b'+' || b[i].is_ascii_digit()) && !(i > 0 && digit(i - 1));
        if starts_here {
            if let Some((end, digits)) = phone_at(b, i, &digit, &sep) {
                out.push(digits);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// A phone spelling starting at `start`: optional `+86`/`86` (and one separator), then
/// `1[3-9]x xxxx xxxx` with an optional single separator between the groups.
fn phone_at(
    b: &[u8],
    start: usize,
    digit: &impl Fn(usize) -> bool,
    sep: &impl Fn(usize) -> bool,
) -> Option<(usize, String)> {
    let alnum = |i: Option<usize>| {
        i.and_then(|i| b.get(i))
            .is_some_and(u8::is_ascii_alphanumeric)
    };
    let national = |mut i: usize| -> Option<(usize, String)> {
        let mut digits = String::new();
        let mut separated = false;
        for (n, group) in [3usize, 4, 4].into_iter().enumerate() {
            if n > 0 && sep(i) && digit(i + 1) {
                i += 1;
                separated = true;
            }
            for _ in 0..group {
                if !digit(i) {
                    return None;
                }
                digits.push(b[i] as char);
                i += 1;
            }
        }
        let db = digits.as_bytes();
        let mobile = db[0] == b'1' && (b'3'..=b'9').contains(&db[1]);
        // A separated spelling stands apart from letters; an unseparated one from hex letters
        // (a UUID's last group is 12 hex characters, and 11 of them can be a mobile's digits).
        let hexy = |i: Option<usize>| {
            i.and_then(|i| b.get(i))
                .is_some_and(|c| c.is_ascii_hexdigit() && !c.is_ascii_digit())
        };
        let apart = if separated {
            !(alnum(start.checked_sub(1)) || alnum(Some(i)))
        } else {
            !(hexy(start.checked_sub(1)) || hexy(Some(i)))
        };
        (mobile && !digit(i) && apart).then_some((i, digits))
    };
    let mut candidates = Vec::new();
    let mut i = start;
    if b.get(i) == Some(&b'+') {
        i += 1;
    }
    if b.get(i) == Some(&b'8') && b.get(i + 1) == Some(&b'6') {
        let mut j = i + 2;
        if sep(j) && digit(j + 1) {
            j += 1;
        }
        candidates.push(j);
    }
    if b[start] != b'+' {
        candidates.push(start);
    }
    candidates.into_iter().find_map(national)
}

/// Every string inside an attribute value, for the scanner.
fn attribute_text(v: &AttributeValue, out: &mut Vec<String>) {
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => out.push(s.clone()),
        AttributeValue::Ss(l) | AttributeValue::Ns(l) => out.extend(l.iter().cloned()),
        AttributeValue::L(l) => l.iter().for_each(|x| attribute_text(x, out)),
        AttributeValue::M(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            attribute_text(x, out)
        }),
        AttributeValue::B(blob) => out.push(String::from_utf8_lossy(blob.as_ref()).into_owned()),
        other => out.push(format!("{other:?}")),
    }
}

/// Every item of the table as (pk, sk) → the phones found in any attribute.
async fn scan_table(p: &Pipeline) -> (usize, BTreeMap<(String, String), Vec<String>>) {
    let mut items = 0;
    let mut found = BTreeMap::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = p
            .dynamo
            .scan()
            .table_name(&p.stack.table_name)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        for item in page.items() {
            items += 1;
            let mut texts = Vec::new();
            for (k, v) in item {
                texts.push(k.clone());
                attribute_text(v, &mut texts);
            }
            let phones: Vec<String> = texts.iter().flat_map(|t| find_phones(t)).collect();
            if !phones.is_empty() {
                let key = |k: &str| {
                    item.get(k)
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default()
                };
                found.insert((key("pk"), key("sk")), phones);
            }
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    (items, found)
}

#[test]
fn the_scanner_finds_every_spelling_and_nothing_else() {
    for (text, want) in [
        ("13812345678", "13812345678"),
        ("to=+8613812345678,", "13812345678"),
        ("\"8613912345678\"", "13912345678"),
        ("call +86 138 1234 5678 now", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("电话：19912345678。", "19912345678"),
        ("{\"S\":\"+86-177-0000-1111\"}", "17700001111"),
    ] {
        assert_eq!(find_phones(text), vec![want.to_string()], "{text}");
    }
    for text in [
        // Masked forms, the last four, and what the product logs and stores that is not a phone.
        "+86138****5678",
        "138****5678",
        "SealedPhone(****5678)",
        "pw1.5678.ZXBoZW1lcmFs.bm9uY2U.Y2lwaGVy",
        // A 13-digit timestamp, tracking numbers, a tid, dates and ports.
        "1764092749000",
        "SF1234567890123",
        "YT1000000000001",
        "731234567890123",
        "tid 1410072240792463390",
        "2026-11-24T06:00:00Z",
        "127.0.0.1:45123",
        // UUIDs: digit groups joined by dashes, inside hex.
        "f7e4df8b-7053-4e4b-b153-91083281a3ae",
        "00000000-0000-4000-8138-1234567890ab",
        // Seen in a run: 11 digits of a UUID's last group that read as a mobile number.
        "request_id=0f3c2a9e-8b1d-4c7e-9a2b-15895285745d",
        "message_id=5e7a1c3b-2d4f-4a6b-8c9d-18835767294f",
        "b18835767294",
        // Not a mobile prefix.
        "12812345678",
        "10012345678",
    ] {
        assert_eq!(find_phones(text), Vec::<String>::new(), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// The full run
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_clear_phone_number_in_any_log_line_nor_any_stored_item() {
    // The functions' own log format (shared/src/telemetry.rs: JSON, current span's fields), at
    // debug for the project's crates and info for the rest (production runs at info).
    let capture = Capture::default();
    let writer = capture.clone();
    let filter = tracing_subscriber::EnvFilter::new(
        "info,parcelwatch=debug,parcelwatch_local=debug,api=debug,tracker=debug,notifier=debug,\
         order_sync=debug,scheduler=debug",
    );
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(true)
        .with_target(true)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the one subscriber of this test");

    let mut p = Pipeline::start(PipelineOptions {
        seed: 41,
        push_mode: true,
        shops: vec![format!("fw199:{FW_SHOP}"), format!("top:{TOP_SHOP}")],
        ..PipelineOptions::default()
    })
    .await
    .expect("local stack starts");

    // Phones in through every door: the api's bulk registration, the table directly (as the
    // api writes), and orders pulled by order-sync.
    let (mut parcels, answer) = p
        .register_via_api(6, Duration::hours(4))
        .await
        .expect("register through the api");
    assert_eq!(answer["counts"]["created"], 6, "{answer}");
    // Demo parcels take their numbers from the seed: another seed, other waybills and phones.
    p.opts.seed += 1000;
    parcels.extend(
        p.register_demo_parcels(4, Duration::hours(4))
            .await
            .expect("demo parcels"),
    );
    let created = p.now() - Duration::hours(3);
    let orders: Vec<_> = p
        .sandbox
        .generate_orders(FW_SHOP, Platform::Fw199, 3, created)
        .into_iter()
        .chain(
            p.sandbox
                .generate_orders(TOP_SHOP, Platform::Top, 2, created),
        )
        .collect();
    let order_phones: HashSet<String> = orders
        .iter()
        .filter_map(|o| o.phone())
        .map(|ph| ph.expose().to_string())
        .collect();
    assert_eq!(order_phones.len(), orders.len(), "each order its own phone");

    p.run_until_settled(3).await.expect("run");
    let now = p.now();
    // A line the scanner must catch, logged like any other (proves the capture is scanned).
    tracing::info!(target: "privacy_probe", to = "+86 139 0000 4321", "synthetic leak");

    // (a) The log: nothing spelled like a phone but the probe.
    let lines = capture.lines();
    let mut leaks = Vec::new();
    let mut probe_found = false;
    for line in &lines {
        let phones = find_phones(line);
        if line.contains("privacy_probe") {
            probe_found = phones == ["13900004321"];
        } else if !phones.is_empty() {
            leaks.push(format!("{phones:?} in {line}"));
        }
    }
    assert!(
        probe_found,
        "the scanner catches a clear number in a log line"
    );
    assert!(
        leaks.is_empty(),
        "{} log lines carry a phone number:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    // The run did log what it did, phones masked.
    for what in [
        "registration",
        "parcel registered from order",
        "notification sent",
        "phone data key ready",
        "push applied",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(what)),
            "no `{what}` among {} lines",
            lines.len()
        );
    }
    assert!(lines.iter().any(|l| l.contains("SealedPhone(****")));

    // Secrets: no provider key, order-platform secret, push salt or merchant API key in any
    // log line either (they sign requests; a log line holding one is a leaked credential).
    let secrets = [
        parcelwatch_local::sandbox::DEFAULT_APP_KEY,
        parcelwatch_local::sandbox::orders::DEFAULT_FW199_SECRET,
        parcelwatch_local::sandbox::orders::DEFAULT_TOP_SECRET,
        parcelwatch_local::sandbox::orders::DEFAULT_TOP_SESSION,
        parcelwatch_local::sandbox::push::DEFAULT_KUAIDI100_KEY,
        parcelwatch_local::pipeline::LOCAL_KUAIDI100_SALT,
        p.api_key.as_str(),
    ];
    let secret_leaks: Vec<&String> = lines
        .iter()
        .filter(|l| secrets.iter().any(|s| l.contains(s)))
        .collect();
    assert!(
        secret_leaks.is_empty(),
        "{} log lines carry a secret:\n{:?}",
        secret_leaks.len(),
        secret_leaks
    );

    // (b) The table: no item holds a phone, and every shipment's phone is sealed.
    let (items, found) = scan_table(&p).await;
    assert!(found.is_empty(), "items holding a phone number: {found:#?}");
    let shipments = p.shipments().await.expect("shipments");
    let sealed = shipments
        .iter()
        .filter(|s| s.recipient.phone.is_some())
        .count();
    assert_eq!(sealed, shipments.len(), "every parcel has a (sealed) phone");
    assert!(shipments.len() > parcels.len(), "order parcels too");
    // ORDER# items were written (their phones sealed too).
    let order_items = p
        .dynamo
        .scan()
        .table_name(&p.stack.table_name)
        .filter_expression("begins_with(pk, :o) AND sk = :m")
        .expression_attribute_values(":o", AttributeValue::S("ORDER#".into()))
        .expression_attribute_values(":m", AttributeValue::S("META".into()))
        .send()
        .await
        .expect("scan orders");
    let with_phone = order_items
        .items()
        .iter()
        .filter(|i| {
            i.get("receiver_phone_enc")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|s| s.starts_with("pw1."))
        })
        .count();
    assert_eq!(with_phone, orders.len(), "{:?}", order_items.items());

    // A planted item with a clear number is found by the same scan.
    let probe_pk = format!("PRIVACY#{}", p.stack.prefix);
    p.dynamo
        .put_item()
        .table_name(&p.stack.table_name)
        .item("pk", AttributeValue::S(probe_pk.clone()))
        .item("sk", AttributeValue::S("PROBE".into()))
        .item(
            "nested",
            AttributeValue::M(HashMap::from([(
                "mobile".to_string(),
                AttributeValue::S("138-0000-8765".into()),
            )])),
        )
        .send()
        .await
        .expect("plant");
    let (items_with_probe, found) = scan_table(&p).await;
    assert_eq!(items_with_probe, items + 1);
    assert_eq!(
        found,
        BTreeMap::from([(
            (probe_pk.clone(), "PROBE".to_string()),
            vec!["13800008765".to_string()]
        )])
    );
    p.dynamo
        .delete_item()
        .table_name(&p.stack.table_name)
        .key("pk", AttributeValue::S(probe_pk))
        .key("sk", AttributeValue::S("PROBE".into()))
        .send()
        .await
        .expect("remove the probe");

    // (c) The SMS went to the right numbers: the sealed phones opened to them.
    let sms = p.sent_sms().await.expect("sms");
    let mut by_phone: HashMap<&str, usize> = HashMap::new();
    for m in &sms {
        *by_phone.entry(m.phone_number.as_str()).or_default() += 1;
    }
    let mut told = 0;
    for pc in &parcels {
        let expected = expected_sms(pc, now);
        told += expected;
        assert_eq!(
            by_phone.get(pc.phone.expose()).copied().unwrap_or(0),
            expected,
            "{} ({:?})",
            pc.id,
            pc.journey.kind
        );
    }
    assert!(told >= parcels.len(), "{told} SMS expected");
    // The parcels of orders: their sealed phones open to their orders' numbers, and each buyer
    // was told exactly as the simulator's truth says.
    let mut order_parcels = 0;
    for s in shipments.iter().filter(|s| {
        s.order_ref
            .as_deref()
            .is_some_and(|r| r.starts_with("fw199:") || r.starts_with("top:"))
    }) {
        let sealed = s.recipient.phone.as_ref().expect("sealed phone");
        let phone = p.notifier.vault.open(sealed).await.expect("opens");
        assert!(order_phones.contains(phone.expose()), "{}", s.id);
        let journey = p
            .sandbox
            .journey(s.id.carrier.as_str(), s.id.number.as_str())
            .expect("journey");
        let parcel = Parcel {
            id: s.id.clone(),
            phone,
            journey,
        };
        assert_eq!(
            by_phone.get(parcel.phone.expose()).copied().unwrap_or(0),
            expected_sms(&parcel, now),
            "{}",
            s.id
        );
        order_parcels += 1;
    }
    assert!(order_parcels >= 2, "{order_parcels} parcels from orders");

    // KMS: one data key per writer (api, order-sync), one Decrypt per data key in the notifier.
    assert_eq!(p.api.vault.key_service_calls(), 1);
    let order_sync = p.order_sync.as_ref().expect("order-sync ran");
    assert_eq!(order_sync.vault.key_service_calls(), 1);
    assert_eq!(p.notifier.vault.key_service_calls(), 2);
    eprintln!(
        "privacy: {} log lines, {items} items scanned; {} SMS to {} phones",
        lines.len(),
        sms.len(),
        by_phone.len()
    );
}
