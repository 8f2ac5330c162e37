//! A layer of the front door: an error answered on a dialect's path in the
//! native shape (by the screen, the rate limits, an extractor or a
//! fallback) is rendered again in the dialect's own shape, keeping its
//! headers (`Retry-After`, the rate-limit headers, `Allow`). Which shape
//! that is, the dialect says ([`keyledger_http::Dialect::render_error`]);
//! this layer knows none of them. Then a dialect that seals its answers
//! (signs them over the request line, as Keygen's does) gets every answer
//! on its paths, errors included ([`keyledger_http::Dialect::seal`]).

use std::future::Future;

use axum::extract::Request;
use axum::http::header;
use axum::response::Response;
use keyledger_app::signing::Directory;
use keyledger_http::dialect::RequestHead;
use keyledger_http::{Dialects, ErrorParts};

pub async fn render_errors<F: Future<Output = Response>>(
    directory: &Directory,
    dialects: &Dialects,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    // A cheap clone (shared bytes): the path is needed only for an error.
    let uri = request.uri().clone();
    let dialect = dialects.of_path(uri.path());
    let head = dialect.seals().then(|| RequestHead {
        method: request.method().clone(),
        target: uri.path_and_query().map_or_else(|| uri.path().to_owned(), |target| target.as_str().to_owned()),
        host: request.headers().get(header::HOST).and_then(|host| host.to_str().ok()).map(str::to_owned),
    });
    let response = next(request).await;
    let response = match response.extensions().get::<ErrorParts>() {
        Some(error) => match dialect.render_error(directory, uri.path(), response.status(), error) {
            Some(answer) => with_headers_of(answer, response),
            None => response,
        },
        None => response,
    };
    match &head {
        Some(head) => dialect.seal(directory, head, response).await,
        None => response,
    }
}

/// `answer`, with the headers of `original` it doesn't set itself and its
/// extensions (what the answer said, whether it was a failed guess).
fn with_headers_of(mut answer: Response, original: Response) -> Response {
    let (parts, _) = original.into_parts();
    let own: Vec<_> = answer.headers().keys().cloned().collect();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && !own.contains(name) {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    let mut extensions = parts.extensions;
    extensions.extend(std::mem::take(answer.extensions_mut()));
    *answer.extensions_mut() = extensions;
    answer
}
