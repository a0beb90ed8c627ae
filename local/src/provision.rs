//! Creates in moto exactly what template.yaml declares, through the real AWS SDK.
//!
//! template.yaml is the only list of resources: tables, queues and topics are read from it and
//! created with their key schema, indexes, stream, visibility timeout, retention and redrive
//! policy; the event-source settings (batch sizes, retries, bisect, on-failure destination,
//! filters), timeouts and environment of each function are read from it for the local runner.
//! Functions and alarms are not created: moto runs no Lambda and the runner plays the event
//! source mappings itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ProvisionedThroughput, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::{Mapping, Value};

/// moto's region and account for everything the local stack creates.
pub const LOCAL_REGION: &str = "us-east-1";
pub const LOCAL_ACCOUNT: &str = "123456789012";

const TABLE: &str = "AWS::DynamoDB::Table";
const QUEUE: &str = "AWS::SQS::Queue";
const TOPIC: &str = "AWS::SNS::Topic";
const KEY: &str = "AWS::KMS::Key";
const ALIAS: &str = "AWS::KMS::Alias";
/// What [`provision`] creates in the local AWS endpoint.
const CREATED: [&str; 5] = [TABLE, QUEUE, TOPIC, KEY, ALIAS];
const FUNCTION: &str = "AWS::Serverless::Function";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot locate template.yaml: {0}")]
    Workspace(#[source] crate::moto::MotoError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template.yaml is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template.yaml: {0}")]
    Template(String),
    #[error("{op} for {resource} failed: {message}")]
    Aws {
        op: &'static str,
        resource: String,
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn aws_err<'a, E>(op: &'static str, resource: &'a str) -> impl FnOnce(E) -> ProvisionError + 'a
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| ProvisionError::Aws {
        op,
        resource: resource.to_string(),
        message: aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
        source: Box::new(e),
    }
}

fn invalid(msg: impl Into<String>) -> ProvisionError {
    ProvisionError::Template(msg.into())
}

// ------------------------------------------------------------------------------------------
// Template access
// ------------------------------------------------------------------------------------------

/// A parsed template.yaml. Short-form tags (`!Ref`, `!GetAtt`, `!Sub`) arrive from serde_yaml as
/// `Value::Tagged`; long forms (`{"Fn::GetAtt": ...}`) as one-key mappings. Both are understood.
#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, ProvisionError> {
        let root: Value = serde_yaml::from_str(text)?;
        if !root.get("Resources").is_some_and(Value::is_mapping) {
            return Err(invalid("no Resources mapping"));
        }
        Ok(Template { root })
    }

    pub fn load(path: &Path) -> Result<Template, ProvisionError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProvisionError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Template::parse(&text)
    }

    /// The workspace's template.yaml (see [`crate::moto::workspace_root`]).
    pub fn load_workspace() -> Result<Template, ProvisionError> {
        let root = crate::moto::workspace_root().map_err(ProvisionError::Workspace)?;
        Template::load(&root.join("template.yaml"))
    }

    /// `(logical id, type, properties)` of every resource; missing Properties read as Null.
    fn resources(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        static NULL: Value = Value::Null;
        self.root
            .get("Resources")
            .and_then(Value::as_mapping)
            .into_iter()
            .flat_map(Mapping::iter)
            .filter_map(|(id, res)| {
                let id = id.as_str()?;
                let ty = res.get("Type")?.as_str()?;
                Some((id, ty, res.get("Properties").unwrap_or(&NULL)))
            })
    }

    fn resource(&self, id: &str) -> Option<&Value> {
        self.root.get("Resources")?.get(id)
    }

    fn resource_type(&self, id: &str) -> Option<&str> {
        self.resource(id)?.get("Type")?.as_str()
    }

    fn parameter_default(&self, name: &str) -> Option<&Value> {
        self.root.get("Parameters")?.get(name)?.get("Default")
    }

    fn global_function(&self, key: &str) -> Option<&Value> {
        self.root.get("Globals")?.get("Function")?.get(key)
    }

    /// The event sources, timeouts and binaries of the functions, as plain values.
    pub fn event_sources(&self) -> Result<EventSources, ProvisionError> {
        let mut sqs_sources = Vec::new();
        let mut stream_sources = Vec::new();
        let mut schedules = Vec::new();
        let mut function_timeouts = HashMap::new();

        for (id, ty, props) in self.resources() {
            if ty != FUNCTION {
                continue;
            }
            let function = self.function_binary(id);
            // SAM's default when neither the function nor Globals sets one.
            let timeout = props
                .get("Timeout")
                .or_else(|| self.global_function("Timeout"))
                .map(|v| as_u64(v).ok_or_else(|| invalid(format!("{id}.Timeout is not a number"))))
                .transpose()?
                .unwrap_or(3);
            function_timeouts.insert(function.clone(), timeout);

            let Some(events) = props.get("Events").and_then(Value::as_mapping) else {
                continue;
            };
            for (name, event) in events {
                let name = name.as_str().unwrap_or_default();
                let at = format!("{id}.Events.{name}");
                let ev = event.get("Properties").unwrap_or(&Value::Null);
                match event.get("Type").and_then(Value::as_str) {
                    Some("SQS") => sqs_sources.push(SqsSourceSpec {
                        function: function.clone(),
                        queue: single_ref(ev.get("Queue"), &at)?,
                        batch_size: opt_u64(ev, "BatchSize", &at)?.unwrap_or(10) as u32,
                        max_batching_window_s: opt_u64(ev, "MaximumBatchingWindowInSeconds", &at)?
                            .unwrap_or(0) as u32,
                        report_batch_item_failures: reports_item_failures(ev),
                        max_concurrency: ev
                            .get("ScalingConfig")
                            .map(|s| opt_u64(s, "MaximumConcurrency", &at))
                            .transpose()?
                            .flatten()
                            .map(|n| n as u32),
                    }),
                    Some("DynamoDB") => stream_sources.push(StreamSourceSpec {
                        function: function.clone(),
                        table: single_ref(ev.get("Stream"), &at)?,
                        starting_position: ev
                            .get("StartingPosition")
                            .and_then(Value::as_str)
                            .ok_or_else(|| invalid(format!("{at}: StartingPosition is required")))?
                            .to_string(),
                        batch_size: opt_u64(ev, "BatchSize", &at)?.unwrap_or(100) as u32,
                        max_batching_window_s: opt_u64(ev, "MaximumBatchingWindowInSeconds", &at)?
                            .unwrap_or(0) as u32,
                        max_retry_attempts: opt_count(ev, "MaximumRetryAttempts", &at)?
                            .map(|n| n as u32),
                        max_record_age_s: opt_count(ev, "MaximumRecordAgeInSeconds", &at)?,
                        bisect_on_error: ev
                            .get("BisectBatchOnFunctionError")
                            .map(|v| {
                                as_bool(v)
                                    .ok_or_else(|| invalid(format!("{at}: bisect is not a bool")))
                            })
                            .transpose()?
                            .unwrap_or(false),
                        on_failure_queue: ev
                            .get("DestinationConfig")
                            .and_then(|d| d.get("OnFailure"))
                            .map(|d| single_ref(d.get("Destination"), &at))
                            .transpose()?,
                        report_batch_item_failures: reports_item_failures(ev),
                        filter_patterns: filter_patterns(ev, &at)?,
                    }),
                    Some("Schedule") | Some("ScheduleV2") => schedules.push(ScheduleSpec {
                        function: function.clone(),
                        expression: ev
                            .get("Schedule")
                            .or_else(|| ev.get("ScheduleExpression"))
                            .and_then(Value::as_str)
                            .ok_or_else(|| invalid(format!("{at}: no schedule expression")))?
                            .to_string(),
                    }),
                    _ => {}
                }
            }
        }

        let tracker_sqs = sqs_sources
            .iter()
            .find(|s| s.function == "tracker")
            .cloned()
            .ok_or_else(|| invalid("the tracker function has no SQS event"))?;
        let notifier_stream = stream_sources
            .iter()
            .find(|s| s.function == "notifier")
            .cloned()
            .ok_or_else(|| invalid("the notifier function has no DynamoDB event"))?;
        Ok(EventSources {
            tracker_sqs,
            notifier_stream,
            sqs_sources,
            stream_sources,
            schedules,
            function_timeouts,
        })
    }

    /// The cargo binary a function is built from (`Metadata.BuildProperties.Binary`), else its
    /// logical id.
    fn function_binary(&self, id: &str) -> String {
        self.resource(id)
            .and_then(|r| {
                r.get("Metadata")?
                    .get("BuildProperties")?
                    .get("Binary")?
                    .as_str()
            })
            .unwrap_or(id)
            .to_string()
    }

    /// Each function's environment (Globals merged with its own), resolved against the created
    /// resources. Values that only exist in AWS (Secrets Manager dynamic references, parameters
    /// without a default) are left out for the caller to supply, and so are empty values, which
    /// the functions' config treats as unset.
    pub fn function_env(
        &self,
        physical: &BTreeMap<String, PhysicalResource>,
        stack_name: &str,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        let resolver = Resolver {
            template: self,
            physical,
            stack_name,
        };
        let vars_of = |v: Option<&Value>| -> Vec<(String, Value)> {
            v.and_then(|e| e.get("Variables"))
                .and_then(Value::as_mapping)
                .into_iter()
                .flat_map(Mapping::iter)
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                .collect()
        };
        let globals = vars_of(self.global_function("Environment"));
        let mut out = BTreeMap::new();
        for (id, ty, props) in self.resources() {
            if ty != FUNCTION {
                continue;
            }
            let mut env = BTreeMap::new();
            for (name, value) in globals
                .iter()
                .cloned()
                .chain(vars_of(props.get("Environment")))
            {
                match resolver.scalar(&value) {
                    Ok(v) if !v.is_empty() && !v.contains("{{resolve:") => {
                        env.insert(name, v);
                    }
                    // A function's own value overrides (and may unset) the global one.
                    _ => {
                        env.remove(&name);
                    }
                }
            }
            out.insert(self.function_binary(id), env);
        }
        out
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn opt_u64(v: &Value, key: &str, at: &str) -> Result<Option<u64>, ProvisionError> {
    v.get(key)
        .map(|n| {
            as_u64(n).ok_or_else(|| invalid(format!("{at}: {key} is not a non-negative number")))
        })
        .transpose()
}

/// A count where AWS reads -1 as "unlimited": `None` then.
fn opt_count(v: &Value, key: &str, at: &str) -> Result<Option<u64>, ProvisionError> {
    match v.get(key) {
        Some(Value::Number(n)) if n.as_i64() == Some(-1) => Ok(None),
        _ => opt_u64(v, key, at),
    }
}

fn reports_item_failures(ev: &Value) -> bool {
    ev.get("FunctionResponseTypes")
        .and_then(Value::as_sequence)
        .is_some_and(|s| {
            s.iter()
                .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
        })
}

fn filter_patterns(ev: &Value, at: &str) -> Result<Vec<String>, ProvisionError> {
    let Some(filters) = ev.get("FilterCriteria").and_then(|f| f.get("Filters")) else {
        return Ok(Vec::new());
    };
    let filters = filters
        .as_sequence()
        .ok_or_else(|| invalid(format!("{at}: FilterCriteria.Filters is not a list")))?;
    filters
        .iter()
        .map(|f| match f.get("Pattern") {
            Some(Value::String(s)) => {
                serde_json::from_str::<serde_json::Value>(s)
                    .map_err(|e| invalid(format!("{at}: filter pattern is not JSON: {e}")))?;
                Ok(s.clone())
            }
            _ => Err(invalid(format!("{at}: filter without a Pattern string"))),
        })
        .collect()
}

/// `(function name without "Fn::", argument)` if `v` is an intrinsic function call.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            Some((tag.trim_start_matches('!').to_string(), &t.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" {
                Some(("Ref".into(), arg))
            } else {
                k.strip_prefix("Fn::").map(|f| (f.to_string(), arg))
            }
        }
        _ => None,
    }
}

/// `X.Arn` or `[X, Arn]` → `(X, Arn)`.
fn get_att_parts(arg: &Value) -> Option<(String, String)> {
    match arg {
        Value::String(s) => {
            let (id, attr) = s.split_once('.')?;
            Some((id.to_string(), attr.to_string()))
        }
        Value::Sequence(seq) if seq.len() == 2 => {
            Some((seq[0].as_str()?.to_string(), seq[1].as_str()?.to_string()))
        }
        _ => None,
    }
}

/// The `${...}` names of a `Fn::Sub` string (`${!Literal}` escapes are skipped).
fn sub_vars(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') {
            out.push(name);
        }
        rest = &after[end + 1..];
    }
    out
}

/// Logical ids referenced (Ref, GetAtt, Sub variables) anywhere inside `v`.
fn referenced_ids(v: &Value, out: &mut BTreeSet<String>) {
    if let Some((f, arg)) = intrinsic(v) {
        match f.as_str() {
            "Ref" => {
                if let Some(id) = arg.as_str() {
                    out.insert(id.to_string());
                }
                return;
            }
            "GetAtt" => {
                if let Some((id, _)) = get_att_parts(arg) {
                    out.insert(id);
                }
                return;
            }
            "Sub" => {
                let (text, vars) = match arg {
                    Value::Sequence(seq) => (seq.first().and_then(Value::as_str), seq.get(1)),
                    other => (other.as_str(), None),
                };
                let locals: BTreeSet<String> = vars
                    .and_then(Value::as_mapping)
                    .into_iter()
                    .flat_map(Mapping::keys)
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect();
                for name in text.map(sub_vars).unwrap_or_default() {
                    let id = name.split('.').next().unwrap_or(name);
                    if !locals.contains(id) {
                        out.insert(id.to_string());
                    }
                }
                if let Some(vars) = vars {
                    referenced_ids(vars, out);
                }
                return;
            }
            _ => {}
        }
    }
    match v {
        Value::Sequence(seq) => seq.iter().for_each(|x| referenced_ids(x, out)),
        Value::Mapping(m) => m.values().for_each(|x| referenced_ids(x, out)),
        Value::Tagged(t) => referenced_ids(&t.value, out),
        _ => {}
    }
}

/// The one logical id a property refers to (`!GetAtt TrackingQueue.Arn` → `TrackingQueue`).
fn single_ref(v: Option<&Value>, at: &str) -> Result<String, ProvisionError> {
    let mut ids = BTreeSet::new();
    if let Some(v) = v {
        referenced_ids(v, &mut ids);
    }
    let mut it = ids.into_iter();
    match (it.next(), it.next()) {
        (Some(id), None) => Ok(id),
        _ => Err(invalid(format!(
            "{at}: expected a reference to exactly one resource"
        ))),
    }
}

// ------------------------------------------------------------------------------------------
// Resolution against created resources
// ------------------------------------------------------------------------------------------

/// A resource created in moto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhysicalResource {
    Table {
        name: String,
        arn: String,
        stream_arn: Option<String>,
    },
    Queue {
        name: String,
        url: String,
        arn: String,
        /// Logical id of the redrive target, if any.
        dead_letter_target: Option<String>,
    },
    Topic {
        name: String,
        arn: String,
    },
    Key {
        key_id: String,
        arn: String,
    },
    Alias {
        name: String,
    },
}

impl PhysicalResource {
    /// What `!Ref` yields in CloudFormation: table name, queue URL, topic ARN.
    pub fn reference(&self) -> &str {
        match self {
            PhysicalResource::Table { name, .. } => name,
            PhysicalResource::Queue { url, .. } => url,
            PhysicalResource::Topic { arn, .. } => arn,
            PhysicalResource::Key { key_id, .. } => key_id,
            PhysicalResource::Alias { name } => name,
        }
    }

    /// What `!GetAtt X.attr` yields.
    pub fn attribute(&self, attr: &str) -> Option<&str> {
        match (self, attr) {
            (PhysicalResource::Table { arn, .. }, "Arn") => Some(arn),
            (PhysicalResource::Table { stream_arn, .. }, "StreamArn") => stream_arn.as_deref(),
            (PhysicalResource::Queue { arn, .. }, "Arn") => Some(arn),
            (PhysicalResource::Queue { name, .. }, "QueueName") => Some(name),
            (PhysicalResource::Queue { url, .. }, "QueueUrl") => Some(url),
            (PhysicalResource::Topic { arn, .. }, "TopicArn") => Some(arn),
            (PhysicalResource::Topic { name, .. }, "TopicName") => Some(name),
            (PhysicalResource::Key { arn, .. }, "Arn") => Some(arn),
            (PhysicalResource::Key { key_id, .. }, "KeyId") => Some(key_id),
            _ => None,
        }
    }
}

struct Resolver<'a> {
    template: &'a Template,
    physical: &'a BTreeMap<String, PhysicalResource>,
    stack_name: &'a str,
}

impl Resolver<'_> {
    /// A scalar value with intrinsics resolved; `Err(reason)` when it cannot be known locally.
    fn scalar(&self, v: &Value) -> Result<String, String> {
        if let Some((f, arg)) = intrinsic(v) {
            return match f.as_str() {
                "Ref" => self.reference(arg.as_str().ok_or("Ref of a non-string")?),
                "GetAtt" => {
                    let (id, attr) = get_att_parts(arg).ok_or("malformed GetAtt")?;
                    self.attribute(&id, &attr)
                }
                "Sub" => match arg {
                    Value::Sequence(seq) => {
                        let text = seq.first().and_then(Value::as_str).ok_or("malformed Sub")?;
                        self.sub(text, seq.get(1).and_then(Value::as_mapping))
                    }
                    other => self.sub(other.as_str().ok_or("malformed Sub")?, None),
                },
                "Join" => {
                    let seq = arg.as_sequence().ok_or("malformed Join")?;
                    let sep = seq
                        .first()
                        .and_then(Value::as_str)
                        .ok_or("malformed Join")?;
                    let parts = seq
                        .get(1)
                        .and_then(Value::as_sequence)
                        .ok_or("malformed Join")?;
                    let parts = parts
                        .iter()
                        .map(|p| self.scalar(p))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(parts.join(sep))
                }
                other => Err(format!("Fn::{other} is not supported locally")),
            };
        }
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err("not a scalar".into()),
        }
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        match name {
            "AWS::Region" => return Ok(LOCAL_REGION.into()),
            "AWS::AccountId" => return Ok(LOCAL_ACCOUNT.into()),
            "AWS::Partition" => return Ok("aws".into()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".into()),
            "AWS::StackName" => return Ok(self.stack_name.into()),
            _ => {}
        }
        if let Some(res) = self.physical.get(name) {
            return Ok(res.reference().to_string());
        }
        if let Some(default) = self.template.parameter_default(name) {
            return self.scalar(default);
        }
        Err(format!("{name} has no local value"))
    }

    fn attribute(&self, id: &str, attr: &str) -> Result<String, String> {
        self.physical
            .get(id)
            .and_then(|r| r.attribute(attr))
            .map(str::to_string)
            .ok_or_else(|| format!("{id}.{attr} has no local value"))
    }

    fn sub(&self, text: &str, locals: Option<&Mapping>) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or("unterminated ${ in Sub")?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(local) = locals.and_then(|m| m.get(name)) {
                out.push_str(&self.scalar(local)?);
            } else if let Some((id, attr)) = name
                .split_once('.')
                .filter(|(id, _)| !id.starts_with("AWS:"))
            {
                out.push_str(&self.attribute(id, attr)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn required(&self, v: &Value, what: &str) -> Result<String, ProvisionError> {
        self.scalar(v)
            .map_err(|why| invalid(format!("{what}: {why}")))
    }
}

// ------------------------------------------------------------------------------------------
// Event sources (plain values read from the template)
// ------------------------------------------------------------------------------------------

/// An SQS event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSourceSpec {
    /// Binary name of the consuming function.
    pub function: String,
    /// Logical id of the queue.
    pub queue: String,
    pub batch_size: u32,
    pub max_batching_window_s: u32,
    pub report_batch_item_failures: bool,
    pub max_concurrency: Option<u32>,
}

/// A DynamoDB stream event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSourceSpec {
    pub function: String,
    /// Logical id of the table whose stream is read.
    pub table: String,
    /// `TRIM_HORIZON` or `LATEST`.
    pub starting_position: String,
    pub batch_size: u32,
    pub max_batching_window_s: u32,
    /// `None`: retry until the record expires (AWS's -1).
    pub max_retry_attempts: Option<u32>,
    /// `None`: no age limit (AWS's -1).
    pub max_record_age_s: Option<u64>,
    pub bisect_on_error: bool,
    /// Logical id of the on-failure destination queue.
    pub on_failure_queue: Option<String>,
    pub report_batch_item_failures: bool,
    /// Lambda event filter patterns (JSON text); a record passes if any matches.
    pub filter_patterns: Vec<String>,
}

impl StreamSourceSpec {
    /// Whether Lambda would hand `record` (a stream record as JSON, e.g. a serialized
    /// `aws_lambda_events` DynamoDB record) to the function: no filters, or any one matching.
    pub fn passes_filters(&self, record: &serde_json::Value) -> bool {
        self.filter_patterns.is_empty()
            || self.filter_patterns.iter().any(|p| {
                // Patterns were checked to be JSON when the template was read.
                serde_json::from_str(p).is_ok_and(|pattern| filter_matches(&pattern, record))
            })
    }
}

/// Lambda event filtering for one pattern: every key of the pattern must match. A nested object
/// descends; a list holds alternatives, each a literal (equality) or one of the operators
/// `prefix`, `suffix`, `equals-ignore-case`, `exists`, `anything-but`. When the event's value is
/// a list, any element may match.
pub fn filter_matches(pattern: &serde_json::Value, event: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    let Some(fields) = pattern.as_object() else {
        return false;
    };
    fields.iter().all(|(key, rule)| {
        let value = event.get(key);
        match rule {
            J::Object(_) => value.is_some_and(|v| filter_matches(rule, v)),
            J::Array(alternatives) => alternatives.iter().any(|alt| match value {
                Some(J::Array(items)) => items
                    .iter()
                    .any(|item| filter_value_matches(alt, Some(item))),
                other => filter_value_matches(alt, other),
            }),
            _ => false,
        }
    })
}

fn filter_value_matches(alt: &serde_json::Value, value: Option<&serde_json::Value>) -> bool {
    use serde_json::Value as J;
    let J::Object(op) = alt else {
        return value == Some(alt);
    };
    let Some((name, arg)) = op.iter().next().filter(|_| op.len() == 1) else {
        return false;
    };
    let text = value.and_then(J::as_str);
    match (name.as_str(), arg) {
        ("exists", J::Bool(want)) => value.is_some() == *want,
        ("prefix", J::String(p)) => text.is_some_and(|t| t.starts_with(p.as_str())),
        ("suffix", J::String(p)) => text.is_some_and(|t| t.ends_with(p.as_str())),
        ("equals-ignore-case", J::String(p)) => text.is_some_and(|t| t.eq_ignore_ascii_case(p)),
        ("anything-but", J::Array(xs)) => value.is_some_and(|v| !xs.contains(v)),
        ("anything-but", x) => value.is_some_and(|v| v != x),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub function: String,
    /// e.g. `rate(1 minute)`.
    pub expression: String,
}

/// Everything the local runner needs to play AWS's event-source mappings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSources {
    /// The SQS source of the `tracker` function.
    pub tracker_sqs: SqsSourceSpec,
    /// The DynamoDB stream source of the `notifier` function.
    pub notifier_stream: StreamSourceSpec,
    pub sqs_sources: Vec<SqsSourceSpec>,
    pub stream_sources: Vec<StreamSourceSpec>,
    pub schedules: Vec<ScheduleSpec>,
    /// Binary name → Timeout in seconds (the function's own, else Globals, else SAM's 3).
    pub function_timeouts: HashMap<String, u64>,
}

impl EventSources {
    /// The DynamoDB stream source of the function built from `binary` (e.g. `analytics`).
    pub fn stream_of(&self, binary: &str) -> Option<&StreamSourceSpec> {
        self.stream_sources.iter().find(|s| s.function == binary)
    }
}

// ------------------------------------------------------------------------------------------
// Provisioning
// ------------------------------------------------------------------------------------------

/// What [`provision`] created.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// Prefix of every physical name of this resource set (also its `AWS::StackName`).
    pub prefix: String,
    /// Logical id → created resource.
    pub resources: BTreeMap<String, PhysicalResource>,
    pub event_sources: EventSources,
    /// Binary name → resolved environment (see [`Template::function_env`]).
    pub function_env: BTreeMap<String, BTreeMap<String, String>>,
}

/// A prefix no other resource set on the same moto has: pid and a counter separate stacks of
/// this host at one time; the clock's low bits separate runs against a long-lived moto.
fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("pw-{}-{n}-{:05x}", std::process::id(), nanos & 0xf_ffff)
}

/// Create every table, queue and topic of `template` in the AWS endpoint of `sdk`, under a
/// fresh name prefix. Resources are created in waves: each wave holds those whose references
/// (e.g. a redrive policy's DLQ ARN) already exist, and runs concurrently.
pub async fn provision(
    template: &Template,
    sdk: &SdkConfig,
) -> Result<Provisioned, ProvisionError> {
    let event_sources = template.event_sources()?;
    let prefix = unique_prefix();
    let clients = Clients {
        ddb: aws_sdk_dynamodb::Client::new(sdk),
        sqs: aws_sdk_sqs::Client::new(sdk),
        sns: aws_sdk_sns::Client::new(sdk),
        kms: aws_sdk_kms::Client::new(sdk),
    };

    let mut pending: BTreeMap<&str, (&str, &Value, BTreeSet<String>)> = BTreeMap::new();
    for (id, ty, props) in template.resources() {
        if CREATED.contains(&ty) {
            let mut deps = BTreeSet::new();
            referenced_ids(props, &mut deps);
            deps.retain(|d| {
                d != id
                    && template
                        .resource_type(d)
                        .is_some_and(|t| CREATED.contains(&t))
            });
            pending.insert(id, (ty, props, deps));
        }
    }

    let mut physical: BTreeMap<String, PhysicalResource> = BTreeMap::new();
    while !pending.is_empty() {
        let ready: Vec<&str> = pending
            .iter()
            .filter(|(_, (_, _, deps))| deps.iter().all(|d| physical.contains_key(d)))
            .map(|(id, _)| *id)
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&str> = pending.keys().copied().collect();
            return Err(invalid(format!("circular references among {stuck:?}")));
        }
        let resolver = Resolver {
            template,
            physical: &physical,
            stack_name: &prefix,
        };
        let wave = ready.iter().map(|id| {
            let (ty, props, _) = &pending[id];
            create(&clients, &resolver, &prefix, id, ty, props)
        });
        let created = futures::future::try_join_all(wave).await?;
        for (id, res) in ready.iter().zip(created) {
            pending.remove(id);
            physical.insert(id.to_string(), res);
        }
    }

    let function_env = template.function_env(&physical, &prefix);
    Ok(Provisioned {
        prefix,
        resources: physical,
        event_sources,
        function_env,
    })
}

struct Clients {
    ddb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    kms: aws_sdk_kms::Client,
}

async fn create(
    clients: &Clients,
    resolver: &Resolver<'_>,
    prefix: &str,
    id: &str,
    ty: &str,
    props: &Value,
) -> Result<PhysicalResource, ProvisionError> {
    match ty {
        TABLE => create_table(&clients.ddb, resolver, prefix, id, props).await,
        QUEUE => create_queue(&clients.sqs, resolver, prefix, id, props).await,
        TOPIC => create_topic(&clients.sns, resolver, prefix, id, props).await,
        KEY => create_key(&clients.kms, resolver, prefix, id, props).await,
        ALIAS => create_alias(&clients.kms, resolver, id, props).await,
        other => Err(invalid(format!("{id}: {other} cannot be created locally"))),
    }
}

/// `prefix-<explicit name or logical id>`.
fn physical_name(
    resolver: &Resolver<'_>,
    prefix: &str,
    id: &str,
    props: &Value,
    name_key: &str,
) -> Result<String, ProvisionError> {
    let base = match props.get(name_key) {
        Some(v) => resolver.required(v, &format!("{id}.{name_key}"))?,
        None => id.to_string(),
    };
    Ok(format!("{prefix}-{base}"))
}

fn str_at(
    resolver: &Resolver<'_>,
    v: &Value,
    key: &str,
    at: &str,
) -> Result<String, ProvisionError> {
    let field = v
        .get(key)
        .ok_or_else(|| invalid(format!("{at}: {key} is required")))?;
    resolver.required(field, &format!("{at}.{key}"))
}

fn key_schema(
    resolver: &Resolver<'_>,
    v: Option<&Value>,
    at: &str,
) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    let seq = v
        .and_then(Value::as_sequence)
        .ok_or_else(|| invalid(format!("{at}: KeySchema must be a list")))?;
    seq.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(str_at(resolver, k, "AttributeName", at)?)
                .key_type(KeyType::from(str_at(resolver, k, "KeyType", at)?.as_str()))
                .build()
                .map_err(|e| invalid(format!("{at}: {e}")))
        })
        .collect()
}

fn projection(
    resolver: &Resolver<'_>,
    v: Option<&Value>,
    at: &str,
) -> Result<Projection, ProvisionError> {
    let v = v.ok_or_else(|| invalid(format!("{at}: Projection is required")))?;
    let non_key = match v.get("NonKeyAttributes") {
        None => None,
        Some(list) => Some(
            list.as_sequence()
                .ok_or_else(|| invalid(format!("{at}: NonKeyAttributes must be a list")))?
                .iter()
                .map(|a| resolver.required(a, at))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let ty = v
        .get("ProjectionType")
        .and_then(Value::as_str)
        .unwrap_or("ALL");
    Ok(Projection::builder()
        .projection_type(ProjectionType::from(ty))
        .set_non_key_attributes(non_key)
        .build())
}

fn throughput(
    v: Option<&Value>,
    at: &str,
) -> Result<Option<ProvisionedThroughput>, ProvisionError> {
    let Some(v) = v else { return Ok(None) };
    let read = opt_u64(v, "ReadCapacityUnits", at)?
        .ok_or_else(|| invalid(format!("{at}: ReadCapacityUnits")))?;
    let write = opt_u64(v, "WriteCapacityUnits", at)?
        .ok_or_else(|| invalid(format!("{at}: WriteCapacityUnits")))?;
    ProvisionedThroughput::builder()
        .read_capacity_units(read as i64)
        .write_capacity_units(write as i64)
        .build()
        .map(Some)
        .map_err(|e| invalid(format!("{at}: {e}")))
}

async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    resolver: &Resolver<'_>,
    prefix: &str,
    id: &str,
    props: &Value,
) -> Result<PhysicalResource, ProvisionError> {
    let name = physical_name(resolver, prefix, id, props, "TableName")?;
    let attributes = props
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or_else(|| invalid(format!("{id}: AttributeDefinitions must be a list")))?
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(str_at(resolver, a, "AttributeName", id)?)
                .attribute_type(ScalarAttributeType::from(
                    str_at(resolver, a, "AttributeType", id)?.as_str(),
                ))
                .build()
                .map_err(|e| invalid(format!("{id}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut gsis = Vec::new();
    for g in props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let at = format!("{id}.GlobalSecondaryIndexes");
        gsis.push(
            GlobalSecondaryIndex::builder()
                .index_name(str_at(resolver, g, "IndexName", &at)?)
                .set_key_schema(Some(key_schema(resolver, g.get("KeySchema"), &at)?))
                .projection(projection(resolver, g.get("Projection"), &at)?)
                .set_provisioned_throughput(throughput(g.get("ProvisionedThroughput"), &at)?)
                .build()
                .map_err(|e| invalid(format!("{at}: {e}")))?,
        );
    }
    let mut lsis = Vec::new();
    for l in props
        .get("LocalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let at = format!("{id}.LocalSecondaryIndexes");
        lsis.push(
            LocalSecondaryIndex::builder()
                .index_name(str_at(resolver, l, "IndexName", &at)?)
                .set_key_schema(Some(key_schema(resolver, l.get("KeySchema"), &at)?))
                .projection(projection(resolver, l.get("Projection"), &at)?)
                .build()
                .map_err(|e| invalid(format!("{at}: {e}")))?,
        );
    }

    // CloudFormation's default billing mode is PROVISIONED.
    let billing = props
        .get("BillingMode")
        .and_then(Value::as_str)
        .unwrap_or("PROVISIONED");
    let stream = match props.get("StreamSpecification") {
        None => None,
        Some(s) => Some(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(
                    str_at(resolver, s, "StreamViewType", id)?.as_str(),
                ))
                .build()
                .map_err(|e| invalid(format!("{id}: {e}")))?,
        ),
    };

    let out = ddb
        .create_table()
        .table_name(&name)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(resolver, props.get("KeySchema"), id)?))
        .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
        .set_local_secondary_indexes((!lsis.is_empty()).then_some(lsis))
        .billing_mode(BillingMode::from(billing))
        .set_provisioned_throughput(throughput(props.get("ProvisionedThroughput"), id)?)
        .set_stream_specification(stream)
        .send()
        .await
        .map_err(aws_err("CreateTable", &name))?;
    let desc = out
        .table_description()
        .ok_or_else(|| invalid(format!("CreateTable {name}: no table description")))?;
    let arn = desc
        .table_arn()
        .map(str::to_string)
        .unwrap_or_else(|| format!("arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{name}"));
    let stream_arn = desc.latest_stream_arn().map(str::to_string);

    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        if ttl.get("Enabled").and_then(as_bool).unwrap_or(false) {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(str_at(resolver, ttl, "AttributeName", id)?)
                .enabled(true)
                .build()
                .map_err(|e| invalid(format!("{id}: {e}")))?;
            ddb.update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(aws_err("UpdateTimeToLive", &name))?;
        }
    }
    Ok(PhysicalResource::Table {
        name,
        arn,
        stream_arn,
    })
}

/// Queue properties that change local behaviour, passed through as attributes. Encryption
/// settings (SqsManagedSseEnabled, KMS) mean nothing on loopback and are left out.
const QUEUE_ATTRIBUTES: &[&str] = &[
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "ContentBasedDeduplication",
];

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    resolver: &Resolver<'_>,
    prefix: &str,
    id: &str,
    props: &Value,
) -> Result<PhysicalResource, ProvisionError> {
    let fifo = props.get("FifoQueue").and_then(as_bool).unwrap_or(false);
    let mut name = physical_name(resolver, prefix, id, props, "QueueName")?;
    if fifo && !name.ends_with(".fifo") {
        name.push_str(".fifo");
    }
    let mut req = sqs.create_queue().queue_name(&name);
    if fifo {
        req = req.attributes(QueueAttributeName::FifoQueue, "true");
    }
    for key in QUEUE_ATTRIBUTES {
        if let Some(v) = props.get(*key) {
            req = req.attributes(
                QueueAttributeName::from(*key),
                resolver.required(v, &format!("{id}.{key}"))?,
            );
        }
    }
    let mut dead_letter_target = None;
    if let Some(policy) = props.get("RedrivePolicy") {
        let at = format!("{id}.RedrivePolicy");
        let (dlq_arn, max_receive) = if policy.is_mapping() {
            let target = policy
                .get("deadLetterTargetArn")
                .ok_or_else(|| invalid(format!("{at}: deadLetterTargetArn is required")))?;
            dead_letter_target = Some(single_ref(Some(target), &at)?);
            let count = policy
                .get("maxReceiveCount")
                .and_then(as_u64)
                .ok_or_else(|| invalid(format!("{at}: maxReceiveCount must be a number")))?;
            (resolver.required(target, &at)?, count)
        } else {
            // The JSON-string form of the property.
            let text = resolver.required(policy, &at)?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| invalid(format!("{at}: not JSON: {e}")))?;
            let arn = json["deadLetterTargetArn"]
                .as_str()
                .ok_or_else(|| invalid(format!("{at}: deadLetterTargetArn is required")))?
                .to_string();
            let count = json["maxReceiveCount"]
                .as_u64()
                .or_else(|| {
                    json["maxReceiveCount"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                })
                .ok_or_else(|| invalid(format!("{at}: maxReceiveCount must be a number")))?;
            (arn, count)
        };
        let redrive =
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive});
        req = req.attributes(QueueAttributeName::RedrivePolicy, redrive.to_string());
    }

    let url = req
        .send()
        .await
        .map_err(aws_err("CreateQueue", &name))?
        .queue_url()
        .ok_or_else(|| invalid(format!("CreateQueue {name}: no queue URL")))?
        .to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws_err("GetQueueAttributes", &name))?;
    let arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| invalid(format!("GetQueueAttributes {name}: no QueueArn")))?;
    Ok(PhysicalResource::Queue {
        name,
        url,
        arn,
        dead_letter_target,
    })
}

async fn create_topic(
    sns: &aws_sdk_sns::Client,
    resolver: &Resolver<'_>,
    prefix: &str,
    id: &str,
    props: &Value,
) -> Result<PhysicalResource, ProvisionError> {
    let fifo = props.get("FifoTopic").and_then(as_bool).unwrap_or(false);
    let mut name = physical_name(resolver, prefix, id, props, "TopicName")?;
    let mut req = sns.create_topic();
    if fifo {
        if !name.ends_with(".fifo") {
            name.push_str(".fifo");
        }
        req = req.attributes("FifoTopic", "true");
    }
    if let Some(v) = props.get("DisplayName") {
        req = req.attributes(
            "DisplayName",
            resolver.required(v, &format!("{id}.DisplayName"))?,
        );
    }
    let arn = req
        .name(&name)
        .send()
        .await
        .map_err(aws_err("CreateTopic", &name))?
        .topic_arn()
        .ok_or_else(|| invalid(format!("CreateTopic {name}: no topic ARN")))?
        .to_string();
    Ok(PhysicalResource::Topic { name, arn })
}

/// A symmetric encryption key, tagged with the stack it belongs to (moto ignores key policies,
/// so the template's is not sent).
async fn create_key(
    kms: &aws_sdk_kms::Client,
    resolver: &Resolver<'_>,
    prefix: &str,
    id: &str,
    props: &Value,
) -> Result<PhysicalResource, ProvisionError> {
    let mut req = kms.create_key().tags(
        aws_sdk_kms::types::Tag::builder()
            .tag_key("parcelwatch:stack")
            .tag_value(format!("{prefix}/{id}"))
            .build()
            .map_err(|e| invalid(format!("{id}: tag: {e}")))?,
    );
    if let Some(v) = props.get("Description") {
        req = req.description(resolver.required(v, &format!("{id}.Description"))?);
    }
    let meta = req
        .send()
        .await
        .map_err(aws_err("CreateKey", id))?
        .key_metadata
        .ok_or_else(|| invalid(format!("CreateKey {id}: no key metadata")))?;
    let arn = meta
        .arn()
        .ok_or_else(|| invalid(format!("CreateKey {id}: no key ARN")))?
        .to_string();
    Ok(PhysicalResource::Key {
        key_id: meta.key_id().to_string(),
        arn,
    })
}

async fn create_alias(
    kms: &aws_sdk_kms::Client,
    resolver: &Resolver<'_>,
    id: &str,
    props: &Value,
) -> Result<PhysicalResource, ProvisionError> {
    let name = str_at(resolver, props, "AliasName", id)?;
    let target = str_at(resolver, props, "TargetKeyId", id)?;
    kms.create_alias()
        .alias_name(&name)
        .target_key_id(target)
        .send()
        .await
        .map_err(aws_err("CreateAlias", &name))?;
    Ok(PhysicalResource::Alias { name })
}

/// Where the template's IAM policies grant more than least privilege: a wildcard in an action
/// (`*`, `dynamodb:*`), a `Resource` of `*`, or a statement with no resource at all. The one
/// `NotResource` statement allowed is the notifier's SMS publish (`sns:Publish` to phone numbers,
/// which have no ARN), and only with a region condition. Empty: every statement names its actions
/// and resources.
pub fn policy_violations(template: &Template) -> Vec<String> {
    let mut out = Vec::new();
    let as_list = |v: Option<&Value>| -> Vec<Value> {
        match v {
            Some(Value::Sequence(items)) => items.clone(),
            Some(other) => vec![other.clone()],
            None => Vec::new(),
        }
    };
    for (id, ty, props) in template.resources() {
        if ty != FUNCTION {
            continue;
        }
        for (p, policy) in as_list(props.get("Policies")).iter().enumerate() {
            let Some(statements) = policy.get("Statement") else {
                out.push(format!("{id}.Policies[{p}]: not an inline policy document"));
                continue;
            };
            for (n, stmt) in as_list(Some(statements)).iter().enumerate() {
                let at = format!("{id}.Policies[{p}].Statement[{n}]");
                let actions = as_list(stmt.get("Action"));
                if actions.is_empty() {
                    out.push(format!("{at}: no Action"));
                }
                for a in &actions {
                    match a.as_str() {
                        Some(a) if !a.contains('*') => {}
                        _ => out.push(format!("{at}: wildcard or non-literal action {a:?}")),
                    }
                }
                let resources = as_list(stmt.get("Resource"));
                if resources.iter().any(|r| r.as_str() == Some("*")) {
                    out.push(format!("{at}: Resource \"*\""));
                }
                if let Some(not) = stmt.get("NotResource") {
                    let sms_only = actions.len() == 1
                        && actions[0].as_str() == Some("sns:Publish")
                        && not.as_str() == Some("arn:aws:sns:*:*:*")
                        && stmt.get("Condition").is_some();
                    if !sms_only {
                        out.push(format!("{at}: NotResource beyond the SMS publish"));
                    }
                } else if resources.is_empty() {
                    out.push(format!("{at}: no Resource"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_template() -> Template {
        Template::load_workspace().unwrap()
    }

    #[test]
    fn provision_reads_event_sources_from_template() {
        let es = workspace_template().event_sources().unwrap();
        assert_eq!(
            es.tracker_sqs,
            SqsSourceSpec {
                function: "tracker".into(),
                queue: "TrackingQueue".into(),
                batch_size: 10,
                max_batching_window_s: 5,
                report_batch_item_failures: true,
                max_concurrency: Some(10),
            }
        );
        let s = &es.notifier_stream;
        assert_eq!(s.table, "Table");
        assert_eq!(s.batch_size, 50);
        assert_eq!(s.max_retry_attempts, Some(5));
        assert_eq!(s.max_record_age_s, Some(21600));
        assert!(s.bisect_on_error);
        assert!(s.report_batch_item_failures);
        assert_eq!(s.on_failure_queue.as_deref(), Some("NotifyFailureQueue"));
        assert_eq!(s.starting_position, "TRIM_HORIZON");
        assert_eq!(s.filter_patterns.len(), 1);
        let pattern: serde_json::Value = serde_json::from_str(&s.filter_patterns[0]).unwrap();
        assert_eq!(pattern["dynamodb"]["Keys"]["sk"]["S"][0], "META");
        assert_eq!(
            es.schedules,
            vec![
                ScheduleSpec {
                    function: "scheduler".into(),
                    expression: "rate(1 minute)".into()
                },
                ScheduleSpec {
                    function: "order-sync".into(),
                    expression: "rate(5 minutes)".into()
                }
            ]
        );
        assert_eq!(es.function_timeouts.get("tracker"), Some(&30));
        assert_eq!(es.function_timeouts.get("scheduler"), Some(&60));
        assert_eq!(es.function_timeouts.get("order-sync"), Some(&240));
        assert_eq!(es.function_timeouts.get("api"), Some(&10));
        assert_eq!(es.function_timeouts.get("analytics"), Some(&30));
        assert_eq!(es.function_timeouts.len(), 6);
        // The analytics function reads the same stream with its own mapping and failure queue.
        let a = es.stream_of("analytics").expect("analytics stream");
        assert_eq!(a.table, "Table");
        assert_eq!(a.on_failure_queue.as_deref(), Some("AnalyticsFailureQueue"));
        assert!(a.bisect_on_error && a.report_batch_item_failures);
        assert_eq!(a.filter_patterns, s.filter_patterns);
    }

    #[test]
    fn provision_policies_name_every_action_and_resource() {
        let t = Template::load_workspace().unwrap();
        assert_eq!(policy_violations(&t), Vec::<String>::new());
        // The check bites: a wildcard action, a star resource, a second NotResource.
        let text =
            std::fs::read_to_string(crate::moto::workspace_root().unwrap().join("template.yaml"))
                .unwrap();
        for (from, to, needle) in [
            ("- dynamodb:Query\n", "- dynamodb:*\n", "wildcard"),
            (
                "Resource: !GetAtt TrackingDLQ.Arn",
                "Resource: \"*\"",
                "Resource \"*\"",
            ),
            (
                "- sqs:SendMessage\n              Resource: !GetAtt TrackingQueue.Arn",
                "- sqs:SendMessage\n              NotResource: !GetAtt TrackingQueue.Arn",
                "NotResource",
            ),
        ] {
            assert!(text.contains(from), "{from}");
            let bad = Template::parse(&text.replacen(from, to, 1)).unwrap();
            let v = policy_violations(&bad);
            assert!(v.iter().any(|m| m.contains(needle)), "{needle}: {v:?}");
        }
    }

    #[test]
    fn provision_resolves_short_and_long_intrinsics() {
        let t = Template::parse(
            r#"
Parameters:
  Endpoint: {Type: String, Default: "http://x"}
  NoDefault: {Type: String}
Globals:
  Function:
    Timeout: 7
    Environment:
      Variables: {TABLE_NAME: !Ref T, SHARED: "g", EMPTY: "x"}
Resources:
  T: {Type: AWS::DynamoDB::Table}
  Q: {Type: AWS::SQS::Queue}
  F:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          ARN: !GetAtt Q.Arn
          LONG: {"Fn::GetAtt": [T, StreamArn]}
          SUB: !Sub "${T.Arn}/index/i ${AWS::Region} ${!Keep} ${Endpoint}"
          SUBVARS: !Sub ["${a}-${Q}", {a: !Ref Endpoint}]
          SECRET: !Sub "{{resolve:secretsmanager:${Endpoint}:SecretString:K}}"
          MISSING: !Ref NoDefault
          EMPTY: ""
"#,
        )
        .unwrap();
        let mut physical = BTreeMap::new();
        physical.insert(
            "T".to_string(),
            PhysicalResource::Table {
                name: "p-T".into(),
                arn: "arn:t".into(),
                stream_arn: Some("arn:s".into()),
            },
        );
        physical.insert(
            "Q".to_string(),
            PhysicalResource::Queue {
                name: "p-Q".into(),
                url: "http://q".into(),
                arn: "arn:q".into(),
                dead_letter_target: None,
            },
        );
        let env = &t.function_env(&physical, "p")["F"];
        let expected: BTreeMap<String, String> = [
            ("TABLE_NAME", "p-T"),
            ("SHARED", "g"),
            ("ARN", "arn:q"),
            ("LONG", "arn:s"),
            ("SUB", "arn:t/index/i us-east-1 ${Keep} http://x"),
            ("SUBVARS", "http://x-http://q"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, &expected);

        let mut deps = BTreeSet::new();
        referenced_ids(&t.resource("F").unwrap()["Properties"], &mut deps);
        assert!(deps.contains("Q") && deps.contains("T") && deps.contains("Endpoint"));
        assert!(!deps.contains("a"), "Sub locals are not resources");
    }

    #[test]
    fn provision_rejects_templates_it_cannot_read() {
        assert!(Template::parse("just: text").is_err());
        assert!(Template::parse("Resources: [").is_err());
        // A function without the event sources the runner needs is reported, not defaulted.
        let t = Template::parse("Resources: {Q: {Type: AWS::SQS::Queue}}").unwrap();
        assert!(matches!(
            t.event_sources(),
            Err(ProvisionError::Template(_))
        ));
    }

    #[test]
    fn provision_stream_filter_passes_only_meta_inserts_and_modifies() {
        let es = workspace_template().event_sources().unwrap();
        let spec = es.notifier_stream;
        let record = |event: &str, sk: &str| {
            serde_json::json!({
                "eventName": event,
                "dynamodb": {"Keys": {"pk": {"S": "SHIP#SF#1"}, "sk": {"S": sk}}}
            })
        };
        assert!(spec.passes_filters(&record("MODIFY", "META")));
        assert!(spec.passes_filters(&record("INSERT", "META")));
        assert!(!spec.passes_filters(&record("REMOVE", "META")));
        assert!(!spec.passes_filters(&record("INSERT", "EVT#2026-11-24T08:00:00Z#0")));
        assert!(!spec.passes_filters(&record("INSERT", "NOTE#Delivered#sms")));
        assert!(!spec.passes_filters(&serde_json::json!({"eventName": "MODIFY"})));
    }

    #[test]
    fn provision_filter_operators() {
        let ev = serde_json::json!({"a": "Hello", "n": 3, "tags": ["x", "y"]});
        let m = |p: serde_json::Value| filter_matches(&p, &ev);
        assert!(m(serde_json::json!({"a": [{"prefix": "He"}]})));
        assert!(!m(serde_json::json!({"a": [{"suffix": "He"}]})));
        assert!(m(
            serde_json::json!({"a": [{"equals-ignore-case": "hello"}]})
        ));
        assert!(m(serde_json::json!({"n": [3]})));
        assert!(!m(serde_json::json!({"n": ["3"]})));
        assert!(m(serde_json::json!({"tags": ["y"]})));
        assert!(m(serde_json::json!({"missing": [{"exists": false}]})));
        assert!(!m(serde_json::json!({"a": [{"exists": false}]})));
        assert!(m(serde_json::json!({"a": [{"anything-but": ["Bye"]}]})));
        assert!(!m(serde_json::json!({"a": [{"anything-but": "Hello"}]})));
    }

    #[test]
    fn provision_prefixes_are_unique() {
        let a = unique_prefix();
        let b = unique_prefix();
        assert_ne!(a, b);
        assert!(a.starts_with("pw-"));
        // SQS names are capped at 80 characters.
        assert!(format!("{a}-NotifyFailureQueue").len() <= 80);
    }
}
