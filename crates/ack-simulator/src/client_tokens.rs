//! Client tokens, honoured as the cloud honours them: a write that carries a non-empty client
//! token (CreateCluster's and ModifyCluster's `client_token`, RunClusterInspect's `clientToken`,
//! all in the JSON body; whichever request field the operation table names `client_token`) is
//! applied once. The first successful answer is remembered by (account, operation, token); a
//! resend with the same token gets that answer again and applies nothing. That is what makes a
//! write whose answer was lost safe to resend, and what a gateway's retries rely on.
//!
//! Only successful answers are remembered: a refused request changed nothing, so a resend is
//! judged afresh. The memory is bounded (`TOKEN_LIMIT`, oldest forgotten first), as the cloud
//! forgets tokens after a while.

use super::*;

/// How many tokens are remembered at most.
pub(crate) const TOKEN_LIMIT: usize = 10_000;

/// Whose token it is: (account, operation, token).
type TokenKey = (String, String, String);

/// A remembered answer: its status and body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FirstAnswer {
    pub(crate) status: u16,
    pub(crate) body: Option<Value>,
}

/// The answers of the writes applied with a client token, the latest `TOKEN_LIMIT` of them.
#[derive(Default)]
pub(crate) struct ClientTokens {
    answers: HashMap<TokenKey, FirstAnswer>,
    /// Keys in the order they were remembered, to forget the oldest first.
    order: VecDeque<TokenKey>,
}

fn key(account: &str, operation: &str, token: &str) -> TokenKey {
    (
        account.to_string(),
        operation.to_string(),
        token.to_string(),
    )
}

impl ClientTokens {
    /// The answer the write with this token got, if it was applied (and not forgotten).
    pub(crate) fn first_answer(
        &self,
        account: &str,
        operation: &str,
        token: &str,
    ) -> Option<&FirstAnswer> {
        self.answers.get(&key(account, operation, token))
    }

    /// Remembers the answer of a write applied with this token.
    pub(crate) fn remember(
        &mut self,
        account: &str,
        operation: &str,
        token: &str,
        answer: FirstAnswer,
    ) {
        let k = key(account, operation, token);
        if self.answers.insert(k.clone(), answer).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > TOKEN_LIMIT {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.answers.remove(&old);
        }
    }
}

/// The non-empty client token a request to `op` carries, if the operation has one: the
/// top-level request field named `client_token`, read where the table puts it on the wire
/// (a JSON body key or a query parameter, under its wire name).
pub(crate) fn client_token(
    op: &Operation,
    query: &[(String, String)],
    body: &[u8],
) -> Option<String> {
    let field = op
        .fields
        .iter()
        .find(|f| f.proto_name() == "client_token")?;
    let token = match field.location? {
        Location::Query => query
            .iter()
            .find(|(k, _)| k == field.json_key())
            .map(|(_, v)| v.clone()),
        Location::Body => serde_json::from_slice::<Value>(body)
            .ok()?
            .get(field.json_key())?
            .as_str()
            .map(str::to_string),
        Location::Path => None,
    };
    token.filter(|t| !t.is_empty())
}

#[cfg(test)]
mod client_token_tests {
    use super::*;

    fn op(name: &str) -> Operation {
        table::builtin()
            .operations()
            .find(|o| o.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is in the table"))
    }

    #[test]
    fn the_client_token_is_read_from_the_body_under_its_wire_name() {
        let create = op("CreateCluster");
        let body = br#"{"name":"a","client_token":"tok-1"}"#;
        assert_eq!(client_token(&create, &[], body).as_deref(), Some("tok-1"));
        let modify = op("ModifyCluster");
        assert_eq!(
            client_token(&modify, &[], br#"{"client_token":"tok-2"}"#).as_deref(),
            Some("tok-2")
        );
        let inspect = op("RunClusterInspect");
        assert_eq!(
            client_token(&inspect, &[], br#"{"clientToken":"tok-3"}"#).as_deref(),
            Some("tok-3")
        );
        assert_eq!(
            client_token(&inspect, &[], br#"{"client_token":"tok-3"}"#),
            None,
            "RunClusterInspect's wire name is clientToken"
        );
        // A token in the query is not the body's; empty, missing or unparsable: none.
        let q = [("client_token".to_string(), "tok-q".to_string())];
        assert_eq!(client_token(&create, &q, b""), None);
        assert_eq!(client_token(&create, &[], br#"{"client_token":""}"#), None);
        assert_eq!(client_token(&create, &[], b"not json"), None);
        assert_eq!(client_token(&op("DeleteCluster"), &[], body), None);
    }

    #[test]
    fn remembered_tokens_are_bounded_and_scoped_by_account_and_operation() {
        let mut tokens = ClientTokens::default();
        let answer = |n: u64| FirstAnswer {
            status: 200,
            body: Some(json!({ "n": n })),
        };
        tokens.remember("acct", "CreateCluster", "t", answer(1));
        assert_eq!(
            tokens.first_answer("acct", "CreateCluster", "t"),
            Some(&answer(1))
        );
        assert!(tokens.first_answer("other", "CreateCluster", "t").is_none());
        assert!(tokens.first_answer("acct", "ModifyCluster", "t").is_none());
        for i in 0..TOKEN_LIMIT as u64 {
            tokens.remember("acct", "CreateCluster", &format!("t{i}"), answer(i));
        }
        assert!(
            tokens.first_answer("acct", "CreateCluster", "t").is_none(),
            "the oldest is forgotten"
        );
        assert!(tokens.first_answer("acct", "CreateCluster", "t0").is_some());
        assert_eq!(tokens.answers.len(), TOKEN_LIMIT);
        assert_eq!(tokens.order.len(), TOKEN_LIMIT);
    }
}
