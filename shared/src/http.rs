//! The one HTTP transport under every provider and order-platform client: send a request with a
//! per-request timeout, classify a transport failure or a non-2xx status once, and hand back the
//! body of a 2xx answer. Each client turns an [`HttpFailure`] into its own error type
//! ([`HttpFailure::for_provider`], `OrderError::from`) and parses the body itself.
//!
//! Classification, the same for every client:
//! - a request that cannot be built (malformed endpoint): Permanent, `cannot build request: …`;
//! - time-out, refused connection, broken body: Retryable, `timed out: …`,
//!   `connection failed: …`, `transport error: …`;
//! - 408, 429, 5xx: Retryable `HTTP {status}`, with the `Retry-After` seconds when given;
//! - other 4xx: Permanent `HTTP {status}`;
//! - anything else not 2xx (1xx/3xx left over after redirects, a gateway oddity rather than our
//!   request's fault): Retryable `unexpected HTTP {status}`.
//!
//! A transport error's reason never holds the request's query string nor a password in the URL
//! (see [`UrlInErrors`]): secrets travel there for some providers.

use crate::orders::OrderError;
use crate::providers::ProviderError;
use serde::Serialize;
use std::time::Duration;

/// A failed HTTP exchange, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HttpFailure {
    Retryable {
        reason: String,
        /// The server's `Retry-After`, in seconds, when it sent one.
        retry_after: Option<Duration>,
    },
    Permanent {
        reason: String,
    },
}

impl HttpFailure {
    /// As a provider's error.
    pub(crate) fn for_provider(self, provider: &'static str) -> ProviderError {
        match self {
            HttpFailure::Retryable {
                reason,
                retry_after,
            } => ProviderError::Retryable {
                provider,
                reason,
                retry_after,
            },
            HttpFailure::Permanent { reason } => ProviderError::Permanent { provider, reason },
        }
    }
}

impl From<HttpFailure> for OrderError {
    fn from(f: HttpFailure) -> Self {
        match f {
            HttpFailure::Retryable {
                reason,
                retry_after,
            } => OrderError::Retryable {
                reason,
                retry_after,
            },
            HttpFailure::Permanent { reason } => OrderError::Permanent { reason },
        }
    }
}

/// How much of the request URL a transport error's reason may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlInErrors {
    /// Scheme, host and path (the query string and any password are removed): for endpoints
    /// whose secrets travel in the body.
    WithoutQuery,
    /// No URL at all: for requests whose path itself is not fit for logs.
    Hidden,
}

/// POST `form` (`application/x-www-form-urlencoded`, each value encoded once) to `endpoint`
/// within `timeout`; the body of a 2xx answer, or the classified failure.
pub(crate) async fn post_form<F: Serialize + ?Sized>(
    http: &reqwest::Client,
    endpoint: &str,
    timeout: Duration,
    form: &F,
) -> Result<String, HttpFailure> {
    send(
        http.post(endpoint).timeout(timeout).form(form),
        UrlInErrors::WithoutQuery,
    )
    .await
}

/// GET `url` within `timeout`; the body of a 2xx answer, or the classified failure.
pub(crate) async fn get(
    http: &reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
    url_in_errors: UrlInErrors,
) -> Result<String, HttpFailure> {
    send(http.get(url).timeout(timeout), url_in_errors).await
}

/// Send a prepared request: transport failures and non-2xx statuses classified, a 2xx body read.
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    url_in_errors: UrlInErrors,
) -> Result<String, HttpFailure> {
    let resp = req
        .send()
        .await
        .map_err(|e| transport_failure(e, url_in_errors))?;
    if !resp.status().is_success() {
        return Err(status_failure(&resp));
    }
    resp.text()
        .await
        .map_err(|e| transport_failure(e, url_in_errors))
}

/// A reqwest failure: a malformed endpoint is configuration (Permanent); time-outs, refused
/// connections and broken bodies are weather (Retryable).
pub(crate) fn transport_failure(e: reqwest::Error, url_in_errors: UrlInErrors) -> HttpFailure {
    let e = redact(e, url_in_errors);
    if e.is_builder() {
        // Fails identically for every request: configuration, not weather.
        return HttpFailure::Permanent {
            reason: format!("cannot build request: {e}"),
        };
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    HttpFailure::Retryable {
        reason: format!("{kind}: {e}"),
        retry_after: None,
    }
}

fn redact(e: reqwest::Error, url_in_errors: UrlInErrors) -> reqwest::Error {
    match url_in_errors {
        UrlInErrors::Hidden => e.without_url(),
        UrlInErrors::WithoutQuery => {
            let mut e = e;
            if let Some(url) = e.url_mut() {
                url.set_query(None);
                let _ = url.set_password(None);
            }
            e
        }
    }
}

/// A non-2xx answer: 408/429/5xx Retryable (with Retry-After when given), other 4xx Permanent,
/// anything else Retryable.
pub(crate) fn status_failure(resp: &reqwest::Response) -> HttpFailure {
    let status = resp.status();
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        HttpFailure::Retryable {
            reason: format!("HTTP {status}"),
            retry_after: resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        }
    } else if status.is_client_error() {
        HttpFailure::Permanent {
            reason: format!("HTTP {status}"),
        }
    } else {
        HttpFailure::Retryable {
            reason: format!("unexpected HTTP {status}"),
            retry_after: None,
        }
    }
}

/// At most `n` characters of a body, quoted, for an error reason (never a whole body in a log).
pub(crate) fn body_prefix(body: &str, n: usize) -> String {
    let mut p: String = body.chars().take(n).collect();
    if body.chars().nth(n).is_some() {
        p.push('…');
    }
    format!("{p:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_url() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://user:pa55@{a}/gateway?key=s3cret")
    }

    #[tokio::test]
    async fn transport_errors_never_show_the_query_string_or_a_password() {
        let http = reqwest::Client::new();
        let e = post_form(&http, &dead_url(), Duration::from_secs(2), &[("a", "b")])
            .await
            .unwrap_err();
        let HttpFailure::Retryable { reason, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(reason.starts_with("connection failed"), "{reason}");
        assert!(reason.contains("/gateway"), "{reason}");
        assert!(
            !reason.contains("s3cret") && !reason.contains("pa55"),
            "{reason}"
        );

        let url = reqwest::Url::parse(&dead_url()).unwrap();
        let e = get(&http, url, Duration::from_secs(2), UrlInErrors::Hidden)
            .await
            .unwrap_err();
        let HttpFailure::Retryable { reason, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(!reason.contains("127.0.0.1"), "{reason}");
    }

    #[test]
    fn failures_convert_to_both_error_types() {
        let f = HttpFailure::Retryable {
            reason: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(matches!(
            f.clone().for_provider("kdniao"),
            ProviderError::Retryable { provider: "kdniao", ref reason, retry_after: Some(_) } if reason == "HTTP 503"
        ));
        assert_eq!(
            OrderError::from(f),
            OrderError::Retryable {
                reason: "HTTP 503".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        let p = HttpFailure::Permanent {
            reason: "HTTP 403".into(),
        };
        assert!(!p.clone().for_provider("kuaidi100").is_retryable());
        assert!(!OrderError::from(p).is_retryable());
    }
}
