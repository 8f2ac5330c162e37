//! `search`: the V2 License Server's global search over a tenant with
//! many licenses (100,000 unless `--licenses` says otherwise), a tenth of
//! them activated on a named machine. Queries cycle through part of a
//! license key, a machine name and a word that matches nothing, each
//! over every kind (customers, licenses, devices); the p99 is the
//! figure (target < 50 ms at 100,000 licenses).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::load;
use crate::scenario::{generate, post, print_table, settle, Bench, OPERATOR};

pub(crate) async fn run(bench: &mut Bench) -> Result<Value, String> {
    let server = bench.keyledger(&[]).await?;
    let base = server.base.clone();
    let client = bench.client.clone();
    let tenant = post(&client, &format!("{base}/api/v1/tenants"), Some(OPERATOR), &json!({"name": "Bench"})).await?;
    let admin = tenant["adminKey"].as_str().ok_or("no admin key")?.to_owned();
    let made = |role: &'static str| {
        let (client, base, admin) = (client.clone(), base.clone(), admin.clone());
        async move {
            let made = post(&client, &format!("{base}/api/v1/api-keys"), Some(&admin), &json!({"role": role})).await?;
            made["key"].as_str().map(str::to_owned).ok_or_else(|| format!("no {role} key"))
        }
    };
    let (user, system) = (made("user").await?, made("system").await?);
    let count = bench.options.licenses.unwrap_or(100_000);
    let started = std::time::Instant::now();
    let keys = generate(&client, &server, &user, count, json!({})).await?;
    let activate_url = format!("{base}/api/v1/licenses/activate");
    let activated: Vec<&String> = keys.iter().step_by(10).collect();
    for chunk in activated.chunks(64) {
        let bodies: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(n, key)| json!({"licenseKey": key, "machineId": format!("m-{key}"), "machineName": format!("node-{n}")}))
            .collect();
        for outcome in futures::future::join_all(bodies.iter().map(|b| post(&client, &activate_url, None, b))).await {
            outcome?;
        }
    }
    eprintln!("{count} licenses ({} activated) made in {:.0} s", activated.len(), started.elapsed().as_secs_f64());
    // As the other scenarios: measured once the background work of making
    // them (the read model's catch-up) is done, not beside it.
    settle(&client, &server).await;
    let queries: Arc<Vec<String>> = Arc::new(
        keys.iter()
            .step_by((count / 50).max(1))
            .map(|key| key[5..9].to_lowercase())
            .chain(["node-1".to_owned(), "zzzz-nothing".to_owned()])
            .collect(),
    );
    let url = format!("{base}/api/global-search");
    let report = load::run("global search", bench.options.connections, bench.duration(), move |connection, n| {
        let q = queries[(n as usize * 31 + connection) % queries.len()].clone();
        let (client, url, system) = (client.clone(), url.clone(), system.clone());
        Some(async move {
            let answer = client
                .get(&url)
                .header("x-api-key", &system)
                .query(&[("q", q.as_str())])
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !answer.status().is_success() {
                return Err(format!("search answered {}", answer.status()));
            }
            let body: Value = answer.json().await.map_err(|e| e.to_string())?;
            body["total"].as_u64().map(|_| ()).ok_or_else(|| format!("no total: {body}"))
        })
    })
    .await;
    print_table(&[&report]);
    eprintln!("global search over {count} licenses: p99 {:.1} ms (target < 50 ms at 100,000)", report.p99_ms);
    Ok(json!({
        "scenario": "search", "backend": bench.backend(), "licenses": count,
        "reports": [report],
        "targets_met": {"p99_under_50ms": report.p99_ms < 50.0},
    }))
}
