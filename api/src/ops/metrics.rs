//! `GET /metrics`: this process's metrics, open, or behind
//! `KEYLEDGER_METRICS_TOKEN` when it is set. A scraper that accepts
//! OpenMetrics (Prometheus asks for it first) gets OpenMetrics; any other
//! gets the classic Prometheus text format (0.0.4), which is what parsers
//! of that format read correctly: in it a counter's family is named by its
//! `_total` sample, and there is no `# EOF`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keyledger_app::client::error_chain;
use keyledger_eventlog::on_pool;

use crate::metrics::{ConsumerLabels, PoolLabels};
use keyledger_http::ApiError;
use keyledger_http::Routes;

use super::OpsState;
use keyledger_app::secret::{digests_match, sha256_hex};
use utoipa_axum::routes;

pub fn routes() -> Routes<OpsState> {
    Routes::new().add(routes!(metrics))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    summary = "Prometheus metrics (open, or behind KEYLEDGER_METRICS_TOKEN)",
    responses((status = 200, description = "Metrics: OpenMetrics when the scraper accepts it, else the classic Prometheus text format (0.0.4)", content_type = "text/plain", body = String), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error)),
    security((), ("bearer" = []))
)]
async fn metrics(State(state): State<OpsState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if !presented.is_some_and(|token| digests_match(&sha256_hex(token), expected)) {
            return ApiError::unauthorized("GET /metrics needs `Authorization: Bearer <KEYLEDGER_METRICS_TOKEN>`")
                .into_response();
        }
    }
    let _turn = state.app.metrics.scrape.lock().await;
    if let Err(error) = read_gauges(&state).await {
        tracing::warn!(error = %error_chain(&error), "metrics: some gauges could not be read");
    }
    let openmetrics = state.app.metrics.encode();
    if accepts_openmetrics(&headers) {
        let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        return (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], openmetrics).into_response();
    }
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], classic_text(&openmetrics)).into_response()
}

fn accepts_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| {
            let mut parts = media.split(';').map(str::trim);
            let essence = parts.next().unwrap_or_default();
            // `q=0` means "not this one".
            let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
            essence.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
}

/// The classic text format of an OpenMetrics page that holds counters,
/// gauges and histograms (keyledger's only kinds, without units or
/// exemplars): a counter's HELP and TYPE name its `_total` samples, and
/// the `# EOF` line goes.
fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let comment = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match comment {
            Some(renamed) => out.push_str(renamed.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Sets the gauges that describe state from what the process sees now.
async fn read_gauges(state: &OpsState) -> Result<(), keyledger_eventlog::EventLogError> {
    let metrics = &state.app.metrics;
    metrics.view_licenses.set(state.memory.len() as i64);
    metrics.active_blocks.set(state.limits.active_blocks() as i64);
    metrics.tracked_callers.set(state.limits.tracked() as i64);
    metrics.evicted_callers.set(i64::try_from(state.limits.evicted()).unwrap_or(i64::MAX));
    let (size, idle, max) =
        on_pool!(&state.db, pool => (pool.size(), pool.num_idle(), pool.options().get_max_connections()));
    metrics.pool_connections.get_or_create(&PoolLabels { state: "idle" }).set(idle as i64);
    metrics.pool_connections.get_or_create(&PoolLabels { state: "in_use" }).set(i64::from(size) - idle as i64);
    metrics.pool_connections.get_or_create(&PoolLabels { state: "max" }).set(i64::from(max));

    match state.app.webhooks.pending().await {
        Ok(pending) => {
            metrics.webhook_pending.set(pending);
        }
        Err(error) => tracing::warn!(error = %error_chain(&error), "metrics: cannot count pending webhook deliveries"),
    }
    for report in state.consumers.report().await? {
        let labels = ConsumerLabels { consumer: report.status.name.clone() };
        metrics.consumer_lag_events.get_or_create(&labels).set(report.lag_events.unwrap_or(0));
        metrics.consumer_lag_seconds.get_or_create(&labels).set(report.lag_seconds.unwrap_or(0.0));
        metrics.consumer_up.get_or_create(&labels).set(i64::from(report.healthy));
        // The runtime keeps the counts; the counters show them as they are.
        let counts = [
            (&metrics.consumer_restarts, report.status.restarts),
            (&metrics.consumer_failures, report.status.failures),
        ];
        for (family, count) in counts {
            family.get_or_create(&labels).inner().store(count, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_by_their_total_samples_and_has_no_eof() {
        let openmetrics = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 2\n\
                           # HELP b_up Up.\n# TYPE b_up gauge\nb_up 1\n# EOF\n";
        assert_eq!(
            classic_text(openmetrics),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 2\n\
             # HELP b_up Up.\n# TYPE b_up gauge\nb_up 1\n"
        );
    }

    #[test]
    fn openmetrics_goes_to_scrapers_that_accept_it() {
        let with = |accept: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, accept.parse().unwrap());
            accepts_openmetrics(&headers)
        };
        assert!(with("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
        assert!(!with("*/*"));
        assert!(!with("text/plain"));
        assert!(!with("application/openmetrics-text;q=0"));
        assert!(!accepts_openmetrics(&HeaderMap::new()));
    }
}
