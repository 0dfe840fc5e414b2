//! Routing: each operation's path template from the table, matched against a request's path
//! (percent-decoded segments) to the operation and its path parameters; and which handler
//! answers an operation (the stateful ones, else the catalogue's sample).

use super::*;

pub(crate) enum Segment {
    Literal(String),
    Param(String),
}

pub(crate) struct Route {
    pub(crate) method: String,
    pub(crate) segments: Vec<Segment>,
    pub(crate) operation: String,
    pub(crate) literal_count: usize,
}

pub(crate) fn build_routes(table: &OperationTable) -> Vec<Route> {
    table
        .operations()
        .filter(|op| op.style == Style::Roa)
        .map(|op| {
            let segments: Vec<Segment> = op
                .path
                .split('/')
                .skip(1)
                .map(
                    |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => Segment::Param(name.to_string()),
                        None => Segment::Literal(s.to_string()),
                    },
                )
                .collect();
            let literal_count = segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            Route {
                method: op.method.clone(),
                segments,
                operation: op.name.clone(),
                literal_count,
            }
        })
        .collect()
}

/// Matches a raw (still percent-encoded) path; the most specific route wins.
pub(crate) fn route<'a>(
    routes: &'a [Route],
    method: &str,
    raw_path: &str,
) -> Option<(&'a Route, HashMap<String, String>)> {
    let parts: Vec<&str> = raw_path.split('/').skip(1).collect();
    let mut best: Option<(&Route, HashMap<String, String>)> = None;
    for r in routes
        .iter()
        .filter(|r| r.method == method && r.segments.len() == parts.len())
    {
        let mut params = HashMap::new();
        let ok = r.segments.iter().zip(&parts).all(|(seg, part)| match seg {
            Segment::Literal(l) => l == part,
            Segment::Param(name) => {
                params.insert(name.clone(), decode(part));
                !part.is_empty()
            }
        });
        if ok
            && best
                .as_ref()
                .is_none_or(|(b, _)| r.literal_count > b.literal_count)
        {
            best = Some((r, params));
        }
    }
    best
}

pub(crate) fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

pub(crate) fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

// --- HTTP handlers ---

/// Dispatches to a stateful handler, or answers with a sample of the operation's shape.
pub(crate) fn answer(shared: &Core, op: &Operation, req: &Request) -> handlers::Answer {
    let s = &shared.settings;
    if op.style == Style::Rpc {
        return match op.name.as_str() {
            "AssumeRole" => handlers::assume_role(req, s),
            "AddExistedNodes" => handlers::add_existed_nodes(req),
            _ => Ok(sample::response(op, &req.request_id)),
        };
    }
    // Path parameters are always required, as the API validates them.
    for f in op
        .fields
        .iter()
        .filter(|f| f.location == Some(Location::Path))
    {
        if req.path_param(f.proto_name()).is_empty() {
            return Err(ApiError::new(
                400,
                "MissingParameter",
                format!("{} is required", f.json_key()),
            ));
        }
    }
    let mut state = shared.state.lock().expect("state lock");
    state.tick();
    match op.name.as_str() {
        "CreateCluster" => handlers::create_cluster(&mut state, req, s),
        "DescribeClusterDetail" => handlers::describe_cluster_detail(&mut state, req),
        "DescribeClustersV1" => handlers::describe_clusters_v1(&mut state, req),
        "DeleteCluster" => handlers::delete_cluster(&mut state, req, s),
        "ScaleOutCluster" => handlers::scale_out_cluster(&mut state, req, s),
        "AttachInstances" => handlers::attach_instances(&mut state, req, s),
        "DescribeTaskInfo" => handlers::describe_task_info(&mut state, req),
        "CreateClusterNodePool" => nodepools::create(&mut state, req, s),
        "DescribeClusterNodePools" => nodepools::list(&mut state, req),
        "DescribeClusterNodes" => nodepools::nodes(&mut state, req),
        "DescribeClusterNodePoolDetail" => nodepools::detail(&mut state, req),
        "ModifyClusterNodePool" => nodepools::modify(&mut state, req, s),
        "ScaleClusterNodePool" => nodepools::scale(&mut state, req, s),
        "DeleteClusterNodepool" => nodepools::delete(&mut state, req, s),
        "CreateTemplate" => templates::create(&mut state, req),
        "DescribeTemplates" => templates::list(&mut state, req),
        "DescribeTemplateAttribute" => templates::attribute(&mut state, req),
        "UpdateTemplate" => templates::update(&mut state, req),
        "DeleteTemplate" => templates::delete(&mut state, req),
        "InstallClusterAddons" => addons::install(&mut state, req, s),
        "UnInstallClusterAddons" => addons::uninstall(&mut state, req, s),
        "UpgradeClusterAddons" => addons::upgrade(&mut state, req, s),
        "DescribeClusterAddonsVersion" => addons::versions(&mut state, req),
        "DescribeClusterAddonUpgradeStatus" => addons::upgrade_status(&mut state, req),
        "DescribeClusterAddonsUpgradeStatus" => addons::upgrade_statuses(&mut state, req),
        "GetClusterAddonInstance" => addons::instance(&mut state, req),
        "ListClusterAddonInstances" => addons::instances(&mut state, req),
        "TagResources" => tags::tag(&mut state, req),
        "UntagResources" => tags::untag(&mut state, req),
        "ListTagResources" => tags::list(&mut state, req),
        "ModifyClusterTags" => tags::modify_cluster_tags(&mut state, req),
        "UpgradeCluster" => upgrades::upgrade(&mut state, req, s),
        "GetUpgradeStatus" => upgrades::status(&mut state, req),
        "PauseClusterUpgrade" => upgrades::pause(&mut state, req),
        "ResumeUpgradeCluster" => upgrades::resume(&mut state, req),
        "CancelClusterUpgrade" => upgrades::cancel(&mut state, req),
        "DescribeClusterEvents" => events::describe(&mut state, req),
        "ModifyCluster" => handlers::modify_cluster(&mut state, req, s)
            .unwrap_or_else(|| Ok(sample::response(op, &req.request_id))),
        "RunClusterInspect" => inspect::run(&mut state, req, s)
            .unwrap_or_else(|| Ok(sample::response(op, &req.request_id))),
        "GetClusterInspectReportDetail" => inspect::detail(&mut state, req)
            .unwrap_or_else(|| Ok(sample::response(op, &req.request_id))),
        "ListClusterInspectReports" => inspect::list(&mut state, req)
            .unwrap_or_else(|| Ok(sample::response(op, &req.request_id))),
        _ => Ok(sample::response(op, &req.request_id)),
    }
}
