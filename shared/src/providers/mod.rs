//! Tracking providers: one module per aggregator, each with signing, request, response parsing
//! and a status mapping table tested code by code.

/// Log a trace query's outcome (debug when fetched, info when it failed) and return it. A macro
/// rather than a function so that each event keeps the calling client's module as its target.
macro_rules! logged_trace_query {
    ($provider:expr, $q:ident, $result:expr) => {{
        let result = $result;
        match &result {
            Ok(s) => {
                tracing::debug!(provider = $provider, shipment = %$q.id, status = %s.status, events = s.events.len(), "trace fetched")
            }
            Err(e) => {
                tracing::info!(provider = $provider, shipment = %$q.id, retryable = e.is_retryable(), error = %e, "trace query failed")
            }
        }
        result
    }};
}

/// Log a subscription's outcome (debug when subscribed, info when it failed) and return it; a
/// macro for the same reason as [`logged_trace_query`].
macro_rules! logged_subscription {
    ($provider:expr, $q:ident, $result:expr) => {{
        let result = $result;
        match &result {
            Ok(s) => {
                tracing::debug!(provider = $provider, shipment = %$q.id, already = s.already_subscribed, "subscribed")
            }
            Err(e) => {
                tracing::info!(provider = $provider, shipment = %$q.id, retryable = e.is_retryable(), error = %e, "subscription failed")
            }
        }
        result
    }};
}

pub mod any;
pub mod failover;
pub mod kdniao;
pub mod kdniao_push;
pub mod kuaidi100;
pub mod push;
pub mod recognize;
pub mod taobao;
pub mod unknown;

use crate::domain::{PhoneLast4, ShipmentId, TraceSnapshot};
use std::future::Future;
use std::time::Duration;

/// What a provider needs to look a parcel up.
#[derive(Debug, Clone)]
pub struct TraceQuery {
    pub id: ShipmentId,
    /// SF and some others demand the last four digits of the recipient's phone: all a provider
    /// is given of it.
    pub phone: Option<PhoneLast4>,
    pub order_ref: Option<String>,
}

/// Failures of a provider call, classified once, here at the adapter.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Worth another try later: network failure, timeout, 5xx, throttling, provider "busy".
    #[error("provider {provider} temporarily failed: {reason}")]
    Retryable {
        provider: &'static str,
        reason: String,
        /// How long the provider asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// Will fail the same way every time: bad credentials/signature, unknown carrier,
    /// malformed waybill, a body we cannot parse.
    #[error("provider {provider} rejected the query: {reason}")]
    Permanent {
        provider: &'static str,
        reason: String,
    },
}

impl ProviderError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Retryable { .. })
    }
}

/// What the tracker knows of a shipment when it picks a provider for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteContext {
    /// The shipment's own provider (set at registration).
    pub preferred: String,
    /// The shop the shipment's order belongs to (from `order_ref` `platform:shop:tid`).
    pub shop: Option<String>,
    /// The provider that answered the last poll, and when.
    pub last_provider: Option<String>,
    pub last_checked: Option<chrono::DateTime<chrono::Utc>>,
    /// Now, as the tracker sees it.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// A provider's answer, and which provider gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub provider: &'static str,
    pub snapshot: TraceSnapshot,
}

/// A logistics-trace provider (Kdniao, Kuaidi100, Taobao TOP).
pub trait TraceProvider: Send + Sync {
    /// Short name used in sub-statuses and logs: `kdniao`.
    fn name(&self) -> &'static str;
    fn query(
        &self,
        q: &TraceQuery,
    ) -> impl Future<Output = Result<TraceSnapshot, ProviderError>> + Send;

    /// Query for a shipment in its context. A single provider just queries; a
    /// [`failover::Failover`] picks the providers configured for the shipment and moves on to
    /// the next when one fails, throttles or has spent its quota.
    fn query_routed(
        &self,
        q: &TraceQuery,
        _ctx: &RouteContext,
    ) -> impl Future<Output = Result<Answer, ProviderError>> + Send {
        async move {
            self.query(q).await.map(|snapshot| Answer {
                provider: self.name(),
                snapshot,
            })
        }
    }
}

/// Lower-case hex of bytes (md-5 0.11 digests no longer format with `{:x}`).
pub fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

/// Constant-time comparison of two signatures (ASCII case-sensitive).
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
