//! The API's own description: the OpenAPI document at `/openapi.json`,
//! and a reference page at `/docs` rendered from it on the server, so it
//! needs nothing from the internet.

use std::fmt::Write;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa_axum::routes;

use crate::router::Routes;

pub fn routes() -> Routes {
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

fn schema_name<T>(schema: &RefOr<T>) -> String {
    match schema {
        RefOr::Ref(reference) => reference.ref_location.rsplit('/').next().unwrap_or_default().to_owned(),
        RefOr::T(_) => "inline".to_owned(),
    }
}

fn render_operation(out: &mut String, method: &str, path: &str, operation: &Operation) {
    let summary = operation.summary.as_deref().unwrap_or_default();
    let _ = write!(
        out,
        "<section><h3><span class=\"m {m}\">{M}</span> <code>{p}</code></h3><p>{s}</p>",
        m = method,
        M = method.to_uppercase(),
        p = escape(path),
        s = escape(summary)
    );
    let anonymous = operation.security.as_ref().is_none_or(|s| s.is_empty());
    out.push_str(if anonymous {
        "<p class=\"auth\">No key needed</p>"
    } else {
        "<p class=\"auth\">Needs an API key (Bearer or X-API-Key)</p>"
    });
    if let Some(parameters) = &operation.parameters {
        out.push_str("<table><tr><th>parameter</th><th>in</th><th>about</th></tr>");
        for parameter in parameters {
            let place = match parameter.parameter_in {
                ParameterIn::Path => "path",
                ParameterIn::Query => "query",
                ParameterIn::Header => "header",
                ParameterIn::Cookie => "cookie",
            };
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{place}</td><td>{}</td></tr>",
                escape(&parameter.name),
                escape(parameter.description.as_deref().unwrap_or_default())
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = &operation.request_body {
        for (media, content) in &body.content {
            let _ = write!(
                out,
                "<p>Body: <code>{}</code> as <a href=\"#{n}\">{n}</a></p>",
                escape(media),
                n = schema_name(
                    &content.schema.clone().unwrap_or_else(|| RefOr::Ref(utoipa::openapi::Ref::new("inline")))
                )
            );
        }
    }
    out.push_str("<ul>");
    for (status, response) in &operation.responses.responses {
        let RefOr::T(response) = response else { continue };
        let bodies: Vec<String> = response
            .content
            .values()
            .filter_map(|content| {
                content.schema.as_ref().map(|s| format!("<a href=\"#{n}\">{n}</a>", n = schema_name(s)))
            })
            .collect();
        let _ =
            write!(out, "<li><b>{}</b> {} {}</li>", escape(status), escape(&response.description), bodies.join(" "));
    }
    out.push_str("</ul></section>");
}

fn render(document: &OpenApi) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>keyledger API</title><style>\
         body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
         section{border-top:1px solid #ddd;padding:.3rem 0}h3{margin:.4rem 0;font-size:1rem}\
         .m{display:inline-block;min-width:4.5rem;text-align:center;border-radius:3px;color:#fff;font-size:.8rem;padding:1px 4px}\
         .get{background:#2a7}.post{background:#27b}.patch{background:#b72}.delete{background:#c33}.put{background:#777}\
         .auth{color:#666;font-size:.85rem;margin:0}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}\
         pre{background:#f6f6f6;padding:.5rem;overflow:auto}</style></head><body>",
    );
    let _ = write!(
        out,
        "<h1>{} {}</h1><p>{}</p><p>The machine-readable document: <a href=\"/openapi.json\">/openapi.json</a></p><h2>Operations</h2>",
        escape(&document.info.title),
        escape(&document.info.version),
        escape(document.info.description.as_deref().unwrap_or_default())
    );
    for (path, item) in &document.paths.paths {
        for (method, operation) in [
            ("get", &item.get),
            ("post", &item.post),
            ("put", &item.put),
            ("patch", &item.patch),
            ("delete", &item.delete),
        ] {
            if let Some(operation) = operation {
                render_operation(&mut out, method, path, operation);
            }
        }
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(components) = &document.components {
        for (name, schema) in &components.schemas {
            let json = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ =
                write!(out, "<section id=\"{n}\"><h3>{n}</h3><pre>{}</pre></section>", escape(&json), n = escape(name));
        }
    }
    out.push_str("</body></html>");
    out
}
