//! The writes the simulator applied: every request of a mutating operation (the table's
//! `policy.read == false`) that its handler answered with success, counted and kept for tests
//! to read (`Simulator::applied`, `GET /__simulator/applied`). The request log says what was
//! received and answered; this says what took effect, which is what a test of lost answers and
//! retries needs: a write whose answer a fault lost after applying it is here, a write a fault
//! refused before applying it (`reset_unapplied`, an error answer) or a resend a client token
//! turned away is not.

use super::*;

/// One applied write, as the simulator's handler saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedWrite {
    pub operation: String,
    /// The request id the simulator gave the request (its `x-acs-request-id`).
    pub request_id: String,
    /// Decoded path parameters by name.
    pub path_params: BTreeMap<String, String>,
    /// Decoded query parameters in the order received, signature and security token left out.
    pub query: Vec<(String, String)>,
    /// The JSON body (`null` when there was none; a body that is not JSON, as its text).
    pub body: Option<Value>,
    /// The client token the request carried, for an operation that honours one.
    pub client_token: Option<String>,
}

/// What `GET /__simulator/applied` answers: how many writes were applied since the start (or
/// the last clear), and the latest of them, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AppliedWrites {
    pub count: u64,
    pub writes: Vec<AppliedWrite>,
}

/// Applied writes kept, oldest dropped first: at most this many…
pub(crate) const APPLIED_LIMIT: usize = 100_000;
/// …and at most this many bytes of path parameters, queries and bodies. The count goes on
/// counting whatever is dropped.
pub(crate) const APPLIED_BYTES: usize = 32 * 1024 * 1024;

/// The count of applied writes and the latest of them within the limits.
#[derive(Default)]
pub(crate) struct AppliedLog {
    count: u64,
    /// Each write with the bytes it is accounted for.
    entries: VecDeque<(AppliedWrite, usize)>,
    bytes: usize,
}

impl AppliedWrite {
    /// The write `request` made to `op`.
    pub(crate) fn of(op: &Operation, request: &Request, client_token: Option<&str>) -> Self {
        AppliedWrite {
            operation: op.name.clone(),
            request_id: request.request_id.clone(),
            path_params: request
                .path_params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            query: request
                .query
                .iter()
                .filter(|(k, _)| k != "Signature" && k != "SecurityToken")
                .cloned()
                .collect(),
            body: body_value(&request.body),
            client_token: client_token.map(str::to_string),
        }
    }
}

/// The body as JSON; `None` when empty; its text when it is not JSON.
fn body_value(body: &[u8]) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    )
}

impl AppliedLog {
    /// What keeping `w` costs, `raw_body` being the length of the body as received.
    fn size(w: &AppliedWrite, raw_body: usize) -> usize {
        w.operation.len()
            + w.request_id.len()
            + w.path_params
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + w.query
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + w.client_token.as_ref().map_or(0, String::len)
            + raw_body
            + 128
    }

    /// Counts `w` and keeps it, dropping the oldest past the limits.
    pub(crate) fn push(&mut self, w: AppliedWrite, raw_body: usize) {
        self.count += 1;
        let size = Self::size(&w, raw_body);
        self.bytes += size;
        self.entries.push_back((w, size));
        while self.entries.len() > APPLIED_LIMIT || self.bytes > APPLIED_BYTES {
            let Some((_, old)) = self.entries.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(old);
        }
    }

    /// The count and the kept writes of `operation` (every operation for `None`).
    pub(crate) fn snapshot(&self, operation: Option<&str>) -> AppliedWrites {
        AppliedWrites {
            count: self.count,
            writes: self
                .entries
                .iter()
                .map(|(w, _)| w)
                .filter(|w| operation.is_none_or(|o| w.operation == o))
                .cloned()
                .collect(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.count = 0;
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod applied_tests {
    use super::*;

    fn write(i: usize, body: Option<Value>) -> AppliedWrite {
        AppliedWrite {
            operation: format!("op{i}"),
            request_id: format!("R{i}"),
            path_params: BTreeMap::new(),
            query: Vec::new(),
            body,
            client_token: None,
        }
    }

    #[test]
    fn the_applied_log_is_bounded_but_the_count_keeps_counting() {
        let mut log = AppliedLog::default();
        for i in 0..APPLIED_LIMIT + 10 {
            log.push(write(i, None), 0);
        }
        let all = log.snapshot(None);
        assert_eq!(all.count, (APPLIED_LIMIT + 10) as u64);
        assert_eq!(all.writes.len(), APPLIED_LIMIT);
        assert_eq!(all.writes[0].operation, "op10", "the oldest are dropped");
        // Large bodies are bounded in bytes too.
        let mut log = AppliedLog::default();
        for i in 0..100 {
            log.push(write(i, Some(json!("x"))), 1 << 20);
        }
        assert!(log.bytes <= APPLIED_BYTES);
        assert!(log.snapshot(None).writes.len() <= 32);
        assert_eq!(log.snapshot(None).count, 100);
        log.clear();
        assert_eq!(log.snapshot(None), AppliedWrites::default());
        assert_eq!(log.bytes, 0);
    }

    #[test]
    fn an_applied_write_serializes_in_the_documented_shape() {
        let mut w = write(1, Some(json!({"name": "a"})));
        w.path_params.insert("cluster_id".into(), "c1".into());
        w.query.push(("k".into(), "v".into()));
        w.client_token = Some("tok".into());
        let v = serde_json::to_value(AppliedWrites {
            count: 1,
            writes: vec![w, write(2, None)],
        })
        .expect("serializes");
        assert_eq!(
            v,
            json!({"count": 1, "writes": [
                {"operation": "op1", "request_id": "R1", "path_params": {"cluster_id": "c1"},
                 "query": [["k", "v"]], "body": {"name": "a"}, "client_token": "tok"},
                {"operation": "op2", "request_id": "R2", "path_params": {}, "query": [],
                 "body": null, "client_token": null},
            ]})
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_kept_as_text() {
        assert_eq!(body_value(b""), None);
        assert_eq!(body_value(b"{\"a\":1}"), Some(json!({"a": 1})));
        assert_eq!(body_value(b"a=1&b=2"), Some(json!("a=1&b=2")));
    }
}
