//! What the simulator received: every request with what it answered, bounded in count and
//! bytes, for tests to read (`Simulator::requests`) and the control API to list.

use super::respond::Outcome;
use super::*;

/// A request as the simulator received it (credentials and signature headers left out).
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub operation: String,
    pub method: String,
    /// The path exactly as received, percent-encoding included.
    pub raw_path: String,
    /// Decoded query parameters in the order received.
    pub query: Vec<(String, String)>,
    pub body: String,
    pub headers: BTreeMap<String, String>,
    /// The status and body answered (whether or not a fault then lost them on the way); 0
    /// and an empty body when none was made (`reset_unapplied` closed the connection first).
    pub status: u16,
    pub response: String,
}

/// Recorded requests kept, oldest dropped first: at most this many…
pub(crate) const RECORD_LIMIT: usize = 50_000;
/// …and at most this many bytes of paths, queries, headers, bodies and answers.
pub(crate) const RECORD_BYTES: usize = 16 * 1024 * 1024;

/// The request log: the latest requests within `RECORD_LIMIT` and `RECORD_BYTES`.
#[derive(Default)]
pub(crate) struct RequestLog {
    pub(crate) entries: VecDeque<RecordedRequest>,
    pub(crate) bytes: usize,
}

impl RequestLog {
    pub(crate) fn size(r: &RecordedRequest) -> usize {
        r.raw_path.len()
            + r.body.len()
            + r.response.len()
            + r.query
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + r.headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 128
    }

    pub(crate) fn push(&mut self, r: RecordedRequest) {
        self.bytes += Self::size(&r);
        self.entries.push_back(r);
        while self.entries.len() > RECORD_LIMIT || self.bytes > RECORD_BYTES {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(Self::size(&old));
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &RecordedRequest> {
        self.entries.iter()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    shared: &Core,
    op: &Operation,
    method: &str,
    raw_path: &str,
    query: &[(String, String)],
    body: &[u8],
    headers: &BTreeMap<String, String>,
    outcome: &Outcome,
    body_text: &str,
) {
    let mut headers = headers.clone();
    headers.remove("authorization");
    headers.remove("x-acs-security-token");
    let query = query
        .iter()
        .filter(|(k, _)| k != "Signature" && k != "SecurityToken")
        .cloned()
        .collect();
    // Issued credentials are not kept in the record.
    let response = if op.policy.secrets {
        String::from("(withheld: carries secrets)")
    } else {
        body_text.to_string()
    };
    let mut recorded = shared.recorded.lock().expect("record lock");
    recorded.push(RecordedRequest {
        operation: op.name.clone(),
        method: method.to_string(),
        raw_path: raw_path.to_string(),
        query,
        body: String::from_utf8_lossy(body).into_owned(),
        headers,
        status: outcome.status,
        response,
    });
}

#[cfg(test)]
mod record_tests {
    use super::*;

    #[test]
    fn the_request_log_is_bounded_in_bytes_as_well_as_in_count() {
        let mut record = RequestLog::default();
        let big = |i: usize| RecordedRequest {
            operation: format!("op{i}"),
            method: "GET".into(),
            raw_path: "/".into(),
            query: Vec::new(),
            body: String::new(),
            headers: BTreeMap::new(),
            status: 200,
            response: "x".repeat(1 << 20),
        };
        for i in 0..100 {
            record.push(big(i));
        }
        assert!(record.bytes <= RECORD_BYTES);
        assert!(record.iter().count() <= 16);
        assert_eq!(
            record.iter().last().map(|r| r.operation.as_str()),
            Some("op99")
        );
        record.clear();
        assert_eq!((record.iter().count(), record.bytes), (0, 0));
    }
}
