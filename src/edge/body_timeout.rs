//! The request-body timeout: a body must arrive within `timeout` of its head, extended by one
//! second for every `min_rate` bytes that did arrive (as Apache's `mod_reqtimeout` counts), so
//! a client that announces a body and sends nothing, or sends it a byte at a time, cannot hold
//! a call, and on HTTP/1.1 a connection, for long. A large body sent at a reasonable rate always
//! has time. The timer is only armed once the body is waited for: a body that came with its
//! head costs no timer.

use bytes::Buf as _;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How long a body may take: `timeout`, plus a second per `min_rate` bytes received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout {
    pub timeout: Duration,
    pub min_rate: usize,
}

/// A request body that fails once it is overdue.
pub struct TimedBody<B> {
    inner: B,
    limits: BodyTimeout,
    started: Instant,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, limits: BodyTimeout) -> Self {
        TimedBody {
            inner,
            limits,
            started: Instant::now(),
            received: 0,
            timer: None,
        }
    }

    /// When the body is overdue, given what has arrived.
    fn deadline(&self) -> Instant {
        let earned = self.received as f64 / self.limits.min_rate.max(1) as f64;
        self.started + self.limits.timeout + Duration::from_secs_f64(earned.min(86_400.0))
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = bytes::Bytes, Error = tonic::Status> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    this.received += data.map_or(0, |d| d.remaining() as u64);
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let deadline = this.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        crate::metrics::request_body_timed_out();
                        Poll::Ready(Some(Err(tonic::Status::deadline_exceeded(format!(
                            "the request body did not arrive in time: {} bytes in {:.1} s \
                             ([limits] grpc_request_body_timeout {} s, grpc_request_body_min_rate {} bytes/s)",
                            this.received,
                            this.started.elapsed().as_secs_f64(),
                            this.limits.timeout.as_secs_f64(),
                            this.limits.min_rate,
                        )))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn limits() -> BodyTimeout {
        BodyTimeout {
            timeout: Duration::from_millis(200),
            min_rate: 1000,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_comes_fails_at_the_timeout() {
        let (_tx, body) = http_body_util::channel::Channel::<bytes::Bytes, tonic::Status>::new(1);
        let started = Instant::now();
        let err = TimedBody::new(body, limits())
            .collect()
            .await
            .expect_err("times out");
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_arrive_earn_time_and_a_whole_body_passes() {
        let (mut tx, body) =
            http_body_util::channel::Channel::<bytes::Bytes, tonic::Status>::new(4);
        tokio::spawn(async move {
            // 500 bytes earn 0.5 s: the second part at 0.6 s is in time.
            tx.send_data(bytes::Bytes::from(vec![b'x'; 500]))
                .await
                .expect("sent");
            tokio::time::sleep(Duration::from_millis(600)).await;
            tx.send_data(bytes::Bytes::from_static(b"end"))
                .await
                .expect("sent");
        });
        let body = TimedBody::new(body, limits())
            .collect()
            .await
            .expect("in time")
            .to_bytes();
        assert_eq!(body.len(), 503);
    }
}
