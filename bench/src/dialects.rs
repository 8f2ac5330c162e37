//! `dialects`: each dialect's validate (seeds 003 and 004: verify; Keygen: validate-key) beside the
//! native one, in one run on one server and one set of licenses, each
//! with five machines holding seats. The machine's speed drifts within a
//! run by as much as the differences measured, so the targets are run in
//! three rounds, each round the native load and then every dialect's, with
//! the native load once more at the end; each dialect's phase is compared
//! with the mean of the native phases just before and after it, and its
//! ratio is the median of its three rounds. Seed 001 signs every answer
//! with RSA-2048: the scenario also times that signature alone, in this
//! process, to say how much of a seed-001 validate it is.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::load::{self, Report};
use crate::scenario::{generate, post, print_table, Bench, OPERATOR};

const MACHINES: usize = 5;

pub(crate) async fn run(bench: &mut Bench) -> Result<Value, String> {
    let server = bench.keyledger(&[]).await?;
    let base = server.base.clone();
    let client = bench.client.clone();
    let tenant = post(&client, &format!("{base}/api/v1/tenants"), Some(OPERATOR), &json!({"name": "Bench"})).await?;
    let admin = tenant["adminKey"].as_str().ok_or("no admin key")?.to_owned();
    let user = api_key(&client, &base, &admin, "user").await?;
    let client_key = api_key(&client, &base, &admin, "client").await?;
    let system_key = api_key(&client, &base, &admin, "system").await?;
    let tenant_id = tenant["id"].as_str().ok_or("no tenant id")?;
    KEYGEN_VALIDATE.get_or_init(|| format!("/keygen/{tenant_id}/v1/licenses/actions/validate-key"));
    let product_body = json!({"name": "Bench", "code": "BENCH", "keyFormat": "XXXXX-XXXXX-XXXXX-XXXXX-XXXXX"});
    let product = post(&client, &format!("{base}/api/v1/products"), Some(&admin), &product_body).await?;
    let product = product["id"].as_str().ok_or("no product id")?.to_owned();
    let count = bench.options.licenses.unwrap_or(2_000);
    let body = json!({"maxActivations": MACHINES, "productId": product});
    let licenses = Arc::new(generate(&client, &server, &user, count, body).await?);
    // Seed 001 wants SHA-256 machine ids; every dialect takes them.
    let machines: Arc<Vec<String>> =
        Arc::new((0..MACHINES).map(|m| hex::encode(Sha256::digest(format!("m{m}").as_bytes()))).collect());
    let activate_url = format!("{base}/api/v1/licenses/activate");
    for chunk in licenses.chunks(8) {
        let bodies: Vec<Value> = chunk
            .iter()
            .flat_map(|license| machines.iter().map(move |m| json!({"licenseKey": license, "machineId": m})))
            .collect();
        for outcome in futures::future::join_all(bodies.iter().map(|b| post(&client, &activate_url, None, b))).await {
            outcome?;
        }
    }
    // The tenant's RSA key is made on its first seed-001 call, not in the load.
    let first = json!({"license_key": licenses[0], "machine_id": machines[0]});
    post(&client, &format!("{base}/license/validate"), None, &first).await?;

    // Each phase a third of --seconds, at least one second.
    let phase = bench.duration().div_f64(ROUNDS as f64).max(std::time::Duration::from_secs(1));
    // The server's own CPU time per answer, apart from the load
    // generator's, which shares the machine (where a dialect's time goes).
    let server_pid = server.child.id();
    let cpu_per_request = std::sync::Mutex::new(Vec::<(String, f64)>::new());
    let load = |name: String, bearer: Option<&str>, make: MakeCall| {
        let (licenses, machines) = (licenses.clone(), machines.clone());
        let bearer = bearer.map(str::to_owned);
        let (connections, addr) = (bench.options.connections, server.addr);
        let cpu_per_request = &cpu_per_request;
        async move {
            let before = crate::cpu::seconds(server_pid);
            let report =
                dialect_load(&name, addr, bearer.as_deref(), connections, phase, licenses, machines, make).await;
            if let (Some(before), Some(after)) = (before, crate::cpu::seconds(server_pid)) {
                let micros = (after - before) / report.requests.max(1) as f64 * 1e6;
                cpu_per_request.lock().unwrap_or_else(|p| p.into_inner()).push((name, micros));
            }
            report
        }
    };
    let mut native = Vec::new();
    let mut rounds: Vec<[Report; 5]> = Vec::new();
    for round in 1..=ROUNDS {
        native.push(load(format!("native validate ({round})"), None, native_call).await);
        rounds.push([
            // First after native: see the ordering note in BENCHMARKS.md.
            load(format!("keygen validate-key ({round})"), None, keygen_call).await,
            load(format!("seed 001 validate ({round})"), None, signed_rsa_call).await,
            load(format!("seed 002 validate ({round})"), None, device_guard_call).await,
            load(format!("seed 004 verify ({round})"), Some(&client_key), tenant_jwt_call).await,
            load(format!("seed 003 verify ({round})"), Some(&system_key), v2_server_call).await,
        ]);
    }
    native.push(load(format!("native validate ({})", ROUNDS + 1), None, native_call).await);
    drop(server);

    let mut table: Vec<&Report> = Vec::new();
    for (native, round) in native.iter().zip(&rounds) {
        table.push(native);
        table.extend(round.iter());
    }
    table.extend(native.last());
    print_table(&table);
    let cpu_per_request = cpu_per_request.into_inner().unwrap_or_else(|p| p.into_inner());
    for (name, micros) in &cpu_per_request {
        eprintln!("server CPU per answer, {name}: {micros:.1} us");
    }
    // A dialect's phase over the mean of the native phases around it.
    let ratios = |dialect: usize| -> Vec<f64> {
        rounds
            .iter()
            .enumerate()
            .map(|(n, round)| {
                let around = (native[n].throughput + native[n + 1].throughput) / 2.0;
                if around > 0.0 {
                    round[dialect].throughput / around
                } else {
                    0.0
                }
            })
            .collect()
    };
    let (all001, all002, all004, all003) = (ratios(1), ratios(2), ratios(3), ratios(4));
    let (r001, r002, r004, r003) = (median(&all001), median(&all002), median(&all004), median(&all003));
    let all_keygen = ratios(0);
    let r_keygen = median(&all_keygen);
    let rsa_sign_ms = rsa_sign_millis();
    let rounds_text = |all: &[f64]| all.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
    eprintln!(
        "over native validate, median of {ROUNDS} rounds (each round's): seed 001 = {r001:.2} ({}; RSA signing, \
         the exception), seed 002 = {r002:.2} ({}), seed 003 = {r003:.2} ({}; target >= 0.8), seed 004 = \
         {r004:.2} ({}; target >= 0.8), keygen = {r_keygen:.2} ({}; target >= 0.8); one RSA-2048 \
         signature takes {rsa_sign_ms:.2} ms on one core here, so seed 001 answers at most {:.0}/s a core from \
         signing alone",
        rounds_text(&all001),
        rounds_text(&all002),
        rounds_text(&all003),
        rounds_text(&all004),
        rounds_text(&all_keygen),
        1000.0 / rsa_sign_ms
    );
    let reports: Vec<&Report> = table;
    Ok(json!({
        "scenario": "dialects", "backend": bench.backend(),
        "reports": reports,
        "ratios": {"seed001_over_native": r001, "seed002_over_native": r002, "seed003_over_native": r003, "seed004_over_native": r004, "keygen_over_native": r_keygen},
        "rounds": {"seed001_over_native": all001, "seed002_over_native": all002, "seed003_over_native": all003, "seed004_over_native": all004, "keygen_over_native": all_keygen},
        "rsa_sign_ms": rsa_sign_ms,
        "server_cpu_us_per_answer": cpu_per_request.iter().map(|(name, us)| json!({"target": name, "us": us})).collect::<Vec<_>>(),
        "targets_met": {"seed002_over_native": r002 >= 0.8, "seed003_over_native": r003 >= 0.8, "seed004_over_native": r004 >= 0.8, "keygen_over_native": r_keygen >= 0.8},
    }))
}

/// Rounds of the scenario: every dialect runs once in each.
const ROUNDS: usize = 3;

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

async fn api_key(client: &reqwest::Client, base: &str, admin: &str, role: &str) -> Result<String, String> {
    let made = post(client, &format!("{base}/api/v1/api-keys"), Some(admin), &json!({"role": role})).await?;
    made["key"].as_str().map(str::to_owned).ok_or_else(|| format!("no {role} key"))
}

/// One request's path, body and the bytes its success holds.
type MakeCall = fn(&str, &str) -> (&'static str, String, &'static [u8]);

fn native_call(key: &str, machine: &str) -> (&'static str, String, &'static [u8]) {
    ("/api/v1/licenses/validate", format!(r#"{{"licenseKey":"{key}","machineId":"{machine}"}}"#), br#""isValid":true"#)
}

fn signed_rsa_call(key: &str, machine: &str) -> (&'static str, String, &'static [u8]) {
    ("/license/validate", format!(r#"{{"license_key":"{key}","machine_id":"{machine}"}}"#), br#""signature""#)
}

fn device_guard_call(key: &str, machine: &str) -> (&'static str, String, &'static [u8]) {
    ("/api/licenses/validate", format!(r#"{{"license_key":"{key}","device_id":"{machine}"}}"#), br#""valid":true"#)
}

fn v2_server_call(key: &str, machine: &str) -> (&'static str, String, &'static [u8]) {
    ("/api/license/verify", format!(r#"{{"license_key":"{key}","hardware_hash":"{machine}"}}"#), br#""valid":true"#)
}

/// The Keygen dialect's validate-key path, with the bench tenant's id.
static KEYGEN_VALIDATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn keygen_call(key: &str, machine: &str) -> (&'static str, String, &'static [u8]) {
    let path = KEYGEN_VALIDATE.get().map_or("/keygen/unset", String::as_str);
    (path, format!(r#"{{"meta":{{"key":"{key}","scope":{{"fingerprint":"{machine}"}}}}}}"#), br#""valid":true"#)
}

fn tenant_jwt_call(key: &str, machine: &str) -> (&'static str, String, &'static [u8]) {
    ("/v1/verify", format!(r#"{{"license_key":"{key}","machine_id":"{machine}"}}"#), br#""ok":true"#)
}

#[allow(clippy::too_many_arguments)]
async fn dialect_load(
    name: &str,
    addr: std::net::SocketAddr,
    bearer: Option<&str>,
    connections: usize,
    duration: std::time::Duration,
    licenses: Arc<Vec<String>>,
    machines: Arc<Vec<String>>,
    make: MakeCall,
) -> Report {
    load::run_raw_as(name, addr, bearer, connections, duration, move |connection, n| {
        let pick = (n as usize * 7919 + connection * 104_729) % (licenses.len() * MACHINES);
        let (path, body, expect) = make(&licenses[pick / MACHINES], &machines[pick % MACHINES]);
        Some(load::Call { path: path.to_owned(), body: body.into_bytes(), expect })
    })
    .await
}

/// Milliseconds one RSA-2048 PKCS#1 v1.5 SHA-256 signature of a typical
/// seed-001 answer takes here (the median of 50), made as the server
/// makes it (ring, on a key made by the `rsa` crate).
fn rsa_sign_millis() -> f64 {
    use rsa::pkcs8::EncodePrivateKey;
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("an RSA key");
    let der = private.to_pkcs8_der().expect("PKCS#8");
    let key = ring::signature::RsaKeyPair::from_pkcs8(der.as_bytes()).expect("ring opens it");
    let random = ring::rand::SystemRandom::new();
    let data = br#"{"activations":5,"expires_at":"2027-11-28T00:00:00Z","features":[],"issued_at":"2026-11-28T00:00:00Z","license_id":"00000000-0000-4000-8000-000000000000","license_key":"ABCDE-FGHJK-MNPQR-STVWX-YZ234","machine_id":"0000000000000000000000000000000000000000000000000000000000000000","max_activations":5,"product":null,"status":"active"}"#;
    let mut signature = vec![0u8; key.public().modulus_len()];
    let mut times: Vec<f64> = (0..50)
        .map(|_| {
            let started = Instant::now();
            key.sign(&ring::signature::RSA_PKCS1_SHA256, &random, data, &mut signature).expect("signs");
            std::hint::black_box(&signature);
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
