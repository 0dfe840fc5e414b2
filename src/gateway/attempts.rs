//! The upstream attempts of one call: each signs afresh (a new nonce and date), takes the
//! account's budget and a slot to the host, sends, and classifies the answer; the retry loop
//! retries what is safe to retry (`policy::may_retry`) within the call's deadline, resends once
//! a request whose time the upstream refused after correcting the clock (it was not executed),
//! and diagnoses refused signatures.

use super::policy::{may_retry, message_of, transport_failure};
use super::{Gateway, Reply};
use crate::error::{GatewayError, UpstreamError};
use crate::ratelimit::{full_jitter, Backoff, TokenBucket};
use crate::table::Operation;
use crate::translate;
use crate::upstream::{self, prepare};
use bytes::Bytes;
use prost::Message as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

/// How long a call may wait for a free upstream slot to its host before being shed.
const HOST_SLOT_WAIT: Duration = Duration::from_millis(100);

/// Upstream attempts of one call: sign afresh, send, classify, retry what is safe to retry.
pub(super) struct Attempts<'a> {
    pub(super) gateway: &'a Gateway,
    pub(super) op: &'a Operation,
    pub(super) service: &'a crate::table::ServiceInfo,
    pub(super) call: &'a translate::HttpCall,
    pub(super) profile: &'a crate::vault::Profile,
    pub(super) region: &'a str,
    pub(super) deadline: Instant,
    pub(super) bucket: Option<Arc<TokenBucket>>,
    /// For a cacheable read, what the cache did (`miss` or `bypass`): an attempt means no hit.
    pub(super) cache: Option<&'static str>,
    /// Set by an attempt whose time the upstream refused, once the clock was corrected from
    /// that answer: the request was not executed, so it is sent again once, even a mutation.
    pub(super) clock_corrected: std::sync::atomic::AtomicBool,
    /// For a write: it runs on when its caller leaves (`gateway::write`).
    pub(super) detached: Option<Detached<'a>>,
}

/// A write's attempts, detached from their caller: until a request is sent the caller's leaving
/// (`gone`) stops them; once sent (`sent`), the request runs to the upstream timeout whatever
/// the caller's deadline. With a client token (`token`) the cloud drops a duplicate, so a
/// resend after a lost answer is as safe as a read's.
pub(super) struct Detached<'a> {
    pub(super) gone: &'a AtomicBool,
    pub(super) sent: &'a AtomicBool,
    pub(super) token: bool,
}

impl Attempts<'_> {
    pub(super) async fn run(&self) -> Result<Reply, GatewayError> {
        let g = self.gateway;
        let mut attempt: u32 = 0;
        let mut resent_for_time = false;
        let mut retries = Backoff::new(g.retry_base, g.retry_max_backoff);
        loop {
            attempt += 1;
            let span = self.span(attempt);
            let error = match self.once(&span).instrument(span.clone()).await {
                Ok(reply) => return Ok(reply),
                Err(Failed::Upstream(error)) => error,
                Err(Failed::Final(e)) => {
                    span.record("error.type", e.kind());
                    return Err(e);
                }
            };
            let retry_after = match &error {
                UpstreamError::Api { retry_after, .. } => *retry_after,
                _ => None,
            };
            // Throttling, or any answer saying when to come back (`x-acs-retry-after`), slows
            // the account's budget down until then.
            if error.code() == tonic::Code::ResourceExhausted || retry_after.is_some() {
                g.limiter.throttled(self.bucket.as_ref(), retry_after);
            }
            if !resent_for_time && self.clock_corrected.swap(false, Ordering::Relaxed) {
                resent_for_time = true;
                g.retries.fetch_add(1, Ordering::Relaxed);
                tracing::info!(operation = %self.op.name, error = %error, "resending once with the corrected clock");
                continue;
            }
            let safe = self.op.policy.read || self.detached.as_ref().is_some_and(|d| d.token);
            if attempt >= g.max_attempts || !may_retry(safe, &error) {
                return Err(error.into());
            }
            // Exponential backoff with full jitter, never shorter than the upstream asked, never
            // past the deadline.
            let asked = match &error {
                UpstreamError::Api { retry_after, .. } => *retry_after,
                _ => None,
            };
            let (cap, _) = retries.failed(None);
            let backoff = full_jitter(cap, rand::random::<f64>()).max(asked.unwrap_or_default());
            if Instant::now() + backoff >= self.deadline {
                return Err(error.into());
            }
            g.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(operation = %self.op.name, attempt, error = %error, backoff_ms = backoff.as_millis() as u64, "retrying");
            tokio::time::sleep(backoff).await;
        }
    }

    /// The client span of one attempt (see `telemetry`); the route is the table's path
    /// template, never the path with its ids.
    fn span(&self, attempt: u32) -> tracing::Span {
        use tracing::field::Empty;
        tracing::info_span!(
            target: crate::telemetry::SPAN_TARGET,
            "upstream",
            otel.name = %format_args!("{} {}", self.call.method, self.op.path),
            otel.kind = "client",
            otel.status_description = Empty,
            http.request.method = %self.call.method,
            url.template = %self.op.path,
            server.address = Empty,
            http.response.status_code = Empty,
            error.type = Empty,
            ack.operation = %self.op.name,
            // Integers as i64: OpenTelemetry has no unsigned attributes.
            ack.attempt = i64::from(attempt),
            ack.cache = self.cache,
            ack.request_id = Empty,
            ack.rate_limit_wait_ms = Empty,
        )
    }

    /// One attempt: ready the request (budget, credential, signature, host slot), send it,
    /// and read the answer.
    async fn once(&self, span: &tracing::Span) -> Result<Reply, Failed> {
        let g = self.gateway;
        let Ready {
            request,
            signed_over,
            credential,
            remaining,
            _slot,
        } = self.ready(span).await?;
        let host = request.host.clone();
        let sent = Instant::now();
        let response = g.upstream.send(request, remaining).await;
        let status = match &response {
            Ok(resp) => resp.status.to_string(),
            Err(e) => transport_failure(e).to_string(),
        };
        g.metrics.upstream(&self.op.name, &status, sent.elapsed());
        let error = match response {
            Ok(resp) if (200..300).contains(&resp.status) => {
                return Ok(self.answered(span, &resp)?);
            }
            Ok(resp) => self.refused(span, &host, &resp, signed_over.as_ref(), &credential.key),
            Err(e) => e,
        };
        if let UpstreamError::Api {
            request_id: Some(id),
            ..
        } = &error
        {
            span.record("ack.request_id", id.as_str());
        }
        span.record("error.type", status.as_str());
        span.record("otel.status_description", error.to_string().as_str());
        Err(Failed::Upstream(error))
    }

    /// Everything before the send: the account's budget, a credential valid for the rest of
    /// the call, a fresh signature (new nonce and date), a slot to the host, and, for a write,
    /// the last check that its caller is still there.
    async fn ready(&self, span: &tracing::Span) -> Result<Ready, Failed> {
        let g = self.gateway;
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let host_base = g
            .upstream
            .base_url(&self.op.service, self.service, self.region);
        if remaining.is_zero() {
            return Err(Failed::Final(
                UpstreamError::Timeout {
                    host: prepare::host_of(&host_base),
                    timeout: Duration::ZERO,
                }
                .into(),
            ));
        }
        let waiting = Instant::now();
        g.limiter
            .upstream(self.bucket.as_ref(), Some(remaining))
            .await?;
        span.record(
            "ack.rate_limit_wait_ms",
            waiting.elapsed().as_secs_f64() * 1000.0,
        );
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let credential = self.profile.credential(remaining).await?;
        let mut request = g.sign(
            self.op,
            self.service,
            self.call,
            self.profile,
            self.region,
            &credential.key,
        )?;
        // Trace context travels outside the signed headers: it changes nothing the API checks.
        crate::telemetry::inject(span, &mut request.headers);
        // What the trace context added must fit too: a request the HTTP stack would refuse is
        // the caller's to fix, never a transport failure.
        g.limits.signed(request.url.len(), &request.headers)?;
        let signed_over = request.signed_over.take();
        let host = request.host.clone();
        span.record("server.address", host.as_str());
        let slots = g.host_slots(&host);
        let wait = remaining.min(HOST_SLOT_WAIT);
        let Ok(Ok(slot)) = tokio::time::timeout(wait, slots.acquire_owned()).await else {
            return Err(Failed::Final(GatewayError::Overloaded(format!(
                "upstream requests in flight to {host}"
            ))));
        };
        let mut remaining = self.deadline.saturating_duration_since(Instant::now());
        if let Some(d) = &self.detached {
            // The last moment the caller's leaving stops a write: from here it may reach the
            // cloud, and it runs to the upstream timeout whatever the caller does.
            if d.gone.load(Ordering::Relaxed) {
                return Err(Failed::Final(GatewayError::Upstream(
                    UpstreamError::Timeout {
                        host,
                        timeout: Duration::ZERO,
                    },
                )));
            }
            d.sent.store(true, Ordering::Relaxed);
            remaining = g.request_timeout;
        }
        Ok(Ready {
            request,
            signed_over,
            credential,
            remaining,
            _slot: slot,
        })
    }

    /// A 2xx answer: the account's budget told how it stands, the body decoded.
    fn answered(
        &self,
        span: &tracing::Span,
        resp: &upstream::RawResponse,
    ) -> Result<Reply, GatewayError> {
        let g = self.gateway;
        span.record("http.response.status_code", i64::from(resp.status));
        if let Some(wait) = upstream::exhausted_budget(&resp.headers) {
            g.limiter.throttled(self.bucket.as_ref(), Some(wait));
        } else if let Some(b) = &self.bucket {
            b.succeeded();
        }
        let request_id = upstream::request_id(&resp.headers, &resp.body);
        if let Some(id) = &request_id {
            span.record("ack.request_id", id.as_str());
        }
        let resp_desc = message_of(self.service, self.op, "Response")?;
        let decoded = translate::decode_response(self.op, &resp_desc, &resp.body)?;
        Ok(Reply {
            message: Bytes::from(decoded.encode_to_vec()),
            request_id,
            cache: None,
            replay: false,
        })
    }

    /// An error answer as an `UpstreamError` (the call's secrets withheld from its text): a
    /// refused signature diagnosed, a refused time corrected for the one resend.
    fn refused(
        &self,
        span: &tracing::Span,
        host: &str,
        resp: &upstream::RawResponse,
        signed_over: Option<&upstream::SignedOver>,
        key: &crate::signer::SigningKey,
    ) -> UpstreamError {
        let g = self.gateway;
        span.record("http.response.status_code", i64::from(resp.status));
        let secrets: Vec<&str> = [
            Some(key.access_key_secret().expose()),
            key.security_token().map(|t| t.expose()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut error = upstream::api_error(host, resp, &secrets);
        if let UpstreamError::Api {
            code, diagnosis, ..
        } = &mut error
        {
            if code == "SignatureDoesNotMatch" {
                let found = self.diagnose(signed_over, resp, key);
                g.metrics.signature_diagnosis(found.label);
                *diagnosis = Some(Box::new(found));
            } else if upstream::clock::time_refused(code)
                && g.upstream
                    .clock()
                    .correct(&resp.headers, std::time::SystemTime::now())
            {
                self.clock_corrected.store(true, Ordering::Relaxed);
            }
        }
        error
    }
}

/// A request ready to send, with what its answer is read with; the host slot is held until
/// the attempt ends.
struct Ready {
    request: upstream::SignedRequest,
    signed_over: Option<upstream::SignedOver>,
    credential: crate::vault::Credential,
    remaining: Duration,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// Why an attempt did not answer.
enum Failed {
    /// The upstream, or the way to it, failed: another attempt may succeed (`policy::may_retry`
    /// decides).
    Upstream(UpstreamError),
    /// The call ends with this error (no budget, no credential, no slot, a request that cannot
    /// be signed or sent, an answer that does not decode).
    Final(GatewayError),
}

/// What fails a step before the send ends the call (`?`); an upstream failure worth judging for
/// a retry is returned as `Failed::Upstream` explicitly, never through `?`.
impl<E: Into<GatewayError>> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed::Final(e.into())
    }
}

impl Attempts<'_> {
    /// Why the upstream refused the signature: what it quotes as signed, compared with what
    /// was signed here. The explanation names the profile and the AccessKey id, never a secret.
    fn diagnose(
        &self,
        signed_over: Option<&upstream::SignedOver>,
        resp: &upstream::RawResponse,
        key: &crate::signer::SigningKey,
    ) -> crate::error::SignatureDiagnosis {
        use crate::signer::diagnosis::{diagnose, Diagnosis, Signed};
        let (_, message) = upstream::error_code_and_message(resp);
        let found = match signed_over {
            Some(s) => diagnose(
                &Signed {
                    version: s.version,
                    string_to_sign: s.string_to_sign.expose(),
                    canonical_request: s.canonical_request.as_ref().map(|c| c.expose()),
                },
                &message,
            ),
            None => Diagnosis::Unknown,
        };
        let (profile, id) = (&self.profile.name, key.access_key_id());
        let explanation = match &found {
            Diagnosis::SecretMismatch => format!(
                "the upstream signed exactly what the gateway signed, so the AccessKey secret of profile `{profile}` does not belong to AccessKey id `{id}`: check the secret configured for the profile"
            ),
            Diagnosis::Canonicalization { part } => format!(
                "the upstream signed a different request than the gateway sent with profile `{profile}`: {part} differs (something between the gateway and the API, such as a proxy, may alter requests)"
            ),
            Diagnosis::Unknown => format!(
                "the upstream did not say what it signed; check the AccessKey pair of profile `{profile}` (AccessKey id `{id}`)"
            ),
        };
        crate::error::SignatureDiagnosis {
            label: found.label(),
            explanation,
        }
    }
}
