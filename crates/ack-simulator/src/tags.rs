//! Cluster tags: `ModifyClusterTags` on one cluster, and the tag service's `TagResources`,
//! `UntagResources` and `ListTagResources` over clusters (resource type `CLUSTER`). Every path
//! changes the same tags that `DescribeClusterDetail` shows.

use super::handlers::{body_json, query_list, visible_mut, Answer};
use super::state::{Cluster, Resources};
use super::{ApiError, Request};
use serde_json::{json, Value};

/// The resource type the tag operations accept, and how `ListTagResources` names it.
const RESOURCE_TYPE: &str = "CLUSTER";
const LISTED_TYPE: &str = "ALIYUN::CS::CLUSTER";

fn check_type(resource_type: Option<&str>) -> Result<(), ApiError> {
    match resource_type {
        Some(t) if t.eq_ignore_ascii_case(RESOURCE_TYPE) => Ok(()),
        Some(t) => Err(ApiError::new(
            400,
            "InvalidParameter.ResourceType",
            format!("resource_type {t} is not supported; use {RESOURCE_TYPE}"),
        )),
        None => Err(ApiError::new(
            400,
            "MissingParameter.ResourceType",
            "resource_type is mandatory",
        )),
    }
}

/// The caller's clusters named by `ids`, in `region` when one is given; every id must exist.
fn clusters_mut<'a>(
    state: &'a mut Resources,
    req: &Request,
    ids: &[String],
    region: Option<&str>,
) -> Result<Vec<&'a mut Cluster>, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::new(
            400,
            "MissingParameter.ResourceIds",
            "resource_ids must name at least one resource",
        ));
    }
    for id in ids {
        let c = visible_mut(state, req, id)?;
        if region.is_some_and(|r| r != c.region_id) {
            return Err(ApiError::new(
                404,
                "ErrorClusterNotFound",
                format!(
                    "cluster {id} not found in region {}",
                    region.unwrap_or_default()
                ),
            ));
        }
    }
    Ok(state
        .clusters
        .values_mut()
        .filter(|c| ids.contains(&c.id))
        .collect())
}

pub fn modify_cluster_tags(state: &mut Resources, req: &Request) -> Answer {
    let body = body_json(req)?;
    let tags = body.as_array().cloned().unwrap_or_default();
    let cluster = visible_mut(state, req, req.path_param("cluster_id"))?;
    cluster.set_tags(&tags);
    Ok(None)
}

pub fn tag(state: &mut Resources, req: &Request) -> Answer {
    let body = body_json(req)?;
    check_type(body["resource_type"].as_str())?;
    let ids: Vec<String> = body["resource_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let tags = body["tags"].as_array().cloned().unwrap_or_default();
    if tags.is_empty() {
        return Err(ApiError::new(
            400,
            "MissingParameter.Tags",
            "tags must list at least one tag",
        ));
    }
    for c in clusters_mut(state, req, &ids, body["region_id"].as_str())? {
        c.set_tags(&tags);
    }
    Ok(Some(json!({ "RequestId": req.request_id })))
}

pub fn untag(state: &mut Resources, req: &Request) -> Answer {
    check_type(req.query_param("resource_type"))?;
    let ids = query_list(req, "resource_ids");
    let keys = query_list(req, "tag_keys");
    let all = req.query_param("all") == Some("true");
    for c in clusters_mut(state, req, &ids, req.query_param("region_id"))? {
        c.tags
            .retain(|t| !all && !keys.iter().any(|k| t["key"].as_str() == Some(k.as_str())));
        c.updated = time::OffsetDateTime::now_utc();
    }
    Ok(Some(json!({ "RequestId": req.request_id })))
}

pub fn list(state: &mut Resources, req: &Request) -> Answer {
    check_type(req.query_param("resource_type"))?;
    let ids = query_list(req, "resource_ids");
    let region = req.query_param("region_id");
    let wanted: Vec<Value> = req
        .query_param("tags")
        .and_then(|raw| serde_json::from_str(raw).ok())
        .unwrap_or_default();
    let has = |c: &Cluster, want: &Value| {
        c.tags.iter().any(|t| {
            t["key"] == want["key"] && (want["value"].is_null() || t["value"] == want["value"])
        })
    };
    let listed: Vec<Value> = state
        .clusters
        .values()
        .filter(|c| c.owner == req.account)
        .filter(|c| region.is_none_or(|r| r == c.region_id))
        .filter(|c| ids.is_empty() || ids.contains(&c.id))
        .filter(|c| wanted.iter().all(|w| has(c, w)))
        .flat_map(|c| {
            c.tags.iter().map(|t| {
                json!({"resource_id": c.id, "resource_type": LISTED_TYPE,
                       "tag_key": t["key"], "tag_value": t["value"]})
            })
        })
        .collect();
    Ok(Some(json!({
        "next_token": "",
        "request_id": req.request_id,
        "tag_resources": {"tag_resource": listed},
    })))
}
