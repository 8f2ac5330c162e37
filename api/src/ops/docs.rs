//! The API's own description: the OpenAPI document at `/openapi.json`,
//! and a reference page at `/docs` rendered from it on the server, so it
//! needs nothing from the internet.

use std::fmt::Write;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::OpenApi;
use utoipa_axum::routes;

use keyledger_http::Routes;

use super::OpsState;

pub fn routes() -> Routes<OpsState> {
    Routes::new().add(routes!(openapi_json)).add(routes!(reference))
}

fn document() -> &'static (OpenApi, String) {
    static DOCUMENT: OnceLock<(OpenApi, String)> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let document = crate::router::openapi();
        let json = document.to_pretty_json().expect("the OpenAPI document serialises");
        (document, json)
    })
}

/// The OpenAPI 3.1 document of every route.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    summary = "The OpenAPI document",
    responses(
        (status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = serde_json::Value),
        (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error)
    )
)]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document().1.clone()).into_response()
}

/// A reference page for people, from the same document.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "service",
    summary = "The API reference, as a web page",
    responses(
        (status = 200, description = "HTML", content_type = "text/html", body = String),
        (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error)
    )
)]
async fn reference() -> Html<String> {
    static PAGE: OnceLock<String> = OnceLock::new();
    Html(PAGE.get_or_init(|| render(&document().0)).clone())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The order of the page's groups: the native API first (its client
/// endpoints, then management), the server's own endpoints, then the other
/// API styles. A tag not listed comes after the native ones it belongs with.
const GROUPS: [(&str, &str); 16] = [
    ("client", "Client endpoints (native)"),
    ("licenses", "Licenses"),
    ("devices", "Devices"),
    ("audit", "Audit"),
    ("products", "Products"),
    ("releases", "Releases"),
    ("customers", "Customers"),
    ("webhooks", "Webhooks"),
    ("anomalies", "Anomalies"),
    ("tenants", "Tenants"),
    ("keys", "API keys and signing keys"),
    ("", "Other native operations"),
    ("service", "Service: status, health, metrics and this document"),
    ("signed-rsa", "API style: RSA-signed answers (/license/…)"),
    ("device-guard", "API style: validate-and-activate with device limits (/api/licenses/…)"),
    ("tenant-jwt", "API style: tenant keys and Ed25519 tokens (/v1/…)"),
];

/// Who may call an operation, from its security requirements: none, or
/// an empty one among them, means a caller without a key is served.
fn who_may_call(operation: &Value) -> &'static str {
    match operation.get("security").and_then(Value::as_array) {
        None => "No key needed",
        Some(requirements) if requirements.is_empty() => "No key needed",
        Some(requirements) if requirements.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())) => {
            "No key needed; a key (Bearer or X-API-Key), if sent, confines the call to its tenant"
        }
        Some(_) => "Needs an API key (Bearer or X-API-Key)",
    }
}

/// An example value for `schema`, built from its types, formats, enums and
/// properties (the document's own `example` where it has one), so every
/// request and answer on the page shows its shape filled in.
fn example(schema: &Value, document: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        let target = &document["components"]["schemas"][name];
        return example(target, document, depth + 1);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let chosen = options.iter().find(|o| o.get("type").and_then(Value::as_str) != Some("null"));
            return chosen.map_or(Value::Null, |o| example(o, document, depth + 1));
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = serde_json::Map::new();
        for part in parts {
            if let Value::Object(fields) = example(part, document, depth + 1) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|values| values.first()) {
        return first.clone();
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).find(|k| *k != "null").unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "",
    };
    match kind {
        "object" => {
            let mut fields = serde_json::Map::new();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    fields.insert(name.clone(), example(property, document, depth + 1));
                }
            } else if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                fields.insert("key".into(), example(values, document, depth + 1));
            }
            Value::Object(fields)
        }
        "array" => Value::Array(vec![example(&schema["items"], document, depth + 1)]),
        "string" => Value::String(
            match schema.get("format").and_then(Value::as_str) {
                Some("date-time") => "2026-01-01T00:00:00Z",
                Some("date") => "2026-01-01",
                Some("uuid") => "7c9e6679-7425-40de-944b-e07fc1f90ae7",
                Some("uri") => "https://example.com/webhooks",
                _ => "string",
            }
            .to_owned(),
        ),
        "integer" => schema.get("minimum").cloned().unwrap_or(Value::from(0)),
        "number" => Value::from(0.0),
        "boolean" => Value::Bool(true),
        _ => Value::Null,
    }
}

/// A schema's name and link when it is a reference; its example either way.
fn shape(schema: &Value, document: &Value) -> String {
    let name = schema.get("$ref").and_then(Value::as_str).map(|r| r.rsplit('/').next().unwrap_or_default());
    let link = name.map_or(String::new(), |n| format!(" (<a href=\"#schema-{n}\">{n}</a>)", n = escape(n)));
    let sample = serde_json::to_string_pretty(&example(schema, document, 0)).unwrap_or_default();
    format!("{link}<pre>{}</pre>", escape(&sample))
}

fn render_operation(out: &mut String, method: &str, path: &str, operation: &Value, document: &Value) {
    let summary = operation.get("summary").and_then(Value::as_str).unwrap_or_default();
    let id = operation.get("operationId").and_then(Value::as_str).unwrap_or_default();
    let _ = write!(
        out,
        "<section id=\"op-{id}\"><h3><span class=\"m {m}\">{M}</span> <code>{p}</code></h3><p>{s}</p><p class=\"auth\">{a}</p>",
        id = escape(id),
        m = method,
        M = method.to_uppercase(),
        p = escape(path),
        s = escape(summary),
        a = who_may_call(operation),
    );
    if let Some(parameters) = operation.get("parameters").and_then(Value::as_array) {
        out.push_str("<table><tr><th>parameter</th><th>in</th><th>about</th></tr>");
        for parameter in parameters {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(parameter["name"].as_str().unwrap_or_default()),
                escape(parameter["in"].as_str().unwrap_or_default()),
                escape(parameter.get("description").and_then(Value::as_str).unwrap_or_default())
            );
        }
        out.push_str("</table>");
    }
    if let Some(content) = operation.pointer("/requestBody/content").and_then(Value::as_object) {
        for (media, content) in content {
            let _ = write!(
                out,
                "<p>Request body, <code>{}</code>{}</p>",
                escape(media),
                shape(&content["schema"], document)
            );
        }
    }
    if let Some(responses) = operation.get("responses").and_then(Value::as_object) {
        out.push_str("<ul>");
        for (status, response) in responses {
            let description = response.get("description").and_then(Value::as_str).unwrap_or_default();
            let _ = write!(out, "<li><b>{}</b> {}", escape(status), escape(description));
            if let Some(content) = response.get("content").and_then(Value::as_object) {
                for (media, content) in content {
                    if media == "application/json" && content.get("schema").is_some() {
                        out.push_str(&shape(&content["schema"], document));
                    }
                }
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
}

fn render(document: &OpenApi) -> String {
    let document: Value = serde_json::to_value(document).expect("the OpenAPI document serialises");
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>keyledger API</title><style>\
         body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
         section{border-top:1px solid #ddd;padding:.3rem 0}h3{margin:.4rem 0;font-size:1rem}\
         .m{display:inline-block;min-width:4.5rem;text-align:center;border-radius:3px;color:#fff;font-size:.8rem;padding:1px 4px}\
         .get{background:#2a7}.post{background:#27b}.patch{background:#b72}.delete{background:#c33}.put{background:#777}\
         .auth{color:#666;font-size:.85rem;margin:0}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}\
         pre{background:#f6f6f6;padding:.5rem;overflow:auto;font-size:.85rem}</style></head><body>",
    );
    let info = &document["info"];
    let _ = write!(
        out,
        "<h1>{} {}</h1><p>{}</p><p>The machine-readable document: <a href=\"/openapi.json\">/openapi.json</a>. \
         Examples are built from each body's schema.</p>",
        escape(info["title"].as_str().unwrap_or_default()),
        escape(info["version"].as_str().unwrap_or_default()),
        escape(info.get("description").and_then(Value::as_str).unwrap_or_default())
    );
    // Every operation, filed under its group.
    let mut grouped: Vec<Vec<(String, &str, &Value)>> = vec![Vec::new(); GROUPS.len()];
    let other = GROUPS.iter().position(|(tag, _)| tag.is_empty()).unwrap_or(0);
    if let Some(paths) = document["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                let Some(operation) = item.get(method) else { continue };
                let tag = operation.pointer("/tags/0").and_then(Value::as_str).unwrap_or_default();
                let group = GROUPS.iter().position(|(name, _)| *name == tag).unwrap_or(other);
                grouped[group].push((path.clone(), method, operation));
            }
        }
    }
    out.push_str("<h2>Contents</h2><ul>");
    for (index, (_, title)) in GROUPS.iter().enumerate() {
        if !grouped[index].is_empty() {
            let _ = write!(out, "<li><a href=\"#group-{index}\">{}</a> ({})</li>", escape(title), grouped[index].len());
        }
    }
    out.push_str("<li><a href=\"#schemas\">Schemas</a></li></ul>");
    for (index, (_, title)) in GROUPS.iter().enumerate() {
        if grouped[index].is_empty() {
            continue;
        }
        let _ = write!(out, "<h2 id=\"group-{index}\">{}</h2>", escape(title));
        for (path, method, operation) in &grouped[index] {
            render_operation(&mut out, method, path, operation, &document);
        }
    }
    out.push_str("<h2 id=\"schemas\">Schemas</h2>");
    if let Some(schemas) = document.pointer("/components/schemas").and_then(Value::as_object) {
        for (name, schema) in schemas {
            let json = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ = write!(
                out,
                "<section id=\"schema-{n}\"><h3>{n}</h3><pre>{}</pre></section>",
                escape(&json),
                n = escape(name)
            );
        }
    }
    out.push_str("</body></html>");
    out
}
