//! Outcome checks (the table's `outcome_check`): whether one read's answer shows that a write
//! was applied, and the write's answer made from it. Pure functions over JSON (proto field
//! names), driven by the table, never by code per operation.

use crate::table::{NotFoundMeans, OutcomeCheck};
use serde_json::{Map, Value};

/// The values at a dotted path (`a.b.c`) of `value`; a repeated field on the way contributes
/// each of its items.
pub(super) fn at_path<'v>(value: &'v Value, path: &str) -> Vec<&'v Value> {
    let mut here = vec![value];
    for part in path.split('.').filter(|p| !p.is_empty()) {
        here = here
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().filter_map(|i| i.get(part)).collect(),
                _ => v.get(part).into_iter().collect::<Vec<_>>(),
            })
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().collect(),
                _ => vec![v],
            })
            .collect();
    }
    here
}

/// `Some(the write's answer)` when the read's answer (`None`: the read said NOT_FOUND) shows the
/// write was applied; `None` when it shows it was not.
pub(super) fn applied(
    check: &OutcomeCheck,
    request: &Value,
    answer: Option<&Value>,
) -> Option<Value> {
    let mut made = Map::new();
    let matched = match answer {
        None => {
            if check.not_found == NotFoundMeans::NotApplied {
                return None;
            }
            None
        }
        Some(answer) => {
            let candidates: Vec<&Value> = match &check.items {
                Some(items) => at_path(answer, items),
                None => vec![answer],
            };
            let wanted: Vec<&Value> = match &check.equals {
                Some(field) => at_path(request, field),
                None => Vec::new(),
            };
            let meets = |item: &&Value| {
                at_path(item, &check.field).iter().any(|v| {
                    wanted.contains(v)
                        || v.as_str()
                            .is_some_and(|s| check.any_of.iter().any(|a| a == s))
                })
            };
            Some(candidates.into_iter().find(meets)?)
        }
    };
    // The write's answer: what the request names under the answer's field names, then what
    // the matched item gives.
    for (to, from) in &check.answer {
        let value = matched
            .and_then(|m| at_path(m, from).first().copied())
            .or_else(|| at_path(request, from).first().copied());
        if let Some(v) = value {
            made.insert(to.clone(), v.clone());
        }
    }
    Some(Value::Object(made))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> OutcomeCheck {
        serde_json::from_value(v).expect("check")
    }

    #[test]
    fn paths_go_through_messages_and_lists() {
        let v = json!({"a": {"b": [{"c": 1}, {"c": 2}]}, "s": "x"});
        assert_eq!(at_path(&v, "a.b.c"), [&json!(1), &json!(2)]);
        assert_eq!(at_path(&v, "s"), [&json!("x")]);
        assert!(at_path(&v, "a.missing").is_empty());
    }

    #[test]
    fn a_node_pool_by_name_tells_a_create_applied_and_gives_its_id() {
        let c = check(json!({
            "read": "DescribeClusterNodePools", "request": {"cluster_id": "cluster_id"},
            "items": "nodepools", "field": "nodepool_info.name", "equals": "nodepool_info.name",
            "not_found": "not_applied", "answer": {"nodepool_id": "nodepool_info.nodepool_id"}
        }));
        let request = json!({"cluster_id": "c1", "nodepool_info": {"name": "np-a"}});
        let answer = json!({"nodepools": [
            {"nodepool_info": {"name": "other", "nodepool_id": "np1"}},
            {"nodepool_info": {"name": "np-a", "nodepool_id": "np2"}}
        ]});
        assert_eq!(
            applied(&c, &request, Some(&answer)),
            Some(json!({"nodepool_id": "np2"}))
        );
        let without = json!({"nodepools": [{"nodepool_info": {"name": "other"}}]});
        assert_eq!(applied(&c, &request, Some(&without)), None);
        assert_eq!(applied(&c, &request, None), None);
    }

    #[test]
    fn a_cluster_deleting_or_gone_tells_a_delete_applied() {
        let c = check(json!({
            "read": "DescribeClusterDetail", "request": {"cluster_id": "cluster_id"},
            "field": "state", "any_of": ["deleting", "deleted"],
            "not_found": "applied", "answer": {"cluster_id": "cluster_id"}
        }));
        let request = json!({"cluster_id": "c1"});
        let deleting = json!({"cluster_id": "c1", "state": "deleting"});
        assert_eq!(
            applied(&c, &request, Some(&deleting)),
            Some(json!({"cluster_id": "c1"}))
        );
        assert_eq!(
            applied(&c, &request, None),
            Some(json!({"cluster_id": "c1"}))
        );
        let running = json!({"cluster_id": "c1", "state": "running"});
        assert_eq!(applied(&c, &request, Some(&running)), None);
    }
}
