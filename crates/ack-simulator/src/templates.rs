//! Application deployment templates, per account. An update keeps the previous version, which
//! `DescribeTemplateAttribute` lists (newest first) as the API does.

use super::handlers::{body_json, required_str, Answer};
use super::state::{new_id, Resources, Template, TemplateVersion};
use super::{ApiError, Request};
use serde_json::{json, Value};
use time::OffsetDateTime;

const DEFAULT_TYPE: &str = "kubernetes";

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "ErrorTemplateNotFound",
        format!("template {id} not found"),
    )
}

fn visible<'a>(
    state: &'a mut Resources,
    req: &Request,
    id: &str,
) -> Result<&'a mut Template, ApiError> {
    state
        .templates
        .get_mut(id)
        .filter(|t| t.owner == req.account)
        .ok_or_else(|| not_found(id))
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

pub fn create(state: &mut Resources, req: &Request) -> Answer {
    let body = body_json(req)?;
    let name = required_str(&body, "name", "MissingParameter.Name")?.to_string();
    let template = required_str(&body, "template", "MissingParameter.Template")?.to_string();
    let id = new_id("");
    let now = OffsetDateTime::now_utc();
    let template_type = body["template_type"]
        .as_str()
        .filter(|t| !t.is_empty())
        .unwrap_or(DEFAULT_TYPE)
        .to_string();
    state.templates.insert(
        id.clone(),
        Template {
            id: id.clone(),
            owner: req.account.clone(),
            versions: vec![TemplateVersion {
                name,
                template,
                template_type,
                description: text(&body, "description"),
                tags: text(&body, "tags"),
                created: now,
                updated: now,
                hist_id: new_id(""),
            }],
        },
    );
    Ok(Some(json!({ "template_id": id })))
}

pub fn list(state: &mut Resources, req: &Request) -> Answer {
    let wanted = req.query_param("template_type").unwrap_or(DEFAULT_TYPE);
    let (page_size, page_number) = req.page("page_size", "page_num");
    let matching: Vec<Value> = state
        .templates
        .values()
        .filter(|t| t.owner == req.account)
        .filter_map(|t| t.current().map(|v| (t, v)))
        .filter(|(_, v)| v.template_type == wanted)
        .map(|(t, v)| t.version_json(v))
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .into_iter()
        .skip((page_number - 1) * page_size)
        .take(page_size)
        .collect();
    Ok(Some(json!({
        "templates": page,
        "page_info": {"page_number": page_number, "page_size": page_size, "total_count": total},
    })))
}

pub fn attribute(state: &mut Resources, req: &Request) -> Answer {
    let t = visible(state, req, req.path_param("template_id"))?;
    let versions: Vec<Value> = t.versions.iter().map(|v| t.version_json(v)).collect();
    Ok(Some(Value::Array(versions)))
}

pub fn update(state: &mut Resources, req: &Request) -> Answer {
    let body = body_json(req)?;
    let t = visible(state, req, req.path_param("template_id"))?;
    let Some(current) = t.current().cloned() else {
        return Err(not_found(&t.id));
    };
    let pick = |key: &str, old: &str| {
        body[key]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| old.to_string())
    };
    let next = TemplateVersion {
        name: pick("name", &current.name),
        template: pick("template", &current.template),
        template_type: pick("template_type", &current.template_type),
        description: pick("description", &current.description),
        tags: pick("tags", &current.tags),
        created: current.created,
        updated: OffsetDateTime::now_utc(),
        hist_id: new_id(""),
    };
    t.versions.insert(0, next);
    Ok(None)
}

pub fn delete(state: &mut Resources, req: &Request) -> Answer {
    let id = req.path_param("template_id").to_string();
    visible(state, req, &id)?;
    state.templates.remove(&id);
    Ok(None)
}
