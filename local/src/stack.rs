//! A running local AWS stack: the moto server and the resources of template.yaml created in it.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};

use crate::moto::{MotoError, MotoServer};
use crate::provision::{
    self, EventSources, PhysicalResource, ProvisionError, Template, LOCAL_REGION,
};

/// moto accepts any credentials; these only have to be present and well-formed.
const DUMMY_ACCESS_KEY: &str = "testing";
const DUMMY_SECRET_KEY: &str = "testing";

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Moto(#[from] MotoError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error("template.yaml does not give the local stack its {0}")]
    Missing(String),
}

/// SDK config for a local AWS endpoint: region us-east-1, static dummy credentials and the
/// endpoint override. Nothing is read from, or written to, the process environment.
pub fn sdk_config_for(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(LOCAL_REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            DUMMY_ACCESS_KEY,
            DUMMY_SECRET_KEY,
            None,
            None,
            "parcelwatch-local",
        )))
        .endpoint_url(endpoint)
        .build()
}

/// Everything a test or the demo needs to talk to the local stack.
#[derive(Clone)]
pub struct LocalStack {
    /// `http://127.0.0.1:PORT` of the moto server.
    pub endpoint: String,
    /// SDK config pointed at `endpoint` (region, dummy credentials, endpoint override).
    pub sdk_config: aws_config::SdkConfig,
    pub table_name: String,
    pub table_stream_arn: String,
    pub tracking_queue_url: String,
    pub tracking_dlq_url: String,
    /// On-failure destination of the notifier's stream mapping.
    pub notify_failure_queue_url: String,
    pub merchant_topic_arn: String,
    /// Event-source settings, timeouts and schedules read from template.yaml.
    pub event_sources: EventSources,
    /// Binary name (`scheduler`, `tracker`, `notifier`) → its environment from template.yaml,
    /// resolved to this stack's resources. Values only AWS can supply (the Kdniao AppKey from
    /// Secrets Manager, parameters without a default) are absent: the caller adds them.
    pub function_env: BTreeMap<String, BTreeMap<String, String>>,
    /// Logical id → created resource, for anything the named fields above do not cover.
    pub resources: BTreeMap<String, PhysicalResource>,
    /// Name prefix of this stack's resources (unique per stack on one moto).
    pub prefix: String,
    /// The moto server this stack owns a share of, if it started one; it stops when the last
    /// clone of the last stack holding it is dropped.
    pub moto: Option<Arc<MotoServer>>,
}

impl std::fmt::Debug for LocalStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStack")
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .field("table_name", &self.table_name)
            .field("tracking_queue_url", &self.tracking_queue_url)
            .finish_non_exhaustive()
    }
}

impl LocalStack {
    /// Start a moto server of its own and provision template.yaml in it.
    pub async fn start() -> Result<LocalStack, StackError> {
        let moto = Arc::new(MotoServer::start().await?);
        Self::provision_on(moto).await
    }

    /// Provision a fresh resource set on this process's shared moto (started on first use):
    /// the cheap way for parallel tests to get isolated stacks.
    pub async fn start_shared() -> Result<LocalStack, StackError> {
        let moto = MotoServer::shared().await?;
        Self::provision_on(moto).await
    }

    /// Provision a fresh resource set on a moto this stack keeps alive.
    pub async fn provision_on(moto: Arc<MotoServer>) -> Result<LocalStack, StackError> {
        let mut stack = Self::provision(&moto.endpoint()).await?;
        stack.moto = Some(moto);
        Ok(stack)
    }

    /// Provision a fresh, uniquely named resource set of template.yaml on an existing moto.
    pub async fn provision(endpoint: &str) -> Result<LocalStack, StackError> {
        let template = Template::load_workspace()?;
        let sdk_config = sdk_config_for(endpoint);
        let p = provision::provision(&template, &sdk_config).await?;
        let missing = |what: &str| StackError::Missing(what.to_string());

        let queue_url = |id: &str| match p.resources.get(id) {
            Some(PhysicalResource::Queue { url, .. }) => Some(url.clone()),
            _ => None,
        };
        let tracking_id = &p.event_sources.tracker_sqs.queue;
        let tracking_queue_url = queue_url(tracking_id).ok_or_else(|| missing("tracking queue"))?;
        let tracking_dlq_url = match p.resources.get(tracking_id) {
            Some(PhysicalResource::Queue {
                dead_letter_target: Some(dlq),
                ..
            }) => queue_url(dlq),
            _ => None,
        }
        .ok_or_else(|| missing("tracking queue's dead-letter queue"))?;
        let stream = &p.event_sources.notifier_stream;
        let notify_failure_queue_url = stream
            .on_failure_queue
            .as_deref()
            .and_then(queue_url)
            .ok_or_else(|| missing("notifier's on-failure queue"))?;
        let (table_name, table_stream_arn) = match p.resources.get(&stream.table) {
            Some(PhysicalResource::Table {
                name,
                stream_arn: Some(stream_arn),
                ..
            }) => (name.clone(), stream_arn.clone()),
            _ => return Err(missing("table with a stream")),
        };
        let merchant_topic_arn = p
            .function_env
            .get("notifier")
            .and_then(|env| env.get("MERCHANT_TOPIC_ARN"))
            .cloned()
            .ok_or_else(|| missing("notifier's MERCHANT_TOPIC_ARN"))?;

        Ok(LocalStack {
            endpoint: endpoint.to_string(),
            sdk_config,
            table_name,
            table_stream_arn,
            tracking_queue_url,
            tracking_dlq_url,
            notify_failure_queue_url,
            merchant_topic_arn,
            event_sources: p.event_sources,
            function_env: p.function_env,
            resources: p.resources,
            prefix: p.prefix,
            moto: None,
        })
    }

    /// The AWS variables that point an SDK at this stack (what `aws_config::defaults` reads).
    pub fn aws_env_vars(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", LOCAL_REGION),
            ("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY),
            // Otherwise credential lookup may fall through to instance metadata and hang.
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Everything to export for running the functions against this stack outside this process
    /// (e.g. `cargo lambda watch`): the AWS variables, then every function's template
    /// environment (TABLE_NAME, DUE_SHARDS, TRACKING_QUEUE_URL, MERCHANT_TOPIC_ARN, ...), each
    /// name once. KDNIAO_EBUSINESS_ID / KDNIAO_APP_KEY are not included: they are the
    /// merchant's (or the sandbox's) to give.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut out = self.aws_env_vars();
        let mut merged: BTreeMap<&str, &str> = BTreeMap::new();
        for env in self.function_env.values() {
            for (k, v) in env {
                merged.entry(k.as_str()).or_insert(v.as_str());
            }
        }
        out.extend(
            merged
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        out
    }

    /// The environment of one function (`scheduler`, `tracker`, `notifier`) from template.yaml.
    pub fn function_env(&self, binary: &str) -> Option<&BTreeMap<String, String>> {
        self.function_env.get(binary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::ProjectionType;
    use aws_sdk_sqs::types::QueueAttributeName;
    use std::time::Instant;

    #[tokio::test]
    async fn provision_creates_what_the_template_declares() {
        let t0 = Instant::now();
        let moto = Arc::new(MotoServer::start().await.unwrap());
        let t_moto = t0.elapsed();
        let stack = LocalStack::provision_on(moto.clone()).await.unwrap();
        let t_all = t0.elapsed();
        eprintln!("moto start {t_moto:?}, start+provision {t_all:?}");

        // Table: the due-index GSI with its INCLUDE projection, and a NEW_AND_OLD_IMAGES stream.
        let ddb = aws_sdk_dynamodb::Client::new(&stack.sdk_config);
        let table = ddb
            .describe_table()
            .table_name(&stack.table_name)
            .send()
            .await
            .unwrap();
        let table = table.table().unwrap();
        assert!(stack.table_name.starts_with(&format!("{}-", stack.prefix)));
        assert_eq!(
            table.latest_stream_arn(),
            Some(stack.table_stream_arn.as_str())
        );
        assert!(stack.table_stream_arn.contains(&stack.table_name));
        assert_eq!(
            table
                .stream_specification()
                .and_then(|s| s.stream_view_type())
                .map(|v| v.as_str()),
            Some("NEW_AND_OLD_IMAGES")
        );
        let gsi = table
            .global_secondary_indexes()
            .iter()
            .find(|g| g.index_name() == Some("due-index"))
            .expect("due-index exists");
        let keys: Vec<_> = gsi
            .key_schema()
            .iter()
            .map(|k| k.attribute_name().to_string())
            .collect();
        assert_eq!(keys, vec!["due_pk", "due_sk"]);
        let proj = gsi.projection().unwrap();
        assert_eq!(proj.projection_type(), Some(&ProjectionType::Include));
        assert_eq!(proj.non_key_attributes(), ["carrier", "number", "version"]);

        // Tracking queue: visibility timeout and redrive to the DLQ, from the template.
        let sqs = aws_sdk_sqs::Client::new(&stack.sdk_config);
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&stack.tracking_queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let attrs = attrs.attributes().unwrap();
        assert_eq!(
            attrs
                .get(&QueueAttributeName::VisibilityTimeout)
                .map(String::as_str),
            Some("180")
        );
        let redrive: serde_json::Value =
            serde_json::from_str(attrs.get(&QueueAttributeName::RedrivePolicy).unwrap()).unwrap();
        let dlq_arn = match &stack.resources["TrackingDLQ"] {
            PhysicalResource::Queue { arn, url, .. } => {
                assert_eq!(url, &stack.tracking_dlq_url);
                arn.clone()
            }
            other => panic!("TrackingDLQ is {other:?}"),
        };
        assert_eq!(redrive["deadLetterTargetArn"], dlq_arn.as_str());
        assert_eq!(
            redrive["maxReceiveCount"].to_string().trim_matches('"'),
            "5"
        );
        let dlq_attrs = sqs
            .get_queue_attributes()
            .queue_url(&stack.tracking_dlq_url)
            .attribute_names(QueueAttributeName::MessageRetentionPeriod)
            .send()
            .await
            .unwrap();
        assert_eq!(
            dlq_attrs
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::MessageRetentionPeriod))
                .map(String::as_str),
            Some("1209600")
        );

        // Topic exists and is the one the notifier is told about.
        let sns = aws_sdk_sns::Client::new(&stack.sdk_config);
        let topic = sns
            .get_topic_attributes()
            .topic_arn(&stack.merchant_topic_arn)
            .send()
            .await
            .unwrap();
        assert_eq!(
            topic
                .attributes()
                .and_then(|a| a.get("DisplayName"))
                .map(String::as_str),
            Some("parcelwatch")
        );

        // Environment resolved to this stack.
        let tracker = stack.function_env("tracker").unwrap();
        assert_eq!(tracker.get("TABLE_NAME"), Some(&stack.table_name));
        assert_eq!(
            tracker.get("KDNIAO_REQUEST_TYPE").map(String::as_str),
            Some("8001")
        );
        assert_eq!(
            tracker.get("KDNIAO_ENDPOINT").map(String::as_str),
            Some("https://api.kdniao.com/Ebusiness/EbusinessOrderHandle.aspx")
        );
        assert!(
            !tracker.contains_key("KDNIAO_APP_KEY"),
            "secret reference must not leak as a value"
        );
        let scheduler = stack.function_env("scheduler").unwrap();
        assert_eq!(
            scheduler.get("TRACKING_QUEUE_URL"),
            Some(&stack.tracking_queue_url)
        );
        assert_eq!(scheduler.get("DUE_SHARDS").map(String::as_str), Some("16"));
        assert!(!stack
            .function_env("notifier")
            .unwrap()
            .contains_key("SMS_SENDER_ID"));

        let env: BTreeMap<_, _> = stack.env_vars().into_iter().collect();
        assert_eq!(env.get("AWS_ENDPOINT_URL"), Some(&moto.endpoint()));
        assert_eq!(
            env.get("MERCHANT_TOPIC_ARN"),
            Some(&stack.merchant_topic_arn)
        );
        assert_eq!(
            env.get("AWS_EC2_METADATA_DISABLED").map(String::as_str),
            Some("true")
        );

        // Event sources as the template declares them.
        assert_eq!(stack.event_sources.tracker_sqs.batch_size, 10);
        assert_eq!(
            stack.event_sources.notifier_stream.max_retry_attempts,
            Some(5)
        );
    }

    #[tokio::test]
    async fn provision_twice_on_one_moto_gives_distinct_resources() {
        let moto = MotoServer::shared().await.unwrap();
        let (a, b) = tokio::join!(
            LocalStack::provision_on(moto.clone()),
            LocalStack::provision_on(moto.clone())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a.prefix, b.prefix);
        assert_ne!(a.table_name, b.table_name);
        assert_ne!(a.tracking_queue_url, b.tracking_queue_url);
        assert_ne!(a.tracking_dlq_url, b.tracking_dlq_url);
        assert_ne!(a.merchant_topic_arn, b.merchant_topic_arn);

        // Writes to one stack's table are invisible in the other's.
        let ddb = aws_sdk_dynamodb::Client::new(&a.sdk_config);
        use aws_sdk_dynamodb::types::AttributeValue;
        ddb.put_item()
            .table_name(&a.table_name)
            .item("pk", AttributeValue::S("SHIP#SF#1".into()))
            .item("sk", AttributeValue::S("META".into()))
            .send()
            .await
            .unwrap();
        let count = |t: String| {
            let ddb = ddb.clone();
            async move { ddb.scan().table_name(t).send().await.unwrap().count() }
        };
        assert_eq!(count(a.table_name.clone()).await, 1);
        assert_eq!(count(b.table_name.clone()).await, 0);
    }

    #[tokio::test]
    async fn provision_shared_moto_is_reused_while_held() {
        let a = LocalStack::start_shared().await.unwrap();
        let b = LocalStack::start_shared().await.unwrap();
        assert_eq!(a.endpoint, b.endpoint);
        assert_ne!(a.table_name, b.table_name);
    }

    #[test]
    fn sdk_config_points_at_the_endpoint() {
        let cfg = sdk_config_for("http://127.0.0.1:5999");
        assert_eq!(cfg.endpoint_url(), Some("http://127.0.0.1:5999"));
        assert_eq!(cfg.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert!(cfg.credentials_provider().is_some());
    }
}
