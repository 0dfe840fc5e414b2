//! One subscriber's stream: the INITIAL message, then a message per change, heartbeats while
//! idle, and the FINAL message followed by the stream's status. A subscriber of a cluster's
//! events sends only those its `EventFilter` keeps. It is driven by the response
//! body being polled (no task of its own), so dropping the stream — the client cancelled or
//! went away — drops the receiver and is all it takes to leave.

use super::target::End;
use super::Observed;
use crate::config::WatchConfig;
use crate::proto::gateway::{TaskEvent, WatchEvent, WatchEventKind as Kind, WatchStatus};
use futures_util::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tonic::Status;

enum Step {
    Initial,
    Streaming,
    /// The FINAL message went out; the stream ends with this.
    Closing(Result<(), Status>),
    Done,
}

/// Whether the subscriber may still see its target; an error ends the stream with it.
pub type StillAllowed = Box<dyn Fn() -> Result<(), Status> + Send + Sync>;

/// Which events a subscriber is sent (a cluster's events: `WatchClusterEvents`). A change
/// whose new events it filters out all, with the status as it was, sends nothing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Lower-case levels; empty: every level.
    pub levels: Vec<String>,
    /// Events known when the stream opens are sent only from this time on; none: not at all.
    pub since: Option<SystemTime>,
}

impl EventFilter {
    fn keeps(&self, e: &TaskEvent, known_at_start: bool) -> bool {
        if !self.levels.is_empty() && !self.levels.contains(&e.level.to_ascii_lowercase()) {
            return false;
        }
        if !known_at_start {
            return true;
        }
        let Some(since) = self.since else {
            return false;
        };
        // An event whose time cannot be read is kept: it cannot be said to be older.
        OffsetDateTime::parse(&e.timestamp, &Rfc3339)
            .map_or(true, |at| at >= OffsetDateTime::from(since))
    }
}

pub struct Subscriber {
    rx: watch::Receiver<Arc<Observed>>,
    still_allowed: StillAllowed,
    step: Step,
    sent_sequence: u64,
    /// Events sent or skipped so far, counted among all the poller has seen (dropped ones
    /// included).
    sent_events: u64,
    /// With a filter: which events to send, and the status last sent (a change that brings
    /// nothing the subscriber keeps sends nothing).
    filter: Option<(EventFilter, Option<WatchStatus>)>,
    heartbeat: Duration,
    idle: Pin<Box<Sleep>>,
    /// The caller's deadline or the maximum watch duration, whichever is first.
    deadline: Pin<Box<Sleep>>,
}

impl Subscriber {
    pub fn new(
        rx: watch::Receiver<Arc<Observed>>,
        config: &WatchConfig,
        caller_deadline: Option<Duration>,
        still_allowed: StillAllowed,
    ) -> Self {
        let now = Instant::now();
        let limit = caller_deadline.map_or(config.max_duration, |d| d.min(config.max_duration));
        Subscriber {
            rx,
            still_allowed,
            step: Step::Initial,
            sent_sequence: 0,
            sent_events: 0,
            filter: None,
            heartbeat: config.heartbeat_interval,
            idle: Box::pin(tokio::time::sleep_until(now + config.heartbeat_interval)),
            deadline: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    /// Sends only the events `filter` keeps (by default every event).
    pub fn with_filter(mut self, filter: EventFilter) -> Self {
        self.filter = Some((filter, None));
        self
    }

    pub fn into_stream(self) -> impl Stream<Item = Result<WatchEvent, Status>> + Send + 'static {
        futures_util::stream::unfold(self, |mut sub| async move {
            let item = sub.next().await?;
            Some((item, sub))
        })
    }

    async fn next(&mut self) -> Option<Result<WatchEvent, Status>> {
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::Done => None,
            Step::Closing(Ok(())) => None,
            Step::Closing(Err(status)) => Some(Err(status)),
            Step::Initial => {
                let snapshot = self.rx.borrow_and_update().clone();
                self.step = Step::Streaming;
                Some(Ok(self.message(Kind::Initial, &snapshot)))
            }
            Step::Streaming => {
                let event = self.streaming().await;
                // Checked when there is something to send: a caller whose access a reload
                // revoked gets no further status, only the refusal.
                if let Err(status) = (self.still_allowed)() {
                    self.step = Step::Done;
                    return Some(Err(status));
                }
                Some(Ok(event))
            }
        }
    }

    /// Waits for the next thing to send.
    async fn streaming(&mut self) -> WatchEvent {
        // Bounded: every pass either returns or consumes a change of the channel, and the
        // channel stops changing once the poller has published an end.
        loop {
            let snapshot = self.rx.borrow().clone();
            if let Some(end) = &snapshot.end {
                self.step = Step::Closing(match end {
                    End::Work(result) => result.clone(),
                    End::Poll(status) => Err(status.clone()),
                });
                return self.message(Kind::Final, &snapshot);
            }
            self.step = Step::Streaming;
            tokio::select! {
                biased;
                changed = self.rx.changed() => {
                    let snapshot = self.rx.borrow_and_update().clone();
                    if changed.is_err() && snapshot.end.is_none() {
                        // The poller is gone without an end: it cannot happen while this
                        // receiver exists, but a stream must never hang on it.
                        self.step = Step::Closing(Err(Status::unavailable("the watch's poller stopped")));
                        return self.message(Kind::Final, &snapshot);
                    }
                    if snapshot.end.is_some() || snapshot.sequence == self.sent_sequence {
                        continue;
                    }
                    let kind = if snapshot.poll_error.is_some() { Kind::PollError } else { Kind::Change };
                    let before = self.filter.as_ref().map(|(_, last)| last.clone());
                    let idle_at = self.idle.deadline();
                    let message = self.message(kind, &snapshot);
                    // A change that brings a filtering subscriber nothing: no event it keeps,
                    // the status it was sent. Nothing is sent, and the heartbeat stays due.
                    if let Some(last) = before {
                        if kind == Kind::Change
                            && message.new_events.is_empty()
                            && last.as_ref() == message.status.as_ref()
                        {
                            self.idle.as_mut().reset(idle_at);
                            continue;
                        }
                    }
                    return message;
                }
                () = &mut self.idle => {
                    let snapshot = self.rx.borrow().clone();
                    return self.message(Kind::Heartbeat, &snapshot);
                }
                () = &mut self.deadline => {
                    self.step = Step::Closing(Err(Status::deadline_exceeded(
                        "the watch reached its deadline or the gateway's maximum watch duration",
                    )));
                    let snapshot = self.rx.borrow().clone();
                    return self.message(Kind::Final, &snapshot);
                }
            }
        }
    }

    fn message(&mut self, kind: Kind, snapshot: &Observed) -> WatchEvent {
        // Where the subscriber is among the events, and the events new to it.
        let start = self.sent_events.saturating_sub(snapshot.events_dropped) as usize;
        let total = snapshot.events_dropped + snapshot.events.len() as u64;
        let fresh = snapshot.events.get(start..).unwrap_or_default();
        let initial = kind == Kind::Initial;
        let new_events = match &mut self.filter {
            None => fresh.to_vec(),
            Some((filter, last)) => {
                *last = Some(snapshot.status.clone());
                fresh
                    .iter()
                    .filter(|e| filter.keeps(e, initial))
                    .cloned()
                    .collect()
            }
        };
        self.sent_events = total;
        self.sent_sequence = snapshot.sequence;
        self.idle.as_mut().reset(Instant::now() + self.heartbeat);
        WatchEvent {
            kind: kind as i32,
            status: Some(snapshot.status.clone()),
            new_events,
            poll_error: snapshot.poll_error.clone(),
            observed_at: snapshot.observed_at.map(prost_types::Timestamp::from),
            sequence: snapshot.sequence,
        }
    }
}
