//! A poller's snapshots as stored in the shared state (`shared`), so that the replica holding a
//! target's lease polls and the others relay what it stored: the snapshot as a `WatchEvent`
//! (status, every event, the poll error, when it was observed, its sequence) and how the watch
//! ended, if it has.

use super::target::End;
use super::Observed;
use crate::proto::gateway::WatchEvent;
use base64::Engine as _;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tonic::{Code, Status};

#[derive(Serialize, Deserialize)]
struct Stored {
    polled: bool,
    /// The snapshot as a `WatchEvent`, base64.
    event: String,
    end: Option<StoredEnd>,
    /// Events dropped from the front (a cluster's events past the window).
    #[serde(default)]
    dropped: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredEnd {
    /// The work ended (`End::Work`), or the target could not be polled (`End::Poll`).
    work: bool,
    code: i32,
    message: String,
    /// The status's `google.rpc` details, base64.
    details: String,
}

pub fn encode(snapshot: &Observed) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let event = WatchEvent {
        kind: 0,
        status: Some(snapshot.status.clone()),
        new_events: snapshot.events.to_vec(),
        poll_error: snapshot.poll_error.clone(),
        observed_at: snapshot.observed_at.map(prost_types::Timestamp::from),
        sequence: snapshot.sequence,
    };
    let end = snapshot.end.as_ref().map(|end| {
        let (work, status) = match end {
            End::Work(Ok(())) => (true, Status::ok("")),
            End::Work(Err(s)) => (true, s.clone()),
            End::Poll(s) => (false, s.clone()),
        };
        StoredEnd {
            work,
            code: status.code() as i32,
            message: status.message().to_string(),
            details: b64.encode(status.details()),
        }
    });
    let stored = Stored {
        polled: snapshot.polled,
        event: b64.encode(event.encode_to_vec()),
        end,
        dropped: snapshot.events_dropped,
    };
    serde_json::to_vec(&stored).unwrap_or_default()
}

pub fn decode(bytes: &[u8]) -> Option<Observed> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    let event = WatchEvent::decode(b64.decode(&stored.event).ok()?.as_slice()).ok()?;
    let end = match stored.end {
        None => None,
        Some(e) => {
            let details = b64.decode(&e.details).ok()?;
            let status = Status::with_details(Code::from(e.code), e.message, details.into());
            Some(match (e.work, status.code()) {
                (true, Code::Ok) => End::Work(Ok(())),
                (true, _) => End::Work(Err(status)),
                (false, _) => End::Poll(status),
            })
        }
    };
    Some(Observed {
        sequence: event.sequence,
        polled: stored.polled,
        status: event.status.unwrap_or_default(),
        events: Arc::new(event.new_events),
        events_dropped: stored.dropped,
        poll_error: event.poll_error,
        observed_at: event
            .observed_at
            .and_then(|t| std::time::SystemTime::try_from(t).ok()),
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::gateway::{TaskEvent, WatchStatus};
    use tonic_types::{ErrorDetails, StatusExt as _};

    #[test]
    fn a_snapshot_survives_the_round_trip() {
        let ended = Status::with_error_details(
            Code::Aborted,
            "task failed",
            ErrorDetails::with_error_info("ErrorVpcQuota", "cs.aliyuncs.com", []),
        );
        let snapshot = Observed {
            sequence: 7,
            polled: true,
            status: WatchStatus {
                target_id: "T-1".into(),
                phase: 5,
                ..Default::default()
            },
            events: Arc::new(vec![TaskEvent {
                reason: "Started".into(),
                ..Default::default()
            }]),
            events_dropped: 3,
            poll_error: None,
            observed_at: Some(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
            ),
            end: Some(End::Work(Err(ended))),
        };
        let back = decode(&encode(&snapshot)).expect("decodes");
        assert_eq!(back.sequence, 7);
        assert!(back.polled);
        assert_eq!(back.status, snapshot.status);
        assert_eq!(back.events, snapshot.events);
        assert_eq!(back.events_dropped, 3);
        assert_eq!(back.observed_at, snapshot.observed_at);
        let Some(End::Work(Err(status))) = back.end else {
            panic!("the end survives")
        };
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(
            status.get_details_error_info().expect("info").reason,
            "ErrorVpcQuota"
        );
        assert!(decode(b"not json").is_none());
    }
}
