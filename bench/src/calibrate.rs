//! `calibrate`: does the load generator set the pace? Each raw baseline is
//! driven by this harness's generator and by `wrk` (a C load generator,
//! Debian's `wrk` package) in the same run; the generator's figure should
//! be within 15% of wrk's, or every ratio the other scenarios report is
//! flattered by a slow client.

use std::process::Stdio;

use serde_json::{json, Value};
use tokio::process::Command;

use crate::baseline;
use crate::scenario::{baseline_load, print_table, Bench};

/// wrk's Lua script: the same validate-shaped body as the generator's,
/// with a machine id unique per request (the INSERT baseline's key).
const SCRIPT: &str = r#"
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
counter = 0
function request()
  counter = counter + 1
  local row = (counter * 7919) % 10000 + 1
  local body = string.format('{"licenseKey":"ABCD-EFGH-JKMN-2345","machineId":"wrk%d-%d","row":%d}', tid, counter, row)
  return wrk.format("POST", "/validate", {["Content-Type"] = "application/json"}, body)
end
"#;

/// Requests a second and non-2xx answers that wrk measured.
async fn wrk(bench: &Bench, base: &str) -> Result<(f64, u64), String> {
    let script = bench.dir.path().join("validate.lua");
    std::fs::write(&script, SCRIPT).map_err(|e| e.to_string())?;
    let output = Command::new("wrk")
        .args(["-t2", &format!("-c{}", bench.options.connections), &format!("-d{}s", bench.options.seconds)])
        .arg("-s")
        .arg(&script)
        .arg(base)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run wrk ({e}): install Debian's `wrk` package (scripts/test does, as root)"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let rate = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("wrk printed no rate:\n{text}{}", String::from_utf8_lossy(&output.stderr)))?;
    let failed = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok((rate, failed))
}

pub async fn run(bench: &mut Bench) -> Result<Value, String> {
    let mut rows = Vec::new();
    let mut reports = Vec::new();
    for kind in [baseline::Kind::Static, baseline::Kind::Select, baseline::Kind::Insert] {
        let served = bench.baseline(kind).await?;
        let name = format!("generator: {kind:?} baseline").to_lowercase();
        let ours = baseline_load(bench, &name, &served).await;
        let (wrk_rate, wrk_failed) = wrk(bench, &served.base).await?;
        drop(served);
        let ratio = if wrk_rate > 0.0 { ours.throughput / wrk_rate } else { 0.0 };
        eprintln!("{kind:?}: generator {:.0} req/s, wrk {wrk_rate:.0} req/s ({wrk_failed} non-2xx): generator / wrk = {ratio:.2} (target >= 0.85)", ours.throughput);
        rows.push(json!({
            "baseline": format!("{kind:?}").to_lowercase(), "generator": ours.throughput, "wrk": wrk_rate,
            "wrk_non_2xx": wrk_failed, "generator_over_wrk": ratio, "target_met": ratio >= 0.85,
        }));
        reports.push(ours);
    }
    print_table(&reports.iter().collect::<Vec<_>>());
    Ok(json!({ "scenario": "calibrate", "backend": bench.backend(), "baselines": rows, "reports": reports }))
}
