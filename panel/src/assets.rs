//! The panel's static files, embedded in the binary: its stylesheet and
//! htmx (vendored from npm, `panel/assets/htmx.LICENSE`). Nothing is
//! loaded from elsewhere.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("../assets/panel.css");
const HTMX: &str = include_str!("../assets/htmx.min.js");

pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "panel.css" => (CSS, "text/css; charset=utf-8"),
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    // The same for every visitor and every version of a page: cached for
    // an hour (a new binary may change them).
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}
