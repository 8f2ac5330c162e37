//! The process's metrics live in `keyledger_app::metrics`; this adds what
//! only HTTP knows.

pub use keyledger_app::metrics::*;

/// Guards against a metric family growing with hostile input: routes are
/// templates, never raw paths, and methods are the standard ones.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
