//! `mixed`: the traffic of a fleet of installed daemons. 90% validate,
//! 8% explicit heartbeats (each recorded as an event, at most once a
//! second per device) and 2% activate/deactivate, every connection
//! toggling a machine of its own on and off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::load;
use crate::scenario::{generate, post, print_table, ratio, read_baselines, user_key, Bench};

/// Machines activated on every license for validations and heartbeats.
const MACHINES: usize = 4;

pub async fn run(bench: &mut Bench) -> Result<Value, String> {
    // Heartbeats count as writes here: let every device record one a second.
    let server = bench.keyledger(&[("KEYLEDGER_HEARTBEAT_FLOOR_SECS", "1")]).await?;
    let key = user_key(&bench.client, &server).await?;
    let count = bench.options.licenses.unwrap_or(2_000);
    let licenses = generate(&bench.client, &server, &key, count, json!({"maxActivations": MACHINES})).await?;
    // One single-seat license per connection, which it toggles a machine on
    // and off: no connection races another for a seat.
    let connections = bench.options.connections;
    let toggled = Arc::new(generate(&bench.client, &server, &key, connections, json!({})).await?);
    let activate_url = format!("{}/api/v1/licenses/activate", server.base);
    for chunk in licenses.chunks(16) {
        let bodies: Vec<Value> = chunk
            .iter()
            .flat_map(|license| {
                (0..MACHINES).map(move |m| json!({"licenseKey": license, "machineId": format!("m{m}")}))
            })
            .collect();
        for outcome in
            futures::future::join_all(bodies.iter().map(|body| post(&bench.client, &activate_url, None, body))).await
        {
            outcome?;
        }
    }

    let licenses = Arc::new(licenses);
    // How many toggles each connection has made: even means its machine is
    // off, odd means on.
    let toggles: Arc<Vec<AtomicU64>> = Arc::new((0..connections).map(|_| AtomicU64::new(0)).collect());
    let keyledger =
        load::run_raw("keyledger mixed", server.addr, connections, bench.duration(), move |connection, n| {
            let roll = (n as usize * 7919 + connection * 104_729) % 100;
            let pick = (n as usize * 6151 + connection * 3571) % (licenses.len() * MACHINES);
            let device =
                format!(r#"{{"licenseKey":"{}","machineId":"m{}"}}"#, licenses[pick / MACHINES], pick % MACHINES);
            let valid: &'static [u8] = br#""isValid":true"#;
            Some(match roll {
                0..=89 => load::Call {
                    path: "/api/v1/licenses/validate".to_owned(),
                    body: device.into_bytes(),
                    expect: valid,
                },
                90..=97 => load::Call {
                    path: "/api/v1/licenses/heartbeat".to_owned(),
                    body: device.into_bytes(),
                    expect: valid,
                },
                _ => {
                    let toggle = toggles[connection].fetch_add(1, Ordering::Relaxed);
                    let action = if toggle.is_multiple_of(2) { "activate" } else { "deactivate" };
                    let body = format!(r#"{{"licenseKey":"{}","machineId":"toggled"}}"#, toggled[connection]);
                    load::Call {
                        path: format!("/api/v1/licenses/{action}"),
                        body: body.into_bytes(),
                        expect: br#""success":true"#,
                    }
                }
            })
        })
        .await;
    drop(server);
    let (signed_static, select) = read_baselines(bench).await?;
    print_table(&[&keyledger, &signed_static, &select]);
    let (vs_static, vs_select) = (ratio(&keyledger, &signed_static), ratio(&keyledger, &select));
    eprintln!("mixed / signed static = {vs_static:.2}; mixed / SELECT = {vs_select:.2} (no target: for comparison)");
    Ok(json!({
        "scenario": "mixed", "backend": bench.backend(), "reports": [keyledger, signed_static, select],
        "ratios": {"mixed_over_static": vs_static, "mixed_over_select": vs_select},
        "targets_met": {},
    }))
}
