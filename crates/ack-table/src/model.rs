//! The operation table's data model: plain serde types with no other dependencies, so that
//! `build.rs` can include this file to generate the `.proto` files from the same definitions
//! the gateway runs on.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole table: the services and every operation they offer.
#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    pub services: BTreeMap<String, ServiceInfo>,
    pub operations: Vec<Operation>,
}

/// One upstream API product, exposed as one gRPC service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInfo {
    /// Protobuf package, e.g. `alibabacloud.cs.v20151215`.
    pub package: String,
    /// gRPC service name inside the package, e.g. `ContainerService`.
    pub service: String,
    pub product: String,
    /// API version sent upstream (`x-acs-version` or `Version`).
    pub version: String,
    pub style: Style,
    /// Default endpoint host; `{region}` is replaced by the call's region.
    pub endpoint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// REST-style: method + path, `Authorization: acs AK:Sig` header signature.
    Roa,
    /// RPC-style: `Action` + query parameters, `Signature` query parameter.
    Rpc,
}

/// One API operation: how its request maps to HTTP, its response shape and its policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub name: String,
    /// Key into [`Table::services`].
    pub service: String,
    pub style: Style,
    #[serde(default)]
    pub version: Option<String>,
    pub method: String,
    /// Path template with `{field_name}` placeholders.
    pub path: String,
    #[serde(default)]
    pub summary: Option<String>,
    pub body: BodyKind,
    pub fields: Vec<Field>,
    pub response: ResponseSpec,
    pub policy: Policy,
    /// Groups of fields of which at least one must be set.
    #[serde(default)]
    pub required_one_of: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// The body fields form one JSON object.
    Object,
    /// The single `whole_body` field is sent as a bare JSON array.
    Array,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    Path,
    Query,
    Body,
}

/// A field of a request, a response or a nested structure.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// snake_case proto field name (absent for array items and map values).
    #[serde(default)]
    pub name: Option<String>,
    /// The exact name on the wire (JSON key, query key or path placeholder).
    #[serde(default)]
    pub wire_name: Option<String>,
    /// Where a top-level request field goes.
    #[serde(default, rename = "in")]
    pub location: Option<Location>,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// The current SDK marks the field required but the API documents do not; not enforced.
    #[serde(default)]
    pub sdk_required: bool,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub whole_body: bool,
    #[serde(default)]
    pub seed_only: bool,
    /// A path field also sent in the body under this key (the same resource, named twice).
    #[serde(default)]
    pub body_wire_name: Option<String>,
    /// How an array query parameter is encoded: `json`, `simple` (comma-joined) or
    /// `repeat_list:<Sub>` (flattened `Name.N.Sub`).
    #[serde(default)]
    pub serialization: Option<String>,
    /// Shared message name for objects.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub fields: Option<Vec<Field>>,
    #[serde(default)]
    pub items: Option<Box<Field>>,
    #[serde(default)]
    pub values: Option<Box<Field>>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Integer,
    Int64,
    Boolean,
    Number,
    Array,
    Object,
    Map,
    Any,
}

/// The response body's shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    pub kind: ResponseKind,
    #[serde(default)]
    pub fields: Option<Vec<Field>>,
    #[serde(default)]
    pub items: Option<Box<Field>>,
    #[serde(default)]
    pub values: Option<Box<Field>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseKind {
    /// A JSON object whose keys are the response fields.
    Object,
    /// A bare JSON array, wrapped as the response's `items` field.
    Array,
    /// A JSON object keyed by data (e.g. add-on names), wrapped as `entries`.
    Map,
    /// Raw text, wrapped as `body`.
    String,
    /// No body.
    None,
}

/// What the gateway does around the call: caching, invalidation, secrets, watchers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A read changes nothing upstream, so it may be cached and retried.
    pub read: bool,
    /// Cache lifetime; `None` means never cached.
    pub cache_ttl_ms: Option<u64>,
    /// The response carries secrets (kubeconfigs, join tokens, credentials).
    pub secrets: bool,
    /// Resource kind → path field naming the resource this operation concerns.
    #[serde(default)]
    pub scope: BTreeMap<String, String>,
    /// The account-wide collection a list read belongs to.
    #[serde(default)]
    pub collection: Option<String>,
    /// Collections a successful mutation makes stale.
    #[serde(default)]
    pub invalidates: Vec<String>,
    /// The watcher that can follow what this operation started.
    #[serde(default)]
    pub watch: Option<String>,
    /// A write's request field that the API uses to drop duplicates (`client_token`): a
    /// resend carrying the same token applies nothing.
    #[serde(default)]
    pub client_token: Option<String>,
    /// How one read tells whether a write whose answer was lost was applied.
    #[serde(default)]
    pub outcome_check: Option<OutcomeCheck>,
}

/// One read that tells whether a write was applied: the gateway asks it when a write may have
/// reached the cloud without an answer, instead of sending the write a second time blindly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeCheck {
    /// The read operation (same service).
    pub read: String,
    /// The read's request: read field → the write's request field giving its value.
    pub request: BTreeMap<String, String>,
    /// A repeated field of the read's answer: the condition holds when any item meets it.
    #[serde(default)]
    pub items: Option<String>,
    /// The dotted path (in an item, else in the answer) the condition looks at.
    pub field: String,
    /// Applied when `field` equals this field of the write's request…
    #[serde(default)]
    pub equals: Option<String>,
    /// …or when `field` is one of these values.
    #[serde(default)]
    pub any_of: Vec<String>,
    /// What a NOT_FOUND answer of the read means.
    pub not_found: NotFoundMeans,
    /// The write's answer, when applied: answer field → dotted path in the matched item (or the
    /// read's answer); fields the write's request has under the same name are copied too.
    #[serde(default)]
    pub answer: BTreeMap<String, String>,
}

/// What NOT_FOUND from an outcome check's read means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotFoundMeans {
    /// The write removed the resource.
    Applied,
    /// What the write would have made is not there.
    NotApplied,
}

// === impl Field ===

impl Field {
    /// A field with only a name and a shape: the wrappers of bare-array, map and text
    /// responses (`items`, `entries`, `body`), which the table does not list.
    pub fn synthetic(
        name: Option<&str>,
        ty: FieldType,
        items: Option<Field>,
        values: Option<Field>,
    ) -> Field {
        Field {
            name: name.map(str::to_string),
            wire_name: None,
            location: None,
            ty,
            format: None,
            required: false,
            sdk_required: false,
            sensitive: false,
            whole_body: false,
            seed_only: false,
            body_wire_name: None,
            serialization: None,
            model: None,
            fields: None,
            items: items.map(Box::new),
            values: values.map(Box::new),
            description: None,
        }
    }

    /// The key used on the wire and as the proto `json_name`.
    pub fn json_key(&self) -> &str {
        self.wire_name
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or_default()
    }

    /// The proto field name.
    pub fn proto_name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}
