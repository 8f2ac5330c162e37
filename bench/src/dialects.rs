//! `dialects`: each dialect's validate (seed 004: verify) beside the
//! native one, in one run on one server and one set of licenses, each
//! with five machines holding seats. The native load runs first and last
//! (the machine drifts within a run) and each dialect is compared with
//! the mean of the two. Seed 001 signs every answer with RSA-2048: the
//! scenario also times that signature alone, in this process, to say how
//! much of a seed-001 validate it is.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::load::{self, Report};
use crate::scenario::{generate, post, print_table, Bench, Served, OPERATOR};

const MACHINES: usize = 5;

pub(crate) async fn run(bench: &mut Bench) -> Result<Value, String> {
    let server = bench.keyledger(&[]).await?;
    let base = server.base.clone();
    let client = bench.client.clone();
    let tenant = post(&client, &format!("{base}/api/v1/tenants"), Some(OPERATOR), &json!({"name": "Bench"})).await?;
    let admin = tenant["adminKey"].as_str().ok_or("no admin key")?.to_owned();
    let user = api_key(&client, &base, &admin, "user").await?;
    let client_key = api_key(&client, &base, &admin, "client").await?;
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

    let native = dialect_load(bench, &server, "native validate", &licenses, &machines, None, native_call).await;
    let seed001 = dialect_load(bench, &server, "seed 001 validate", &licenses, &machines, None, seed001_call).await;
    let seed002 = dialect_load(bench, &server, "seed 002 validate", &licenses, &machines, None, seed002_call).await;
    let seed004 =
        dialect_load(bench, &server, "seed 004 verify", &licenses, &machines, Some(&client_key), seed004_call).await;
    let native_again =
        dialect_load(bench, &server, "native validate (2)", &licenses, &machines, None, native_call).await;
    drop(server);
    print_table(&[&native, &seed001, &seed002, &seed004, &native_again]);
    let native_mean = (native.throughput + native_again.throughput) / 2.0;
    let over_native = |report: &Report| if native_mean > 0.0 { report.throughput / native_mean } else { 0.0 };
    let (r001, r002, r004) = (over_native(&seed001), over_native(&seed002), over_native(&seed004));
    let rsa_sign_ms = rsa_sign_millis();
    eprintln!(
        "over native validate: seed 001 = {r001:.2} (RSA signing, the exception), seed 002 = {r002:.2}, \
         seed 004 = {r004:.2} (target >= 0.8); one RSA-2048 signature takes {rsa_sign_ms:.2} ms on one core here, \
         so seed 001 answers at most {:.0}/s a core from signing alone",
        1000.0 / rsa_sign_ms
    );
    Ok(json!({
        "scenario": "dialects", "backend": bench.backend(),
        "reports": [native, seed001, seed002, seed004, native_again],
        "ratios": {"seed001_over_native": r001, "seed002_over_native": r002, "seed004_over_native": r004},
        "rsa_sign_ms": rsa_sign_ms,
        "targets_met": {"seed002_over_native": r002 >= 0.8, "seed004_over_native": r004 >= 0.8},
    }))
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

fn seed001_call(key: &str, machine: &str) -> (&'static str, String, &'static [u8]) {
    ("/license/validate", format!(r#"{{"license_key":"{key}","machine_id":"{machine}"}}"#), br#""signature""#)
}

fn seed002_call(key: &str, machine: &str) -> (&'static str, String, &'static [u8]) {
    ("/api/licenses/validate", format!(r#"{{"license_key":"{key}","device_id":"{machine}"}}"#), br#""valid":true"#)
}

fn seed004_call(key: &str, machine: &str) -> (&'static str, String, &'static [u8]) {
    ("/v1/verify", format!(r#"{{"license_key":"{key}","machine_id":"{machine}"}}"#), br#""ok":true"#)
}

async fn dialect_load(
    bench: &Bench,
    server: &Served,
    name: &str,
    licenses: &Arc<Vec<String>>,
    machines: &Arc<Vec<String>>,
    bearer: Option<&str>,
    make: MakeCall,
) -> Report {
    let (licenses, machines) = (licenses.clone(), machines.clone());
    let connections = bench.options.connections;
    load::run_raw_as(name, server.addr, bearer, connections, bench.duration(), move |connection, n| {
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
