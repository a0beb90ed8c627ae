//! The proxy with real SDK clients against a real moto.

use super::*;
use crate::moto::{sent_sms, MotoServer};
use crate::stack::sdk_config_for;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_sns::error::ProvideErrorMetadata;
use aws_sdk_sns::operation::RequestId;

fn retry(max_attempts: u32) -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(5))
}

fn sns(endpoint: &str, attempts: u32) -> aws_sdk_sns::Client {
    let cfg = aws_sdk_sns::config::Builder::from(&sdk_config_for(endpoint))
        .retry_config(retry(attempts))
        .build();
    aws_sdk_sns::Client::from_conf(cfg)
}

fn dynamo(endpoint: &str, attempts: u32) -> aws_sdk_dynamodb::Client {
    let cfg = aws_sdk_dynamodb::config::Builder::from(&sdk_config_for(endpoint))
        .retry_config(retry(attempts))
        .build();
    aws_sdk_dynamodb::Client::from_conf(cfg)
}

fn sqs(endpoint: &str, attempts: u32) -> aws_sdk_sqs::Client {
    let cfg = aws_sdk_sqs::config::Builder::from(&sdk_config_for(endpoint))
        .retry_config(retry(attempts))
        .build();
    aws_sdk_sqs::Client::from_conf(cfg)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A phone number no other test uses: `+86139` and eight digits from a fresh UUID.
fn unique_phone() -> String {
    let digits: String = uuid::Uuid::new_v4()
        .as_u128()
        .to_string()
        .chars()
        .take(8)
        .collect();
    format!("+86139{digits}")
}

async fn table(endpoint: &str) -> String {
    let name = unique("faults");
    dynamo(endpoint, 3)
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("table created on moto");
    name
}

async fn queue(endpoint: &str) -> String {
    sqs(endpoint, 3)
        .create_queue()
        .queue_name(unique("faults"))
        .send()
        .await
        .expect("queue created on moto")
        .queue_url()
        .expect("queue url")
        .to_owned()
}

fn count(p: &AwsFaultProxy, name: &str) -> u64 {
    p.counts().get(name).copied().unwrap_or(0)
}

async fn put(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
) -> Result<(), aws_sdk_dynamodb::Error> {
    client
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.to_owned()))
        .item("v", AttributeValue::N("1".to_owned()))
        .send()
        .await
        .map(|_| ())
        .map_err(aws_sdk_dynamodb::Error::from)
}

async fn stored(moto: &str, table: &str, pk: &str) -> bool {
    dynamo(moto, 3)
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get from moto")
        .item()
        .is_some()
}

#[test]
fn calls_are_recognised_by_target_or_action() {
    let with_target = |t: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-amz-target", HeaderValue::from_str(t).expect("header"));
        h
    };
    let none = HeaderMap::new();
    for (target, want) in [
        ("DynamoDB_20120810.PutItem", Some(Call::DynamoWrite)),
        ("DynamoDB_20120810.UpdateItem", Some(Call::DynamoWrite)),
        ("DynamoDB_20120810.DeleteItem", Some(Call::DynamoWrite)),
        (
            "DynamoDB_20120810.TransactWriteItems",
            Some(Call::DynamoWrite),
        ),
        ("DynamoDB_20120810.BatchWriteItem", Some(Call::DynamoWrite)),
        ("DynamoDB_20120810.GetItem", None),
        ("DynamoDB_20120810.Query", None),
        ("AmazonSQS.SendMessage", Some(Call::Sqs)),
        ("AmazonSQS.ReceiveMessage", Some(Call::Sqs)),
        ("AmazonSQS.DeleteMessageBatch", Some(Call::Sqs)),
        ("AmazonSQS.CreateQueue", None),
        (
            "DynamoDBStreams_20120810.GetRecords",
            Some(Call::StreamsRead),
        ),
        ("DynamoDBStreams_20120810.GetShardIterator", None),
        ("garbage", None),
    ] {
        assert_eq!(classify(&with_target(target), b""), want, "{target}");
    }
    assert_eq!(
        classify(&none, b"Action=Publish&Version=2010-03-31&Message=hi"),
        Some(Call::SnsPublish)
    );
    assert_eq!(
        classify(&none, b"Version=2010-03-31&Action=Publish"),
        Some(Call::SnsPublish)
    );
    assert_eq!(
        classify(&none, b"Action=PublishBatch&Version=2010-03-31"),
        None
    );
    assert_eq!(classify(&none, b"Action=CreateTopic&Name=Publish"), None);
}

#[tokio::test]
async fn sns_throttling_is_reported_as_throttling_and_retried_by_the_sdk() {
    let moto = MotoServer::shared().await.expect("moto");
    let proxy = AwsFaultProxy::start(
        &moto.endpoint(),
        AwsFaultPlan {
            seed: 1,
            sns_publish_throttle: 1.0,
            ..AwsFaultPlan::default()
        },
    )
    .await
    .expect("proxy");
    let phone = unique_phone();

    // One attempt: the SDK surfaces SNS's own code and message.
    let err = sns(&proxy.endpoint(), 1)
        .publish()
        .phone_number(&phone)
        .message("throttled once")
        .send()
        .await
        .expect_err("throttled");
    let service = err
        .as_service_error()
        .expect("a service error, not transport");
    assert_eq!(service.code(), Some("Throttling"));
    assert_eq!(service.message(), Some("Rate exceeded"));
    assert!(service.request_id().is_some_and(|id| id.len() == 36));
    assert_eq!(count(&proxy, "sns.publish.throttle"), 1);

    // Three attempts: the standard retry classifies `Throttling` as retryable and tries again.
    let err = sns(&proxy.endpoint(), 3)
        .publish()
        .phone_number(&phone)
        .message("throttled thrice")
        .send()
        .await
        .expect_err("still throttled");
    assert_eq!(err.code(), Some("Throttling"));
    assert_eq!(count(&proxy, "sns.publish.throttle"), 4);
    assert_eq!(count(&proxy, "sns.publish.calls"), 4);
    assert_eq!(count(&proxy, "forwarded"), 0);

    // Nothing reached moto.
    let sent = sent_sms(&moto.endpoint()).await.expect("sms");
    assert!(sent.iter().all(|s| s.phone_number != phone), "{sent:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn with_zero_shares_everything_passes_through() {
    let moto = MotoServer::shared().await.expect("moto");
    let proxy = AwsFaultProxy::start(&moto.endpoint(), AwsFaultPlan::default())
        .await
        .expect("proxy");
    let ep = proxy.endpoint();

    // DynamoDB through the proxy, read back from moto and through the proxy.
    let t = table(&ep).await;
    put(&dynamo(&ep, 1), &t, "a").await.expect("put");
    assert!(stored(&moto.endpoint(), &t, "a").await);
    let got = dynamo(&ep, 1)
        .get_item()
        .table_name(&t)
        .key("pk", AttributeValue::S("a".into()))
        .send()
        .await
        .expect("get");
    assert_eq!(
        got.item().and_then(|i| i.get("v")),
        Some(&AttributeValue::N("1".into()))
    );

    // SQS send and receive.
    let q = queue(&ep).await;
    let client = sqs(&ep, 1);
    client
        .send_message()
        .queue_url(&q)
        .message_body("hello through the proxy")
        .send()
        .await
        .expect("send");
    let received = client
        .receive_message()
        .queue_url(&q)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    let bodies: Vec<&str> = received
        .messages()
        .iter()
        .filter_map(|m| m.body())
        .collect();
    assert_eq!(bodies, vec!["hello through the proxy"]);

    // SNS to a phone, as moto recorded it.
    let phone = unique_phone();
    let id = sns(&ep, 1)
        .publish()
        .phone_number(&phone)
        .message("【parcelwatch】passed through")
        .send()
        .await
        .expect("publish")
        .message_id()
        .expect("id")
        .to_owned();
    let sent: Vec<_> = sent_sms(&moto.endpoint())
        .await
        .expect("sms")
        .into_iter()
        .filter(|s| s.phone_number == phone)
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].message, "【parcelwatch】passed through");
    assert_eq!(sent[0].message_id, id);

    let counts = proxy.counts();
    for fault in [
        "sns.publish.throttle",
        "dynamodb.write.throttle",
        "dynamodb.write.lost_response",
        "sqs.error",
    ] {
        assert!(!counts.contains_key(fault), "{counts:?}");
    }
    assert_eq!(counts.get("dynamodb.write.calls"), Some(&1));
    assert_eq!(counts.get("sqs.calls"), Some(&2));
    assert_eq!(counts.get("sns.publish.calls"), Some(&1));
    // create_table, put, get, create_queue, send, receive, publish.
    assert_eq!(counts.get("forwarded"), Some(&7));
    proxy.shutdown().await;
}

#[tokio::test]
async fn lost_responses_store_the_write_yet_report_an_error() {
    let moto = MotoServer::shared().await.expect("moto");
    let t = table(&moto.endpoint()).await;
    let proxy = AwsFaultProxy::start(
        &moto.endpoint(),
        AwsFaultPlan {
            seed: 3,
            dynamo_write_lost_response: 1.0,
            ..AwsFaultPlan::default()
        },
    )
    .await
    .expect("proxy");
    let err = put(&dynamo(&proxy.endpoint(), 1), &t, "lost")
        .await
        .expect_err("the client sees a failure");
    assert!(
        matches!(err, aws_sdk_dynamodb::Error::InternalServerError(_)),
        "{err:?}"
    );
    assert!(
        stored(&moto.endpoint(), &t, "lost").await,
        "the write happened"
    );
    assert_eq!(count(&proxy, "dynamodb.write.lost_response"), 1);
    assert_eq!(count(&proxy, "forwarded"), 1);

    // The SDK's standard retry repeats a 500: each attempt is written again.
    let _ = put(&dynamo(&proxy.endpoint(), 2), &t, "lost-twice")
        .await
        .expect_err("still lost");
    assert_eq!(count(&proxy, "dynamodb.write.lost_response"), 3);
    assert_eq!(count(&proxy, "forwarded"), 3);
    proxy.shutdown().await;
}

#[tokio::test]
async fn throttled_writes_do_not_happen_and_are_retried() {
    let moto = MotoServer::shared().await.expect("moto");
    let t = table(&moto.endpoint()).await;
    let proxy = AwsFaultProxy::start(
        &moto.endpoint(),
        AwsFaultPlan {
            seed: 4,
            dynamo_write_throttle: 1.0,
            ..AwsFaultPlan::default()
        },
    )
    .await
    .expect("proxy");
    let err = put(&dynamo(&proxy.endpoint(), 3), &t, "throttled")
        .await
        .expect_err("throttled");
    assert!(
        matches!(
            err,
            aws_sdk_dynamodb::Error::ProvisionedThroughputExceededException(_)
        ),
        "{err:?}"
    );
    assert!(!stored(&moto.endpoint(), &t, "throttled").await);
    // Three attempts, all throttled: the SDK classified the answer as retryable.
    assert_eq!(count(&proxy, "dynamodb.write.throttle"), 3);
    assert_eq!(count(&proxy, "forwarded"), 0);

    // Zeroed at runtime, the next write goes through.
    proxy.set_plan(AwsFaultPlan::default());
    put(&dynamo(&proxy.endpoint(), 1), &t, "after")
        .await
        .expect("put");
    assert!(stored(&moto.endpoint(), &t, "after").await);
    assert_eq!(count(&proxy, "dynamodb.write.throttle"), 3);
    proxy.shutdown().await;
}

#[tokio::test]
async fn sqs_errors_send_nothing_and_repeat_by_seed() {
    let moto = MotoServer::shared().await.expect("moto");
    let plan = AwsFaultPlan {
        seed: 42,
        sqs_error: 0.5,
        ..AwsFaultPlan::default()
    };
    let mut patterns = Vec::new();
    for seed in [42, 42, 43] {
        let proxy = AwsFaultProxy::start(&moto.endpoint(), AwsFaultPlan { seed, ..plan })
            .await
            .expect("proxy");
        let q = queue(&moto.endpoint()).await;
        let client = sqs(&proxy.endpoint(), 1);
        let mut pattern = Vec::new();
        for i in 0..24 {
            let r = client
                .send_message()
                .queue_url(&q)
                .message_body(format!("m{i}"))
                .send()
                .await;
            if let Err(e) = &r {
                let service = e.as_service_error().expect("service error");
                assert_eq!(
                    aws_sdk_sqs::error::ProvideErrorMetadata::code(service),
                    Some("InternalFailure")
                );
                assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(500));
            }
            pattern.push(r.is_ok());
        }
        let failed = pattern.iter().filter(|ok| !**ok).count() as u64;
        assert_eq!(count(&proxy, "sqs.error"), failed);
        assert_eq!(count(&proxy, "sqs.calls"), 24);
        assert_eq!(count(&proxy, "forwarded"), 24 - failed);
        assert!((4..=20).contains(&failed), "{failed} of 24 failed");

        // Exactly the sends that succeeded are in the queue (read from moto directly).
        let direct = sqs(&moto.endpoint(), 3);
        let mut bodies = Vec::new();
        loop {
            let got = direct
                .receive_message()
                .queue_url(&q)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            if got.messages().is_empty() {
                break;
            }
            bodies.extend(
                got.messages()
                    .iter()
                    .filter_map(|m| m.body().map(str::to_owned)),
            );
        }
        bodies.sort();
        let mut want: Vec<String> = pattern
            .iter()
            .enumerate()
            .filter(|(_, ok)| **ok)
            .map(|(i, _)| format!("m{i}"))
            .collect();
        want.sort();
        assert_eq!(bodies, want);
        patterns.push(pattern);
        proxy.shutdown().await;
    }
    assert_eq!(patterns[0], patterns[1], "same seed, same faults");
    assert_ne!(patterns[0], patterns[2], "another seed, other faults");
}

#[tokio::test]
async fn a_dead_upstream_is_a_bad_gateway() {
    // A port nothing listens on: bind one, learn it, let it go.
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let proxy = AwsFaultProxy::start(&format!("http://127.0.0.1:{port}"), AwsFaultPlan::default())
        .await
        .expect("proxy");
    let resp = reqwest::Client::new()
        .post(proxy.endpoint())
        .body("Action=ListTopics")
        .send()
        .await
        .expect("the proxy answers");
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_GATEWAY);
    assert_eq!(count(&proxy, "upstream_failed"), 1);
    assert!(AwsFaultProxy::start("moto:5000", AwsFaultPlan::default())
        .await
        .is_err());
}
