#!/usr/bin/env python3
"""Derives the project's operation table (ops/operations.json) from the API catalogue.

The catalogue (cs-2015-12-15.json and rpc-operations.json, extracted from the official SDKs and the
API documents) is facts about the API. The operation table is what this project runs on: the same
facts trimmed to what the gateway needs, plus the columns that are ours (read/mutating, cache TTL,
secrets, resource scope, invalidation, watcher, client token, outcome check) and the parameters the documents describe that the
SDK no longer lists.

Usage: python3 ops/derive.py CATALOGUE_DIR > ops/operations.json
The table is committed; the gateway never reads the catalogue at build or run time.
"""
import json
import re
import sys

# Parameters documented in the API documents but absent from the current SDK (the catalogue's
# `seed_params_not_in_sdk`). Types follow the documents' request samples; all are optional.
SEED_ONLY_PARAMS = {
    "AttachInstances": [
        ("platform", "body", "string", "The architecture of the nodes that run pods, for example, x86."),
    ],
    "CreateCluster": [
        ("worker_data_disk", "body", "boolean", "Specifies whether to mount data disks to worker nodes."),
        ("public_slb", "body", "boolean", "Specifies whether to enable Internet access to the API server. Obsolete: replaced by `endpoint_public_access`."),
        ("worker_data_disk_category", "body", "string", "The data disk type of worker nodes. Takes effect only when `worker_data_disk` is true."),
        ("worker_data_disk_size", "body", "int64", "The data disk size of worker nodes, in GiB."),
        ("private_zone", "body", "boolean", "Whether to enable PrivateZone for service discovery."),
        ("worker_instance_type", "body", "string", "The instance type of worker nodes (sandboxed-container and edge clusters)."),
    ],
    "DescribeKubernetesVersionMetadata": [
        ("MultiAZ", "query", "boolean", "Whether to query multi-zone metadata."),
    ],
    "ScaleOutCluster": [
        ("disable_rollback", "body", "boolean", "Specifies whether to retain all resources if the operation fails."),
        ("worker_data_disk", "body", "boolean", "Specifies whether to mount data disks to worker nodes."),
        ("worker_instance_type", "body", "string", "The instance type of worker nodes (sandboxed-container and edge clusters)."),
        ("ens_region_id", "body", "string", "The region ID of ENS instances (edge clusters)."),
        ("worker_image_id", "body", "string", "The operating system image used by worker nodes (edge clusters)."),
        ("ens_internet_charge_type", "body", "string", "The billing method of ENS instances (edge clusters)."),
        ("is_edge_worker", "body", "boolean", "Specifies whether to configure the worker node as an edge node."),
        ("worker_data_disk_size", "body", "int64", "The data disk size of worker nodes, in GiB."),
        ("timeout_mins", "body", "int64", "The timeout in minutes within which resource creation must complete. Default value: 60."),
        ("worker_data_disk_category", "body", "string", "The data disk type of worker nodes."),
    ],
}
# ModifyClusterTags.tag is the documents' name for the items of the bare-array body (`body`).
SEED_ONLY_ALREADY_MODELLED = {("ModifyClusterTags", "tag")}

# Alternatives the catalogue marks as both required: exactly one of each group must be given.
REQUIRED_ONE_OF = {
    "ScaleOutCluster": [["key_pair", "login_password"], ["worker_instance_types", "worker_instance_type"]],
}

# Reads whose answers change rarely: cached longer than the default.
SLOW_CHANGING_READS = {
    "DescribeAddon": 300_000, "DescribeAddons": 300_000, "ListAddons": 300_000,
    "DescribeKubernetesVersionMetadata": 300_000, "DescribeRegions": 300_000,
    "DescribePolicies": 300_000, "DescribePolicyDetails": 300_000, "DescribeUserQuota": 60_000,
}
DEFAULT_READ_TTL_MS = 5_000
# Task and progress reads are what the watchers poll; a short TTL keeps polls fresh.
FAST_CHANGING_READS = {
    "DescribeTaskInfo": 1_000, "GetUpgradeStatus": 1_000, "DescribeClusterAddonUpgradeStatus": 1_000,
    "DescribeClusterAddonsUpgradeStatus": 1_000, "DescribeClusterTasks": 2_000,
}
# Reads that are POST upstream but change nothing.
POST_READS = {"DescribeClusterAttachScripts"}

# Path fields that name the resource an operation concerns, by resource kind.
SCOPE_FIELDS = {
    "cluster": ("cluster_id", "clusterid"),
    "nodepool": ("nodepool_id", "node_pool_id"),
    "template": ("template_id",),
}
# Collections (account-wide lists) that a mutation of a resource kind makes stale.
COLLECTIONS_BY_KIND = {
    "cluster": ["clusters"],
    "nodepool": [],
    "template": ["templates"],
}
LIST_COLLECTIONS = {
    "DescribeClusters": "clusters", "DescribeClustersV1": "clusters", "DescribeClustersForRegion": "clusters",
    "DescribeTemplates": "templates", "ListTagResources": "tags",
}
EXTRA_INVALIDATIONS = {
    "CreateCluster": ["clusters"], "DeleteCluster": ["clusters"], "CreateTemplate": ["templates"],
    "TagResources": ["tags", "clusters"], "UntagResources": ["tags", "clusters"],
    "ModifyClusterTags": ["tags", "clusters"],
}
# How a write whose answer was lost is told applied or not, with one read (`outcome_check` in the
# table): the read and its request (read field <- write field), the condition on its answer (on
# any item of `items` when given: `field` equal to the write's `equals` field, or one of
# `any_of`), what NOT_FOUND means, and the write's answer fields filled from the matched item.
OUTCOME_CHECKS = {
    "CreateClusterNodePool": {
        "read": "DescribeClusterNodePools", "request": {"cluster_id": "cluster_id"},
        "items": "nodepools", "field": "nodepool_info.name", "equals": "nodepool_info.name",
        "not_found": "not_applied", "answer": {"nodepool_id": "nodepool_info.nodepool_id"},
    },
    "DeleteCluster": {
        "read": "DescribeClusterDetail", "request": {"cluster_id": "cluster_id"},
        "field": "state", "any_of": ["deleting", "deleted"],
        "not_found": "applied", "answer": {"cluster_id": "cluster_id"},
    },
    "DeleteClusterNodepool": {
        "read": "DescribeClusterNodePoolDetail",
        "request": {"cluster_id": "cluster_id", "nodepool_id": "nodepool_id"},
        "field": "status.state", "any_of": ["deleting", "removing", "deleted"],
        "not_found": "applied", "answer": {},
    },
}
# Which watcher can follow what a mutating operation started.
WATCHERS = {
    "UpgradeCluster": "cluster_upgrade", "ResumeUpgradeCluster": "cluster_upgrade",
    "UpgradeClusterAddons": "addon_upgrade", "InstallClusterAddons": "task",
    "CreateCluster": "cluster", "DeleteCluster": "cluster", "ModifyCluster": "cluster",
}


def english(text):
    return text is not None and not re.search(r"[\u4e00-\u9fff]", text)


def describe(param):
    """The field's description: the catalogue's, else a seed's, English first."""
    candidates = [param.get("description")]
    docs = param.get("seed_docs") or []
    candidates += [d.get("description") for d in docs if d.get("seed", "").startswith("002")]
    candidates += [d.get("description") for d in docs]
    candidates = [c.strip() for c in candidates if c and c.strip()]
    for c in candidates:
        if english(c):
            return c
    return candidates[0] if candidates else None


def field(param, location=None, documented_op=False):
    out = {"name": param.get("name")}
    if param.get("wire_name") is not None:
        out["wire_name"] = param["wire_name"]
    if location:
        out["in"] = location
    out["type"] = param["type"]
    if param.get("format") == "float32":
        out["format"] = "float32"
    if param.get("int_width") == "unknown" and param["type"] == "integer":
        out["type"] = "int64"
    if param.get("required"):
        # For operations the API documents describe, a field is enforced as required only when
        # the documents agree: their samples omit some fields the current SDK marks required.
        docs = param.get("seed_docs") or []
        if documented_op and location != "path" and not any(d.get("required") is True for d in docs):
            out["sdk_required"] = True
        else:
            out["required"] = True
    if param.get("sensitive"):
        out["sensitive"] = True
    if param.get("whole_body"):
        out["whole_body"] = True
    ser = param.get("serialization")
    if ser:
        out["serialization"] = ser["style"]
    if param.get("model"):
        out["model"] = param["model"]
    if param.get("fields") is not None:
        out["fields"] = [field(f) for f in param["fields"]]
    if param.get("items") is not None:
        out["items"] = field(param["items"]) if isinstance(param["items"], dict) else param["items"]
    if param.get("values") is not None:
        out["values"] = field(param["values"])
    desc = describe(param)
    if desc:
        out["description"] = desc
    # Nested shapes carry no name of their own.
    if "name" in out and out["name"] is None:
        del out["name"]
    return out


def shape(schema):
    s = {"type": schema["type"]}
    if schema.get("model"):
        s["model"] = schema["model"]
    for key in ("fields",):
        if schema.get(key) is not None:
            s[key] = [field(f) for f in schema[key]]
    for key in ("items", "values"):
        if schema.get(key) is not None:
            s[key] = field(schema[key])
    if schema.get("format") == "float32":
        s["format"] = "float32"
    return s


# English summaries for operations whose catalogue summary is Chinese only or missing.
SUMMARY_TRANSLATIONS = {
    "CreateNodePoolComponentInstances": "Installs node components on a node pool.",
    "DeleteNodePoolComponentInstance": "Uninstalls a node component from a node pool.",
    "ListNodePoolComponentInstanceNodes": "Lists the nodes of a node component instance in a node pool.",
    "ListNodePoolComponentInstances": "Lists the node component instances of a node pool.",
    "ListNodePoolComponents": "Lists the node components that can be installed on node pools.",
    "RunNodeOperation": "Runs a maintenance operation on nodes.",
    "UpdateNodePoolComponentInstance": "Updates a node component instance of a node pool.",
    "ScaleOutCluster": "Adds worker nodes to a cluster.",
}


def summary(op):
    if op["name"] in SUMMARY_TRANSLATIONS:
        return SUMMARY_TRANSLATIONS[op["name"]]
    text = op.get("summary")
    if english(text):
        return text
    for line in op.get("seed_request_lines") or []:
        if line["seed"].startswith("002") and line.get("section") not in (None, "(start)"):
            return re.sub(r"^[0-9.]+\s*", "", line["section"]).strip() + "."
    return text


def scope_of(op_name, fields):
    scope = {}
    for kind, names in SCOPE_FIELDS.items():
        for f in fields:
            if f["in"] == "path" and f["name"] in names:
                scope[kind] = f["name"]
    return scope


def cs_operation(op):
    fields = []
    documented = bool(op.get("in_seeds"))
    for p in op["path_params"]:
        fields.append(field(p, "path", documented))
    for p in op["query_params"]:
        fields.append(field(p, "query", documented))
    for p in op["body_params"]:
        fields.append(field(p, "body", documented))
    known = {(op["name"], f["name"]) for f in fields}
    for (name, location, typ, desc) in SEED_ONLY_PARAMS.get(op["name"], []):
        # The proto field name is lower_snake_case (MultiAZ -> multi_az); the wire keeps the
        # documents' spelling.
        assert (op["name"], snake(name)) not in known, (op["name"], name)
        fields.append({"name": snake(name), "wire_name": name, "in": location, "type": typ,
                       "description": desc, "seed_only": True})
    for extra in op.get("seed_params_not_in_sdk") or []:
        listed = {n for (n, *_rest) in SEED_ONLY_PARAMS.get(op["name"], [])}
        if extra["name"] not in listed and (op["name"], extra["name"]) not in SEED_ONLY_ALREADY_MODELLED:
            raise SystemExit(f"seed-only parameter not mapped: {op['name']}.{extra['name']}")

    # A path field and a body field may share a name (CreateTrigger.cluster_id): they name the
    # same resource, so they are one proto field, sent in the path and in the body.
    merged = []
    for f in fields:
        twin = next((m for m in merged if m["name"] == f["name"]), None)
        if twin is None:
            merged.append(f)
        elif twin["in"] == "path" and f["in"] == "body":
            twin["body_wire_name"] = f["wire_name"]
        else:
            raise SystemExit(f"duplicate field {op['name']}.{f['name']}")
    fields = merged

    one_of = REQUIRED_ONE_OF.get(op["name"], [])
    for group in one_of:
        for f in fields:
            if f["name"] in group:
                f.pop("required", None)
                f.pop("sdk_required", None)

    body_kind = op["request_body"]["kind"]
    read = op["method"] == "GET" or op["name"] in POST_READS
    response = op["response"]
    secrets = bool(response.get("returns_secrets"))
    ttl = None
    if read and not secrets:
        ttl = FAST_CHANGING_READS.get(op["name"], SLOW_CHANGING_READS.get(op["name"], DEFAULT_READ_TTL_MS))
    scope = scope_of(op["name"], fields)
    invalidates = []
    if not read:
        for kind in scope:
            invalidates += COLLECTIONS_BY_KIND[kind]
        invalidates += EXTRA_INVALIDATIONS.get(op["name"], [])
        invalidates = sorted(set(invalidates))
    policy = {"read": read, "cache_ttl_ms": ttl, "secrets": secrets, "scope": scope}
    if read and op["name"] in LIST_COLLECTIONS:
        policy["collection"] = LIST_COLLECTIONS[op["name"]]
    if invalidates:
        policy["invalidates"] = invalidates
    if not read and any(f["name"] == "client_token" for f in fields):
        policy["client_token"] = "client_token"
    if op["name"] in OUTCOME_CHECKS:
        policy["outcome_check"] = OUTCOME_CHECKS[op["name"]]
    resp_fields = (response.get("schema") or {}).get("fields") or []
    if op["name"] in WATCHERS:
        policy["watch"] = WATCHERS[op["name"]]
    elif not read and any(f["name"] == "task_id" for f in resp_fields):
        policy["watch"] = "task"

    resp = {"kind": response["kind"]}
    if response.get("schema"):
        schema = response["schema"]
        if response["kind"] == "object":
            resp["fields"] = [field(f) for f in schema.get("fields") or []]
        elif response["kind"] == "array":
            resp["items"] = shape(schema["items"])
        elif response["kind"] == "map":
            resp["values"] = shape(schema["values"])

    out = {
        "name": op["name"],
        "service": "cs",
        "style": "roa",
        "method": op["method"],
        "path": op["path"],
        "summary": summary(op),
        "body": {"json_object": "object", "json_array": "array", "none": "none"}[body_kind],
        "fields": fields,
        "response": resp,
        "policy": policy,
    }
    if one_of:
        out["required_one_of"] = one_of
    return out


def rpc_operation(op):
    service = {"Sts": "sts", "EHPC": "ehpc"}[op["product"]]
    fields = []
    for p in op["params"]:
        f = {"name": snake(p.get("wire_prefix") or p["name"]), "wire_name": p.get("wire_prefix") or p["name"],
             "in": "query", "type": p["type"]}
        if p.get("required"):
            f["required"] = True
        if p.get("items"):
            f["items"] = {"type": p["items"]["type"],
                          "fields": [{"name": snake(x["name"]), "wire_name": x["wire_name"], "type": x["type"]}
                                     for x in p["items"].get("fields", [])]}
            f["serialization"] = p["serialization"]["style"]
        if p.get("description"):
            f["description"] = p["description"]
        fields.append(f)
    if service == "ehpc":
        # Instance.N.Id is a list of ids: a repeated string field flattened on the wire.
        for f in fields:
            if f["wire_name"] == "Instance":
                f["name"] = "instance_ids"
                f["items"] = {"type": "string"}
                f["serialization"] = "repeat_list:Id"
                f["description"] = "IDs of the ECS instances to add (sent as Instance.N.Id, N from 1); the instances must be stopped."
    resp_fields = [rpc_field(x) for x in op["response"]["schema"]["fields"]]
    read = False
    return {
        "name": op["name"],
        "service": service,
        "style": "rpc",
        "version": op["version"],
        "method": op["method"],
        "path": "/",
        "summary": {"sts": "Obtains a temporary STS credential (AccessKeyId, AccessKeySecret, SecurityToken) for a RAM role.",
                    "ehpc": "Adds existing ECS instances to an E-HPC cluster as compute nodes."}[service],
        "body": "none",
        "fields": fields,
        "response": {"kind": "object", "fields": resp_fields},
        "policy": {"read": read, "cache_ttl_ms": None, "secrets": service == "sts", "scope": {}},
    }


def rpc_field(x):
    f = {"name": snake(x["name"]), "wire_name": x["wire_name"], "type": x["type"]}
    if x.get("sensitive"):
        f["sensitive"] = True
    if x.get("fields"):
        f["fields"] = [rpc_field(y) for y in x["fields"]]
    if x.get("description"):
        f["description"] = x["description"]
    return f


def snake(name):
    name = name.replace(".", "_")
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "../shared/api"
    cs = json.load(open(f"{src}/cs-2015-12-15.json", encoding="utf-8"))
    rpc = json.load(open(f"{src}/rpc-operations.json", encoding="utf-8"))
    ops = [cs_operation(op) for op in cs["operations"]]
    ops += [rpc_operation(op) for op in rpc["operations"]]
    table = {
        "about": "The ack-gateway operation table. Derived by ops/derive.py from the API catalogue; edit the script, not this file.",
        "catalogue_sources": cs["meta"]["sources"],
        "services": {
            "cs": {"package": "alibabacloud.cs.v20151215", "service": "ContainerService", "product": "CS",
                   "version": "2015-12-15", "style": "roa", "endpoint": "cs.{region}.aliyuncs.com"},
            "sts": {"package": "alibabacloud.sts.v20150401", "service": "Sts", "product": "Sts",
                    "version": "2015-04-01", "style": "rpc", "endpoint": "sts.aliyuncs.com"},
            "ehpc": {"package": "alibabacloud.ehpc.v20180412", "service": "Ehpc", "product": "EHPC",
                     "version": "2018-04-12", "style": "rpc", "endpoint": "ehpc.{region}.aliyuncs.com"},
        },
        "operations": ops,
    }
    json.dump(table, sys.stdout, ensure_ascii=False, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
