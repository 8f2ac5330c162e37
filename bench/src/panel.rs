//! `panel`: the admin panel's pages over a tenant with many licenses
//! (100,000 unless `--licenses` says otherwise, a tenth activated), as a
//! signed-in staff member sees them: the overview, the licenses list (its
//! first page, a later page, a status filter, a key search), a license's
//! page (state, devices, history with the chain checked), customers and
//! anomalies. Each page is loaded on its own for an equal share of
//! `--seconds`; the figure is each page's p99 (target < 100 ms at
//! 100,000 licenses).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::load;
use crate::scenario::{generate_with_ids, post, print_table, settle, Bench, OPERATOR};

const PASSWORD: &str = "a bench password, long enough";

/// The value a `Set-Cookie` of the answer gives `name`.
fn cookie(answer: &reqwest::Response, name: &str) -> Option<String> {
    answer
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next()?.split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// Accepts the invitation at `path` and signs in: the session cookie.
async fn signed_in(base: &str, path: &str, email: &str) -> Result<String, String> {
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(|e| e.to_string())?;
    let page = client.get(format!("{base}/admin{path}")).send().await.map_err(|e| e.to_string())?;
    let form = cookie(&page, "keyledger_panel_form").ok_or("the invitation set no form cookie")?;
    let form_cookie = format!("keyledger_panel_form={form}");
    let accepted = client
        .post(format!("{base}/admin{path}"))
        .header("cookie", &form_cookie)
        .form(&[("form", form.as_str()), ("password", PASSWORD), ("confirm", PASSWORD)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !accepted.status().is_success() {
        return Err(format!("accepting the invitation answered {}", accepted.status()));
    }
    let signed = client
        .post(format!("{base}/admin/sign-in"))
        .header("cookie", &form_cookie)
        .form(&[("form", form.as_str()), ("email", email), ("password", PASSWORD)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    cookie(&signed, "keyledger_panel")
        .ok_or_else(|| format!("signing in answered {} without a session", signed.status()))
}

pub(crate) async fn run(bench: &mut Bench) -> Result<Value, String> {
    let server = bench.keyledger(&[]).await?;
    let base = server.base.clone();
    let client = bench.client.clone();
    let tenant = post(&client, &format!("{base}/api/v1/tenants"), Some(OPERATOR), &json!({"name": "Bench"})).await?;
    let admin = tenant["adminKey"].as_str().ok_or("no admin key")?.to_owned();
    let tenant_id = tenant["id"].as_str().ok_or("no tenant id")?.to_owned();
    let user = post(&client, &format!("{base}/api/v1/api-keys"), Some(&admin), &json!({"role": "user"})).await?;
    let user = user["key"].as_str().ok_or("no user key")?.to_owned();
    let count = bench.options.licenses.unwrap_or(100_000);
    let started = std::time::Instant::now();
    let made = generate_with_ids(&client, &server, &user, count, json!({})).await?;
    let activate_url = format!("{base}/api/v1/licenses/activate");
    let activated: Vec<&(String, String)> = made.iter().step_by(10).collect();
    for chunk in activated.chunks(64) {
        let bodies: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(n, (key, _))| json!({"licenseKey": key, "machineId": format!("m-{key}"), "machineName": format!("node-{n}")}))
            .collect();
        for outcome in futures::future::join_all(bodies.iter().map(|b| post(&client, &activate_url, None, b))).await {
            outcome?;
        }
    }
    eprintln!("{count} licenses ({} activated) made in {:.0} s", activated.len(), started.elapsed().as_secs_f64());
    settle(&client, &server).await;

    let invited = post(
        &client,
        &format!("{base}/api/v1/tenants/{tenant_id}/staff"),
        Some(&admin),
        &json!({"email": "bench@example.com", "role": "viewer"}),
    )
    .await?;
    let path = invited["invitationPath"].as_str().ok_or("no invitation path")?;
    let session = Arc::new(format!("keyledger_panel={}", signed_in(&base, path, "bench@example.com").await?));

    let (key, id) = activated.first().map(|(key, id)| (key.clone(), id.clone())).ok_or("no license")?;
    let pages: Vec<(&str, String)> = vec![
        ("overview", "/admin".to_owned()),
        ("licenses", "/admin/licenses".to_owned()),
        ("licenses, a later page", format!("/admin/licenses?page={}", (count / 50 / 2).max(1))),
        ("licenses, active only", "/admin/licenses?status=active".to_owned()),
        ("licenses, a key search", format!("/admin/licenses?q={}", &key[5..9])),
        ("a license", format!("/admin/licenses/{id}")),
        ("the search box", format!("/admin/search?q={}", &key[5..9])),
        ("customers", "/admin/customers".to_owned()),
        ("anomalies", "/admin/anomalies".to_owned()),
    ];
    let share = bench.duration() / pages.len() as u32;
    let mut reports = Vec::new();
    for (name, path) in pages {
        let url = Arc::new(format!("{base}{path}"));
        let (client, session) = (client.clone(), session.clone());
        let report = load::run(name, bench.options.connections, share, move |_, _| {
            let (client, url, session) = (client.clone(), url.clone(), session.clone());
            Some(async move {
                let answer = client
                    .get(url.as_str())
                    .header("cookie", session.as_str())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if answer.status() != reqwest::StatusCode::OK {
                    return Err(format!("{url} answered {}", answer.status()));
                }
                let body = answer.text().await.map_err(|e| e.to_string())?;
                body.ends_with("</html>").then_some(()).ok_or_else(|| format!("{url}: not a whole page"))
            })
        })
        .await;
        reports.push(report);
    }
    print_table(&reports.iter().collect::<Vec<_>>());
    let worst = reports.iter().map(|report| report.p99_ms).fold(0.0, f64::max);
    eprintln!("panel pages over {count} licenses: worst p99 {worst:.1} ms (target < 100 ms at 100,000)");
    Ok(json!({
        "scenario": "panel", "backend": bench.backend(), "licenses": count,
        "reports": reports,
        "targets_met": {"p99_under_100ms": worst < 100.0},
    }))
}
