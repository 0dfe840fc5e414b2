//! Application deployment templates: every version kept, newest first, and a version's shape in
//! the API's answers.

use super::format::rfc3339;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// An application deployment template; every update keeps the previous version.
#[derive(Debug, Clone)]
pub struct Template {
    pub id: String,
    pub owner: String,
    /// Newest first.
    pub versions: Vec<TemplateVersion>,
}

#[derive(Debug, Clone)]
pub struct TemplateVersion {
    pub name: String,
    pub template: String,
    pub template_type: String,
    pub description: String,
    pub tags: String,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
    pub hist_id: String,
}

impl Template {
    pub fn current(&self) -> Option<&TemplateVersion> {
        self.versions.first()
    }

    pub fn version_json(&self, v: &TemplateVersion) -> Value {
        json!({
            "id": self.id,
            "acl": "private",
            "name": v.name,
            "template": v.template,
            "template_type": v.template_type,
            "description": v.description,
            "tags": v.tags,
            "template_with_hist_id": v.hist_id,
            "created": rfc3339(v.created),
            "updated": rfc3339(v.updated),
        })
    }
}
