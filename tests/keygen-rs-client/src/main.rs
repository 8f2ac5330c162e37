//! Keygen's published Rust client against keyledger, unchanged but for
//! its API URL: validate with a fingerprint scope, activate, validate
//! again, ping, list machines, check out and verify and decrypt a machine
//! file and a license file offline, deactivate, validate again; an
//! unknown key; a wrong public key refused.
//!
//! Usage: keygen-rs-client API_URL LICENSE_KEY PUBLIC_KEY_HEX FINGERPRINT
//! Prints `license=<id>` and `machine=<id>`, then `OK`.

use keygen_rs::config::{self, KeygenConfig};
use keygen_rs::errors::Error;
use keygen_rs::license::{LicenseCheckoutOpts, LicenseValidationRequest};
use keygen_rs::machine::MachineCheckoutOpts;

fn configure(api_url: &str, key: &str, public_key: &str) -> Result<(), Error> {
    config::set_config(KeygenConfig {
        api_url: api_url.to_owned(),
        account: "unused-with-a-custom-api-url".to_owned(),
        license_key: Some(key.to_owned()),
        public_key: Some(public_key.to_owned()),
        ..KeygenConfig::default()
    })
}

fn check(condition: bool, message: String) {
    if !condition {
        eprintln!("FAILED: {message}");
        std::process::exit(1);
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [api_url, key, public_key, fingerprint] = args.as_slice() else {
        eprintln!("usage: keygen-rs-client API_URL LICENSE_KEY PUBLIC_KEY_HEX FINGERPRINT");
        std::process::exit(2);
    };
    configure(api_url, key, public_key)?;
    let scope = || LicenseValidationRequest::for_fingerprint(fingerprint.clone());

    let first = keygen_rs::validate(&scope()).await?;
    check(!first.meta.valid, format!("a fresh fingerprint is not valid: {:?}", first.meta));
    check(
        matches!(first.meta.code.as_str(), "NO_MACHINE" | "NO_MACHINES" | "FINGERPRINT_SCOPE_MISMATCH"),
        format!("code {}", first.meta.code),
    );
    let license = first.license.expect("the license, although not valid for this machine");
    check(&license.key == key, format!("the license's key {}", license.key));
    println!("license={}", license.id);

    let machine = license.activate(fingerprint, &[]).await?;
    check(&machine.fingerprint == fingerprint, format!("the machine's fingerprint {}", machine.fingerprint));
    println!("machine={}", machine.id);

    match license.activate(fingerprint, &[]).await {
        Err(error) => check(error.is_api_code("FINGERPRINT_TAKEN"), format!("a second activation: {error:?}")),
        Ok(_) => check(false, "a second activation of one fingerprint was accepted".to_owned()),
    }

    let license = keygen_rs::validate(&scope()).await?.into_license()?;
    let machine = license.machine(fingerprint).await?;
    let machine = machine.ping().await?;
    check(machine.heartbeat_status.as_str() != "", "a heartbeat status".to_owned());
    let machines = license.machines(None).await?;
    check(machines.data.iter().any(|m| m.id == machine.id), "the machine is listed".to_owned());

    let machine_file = machine.checkout(&MachineCheckoutOpts { ttl: Some(7 * 24 * 3600), include: None }).await?;
    machine_file.verify()?;
    let dataset = machine_file.decrypt(&format!("{key}{fingerprint}"))?;
    check(dataset.machine.id == machine.id, format!("the machine file's machine {}", dataset.machine.id));
    check(dataset.license.id == license.id, format!("the machine file's license {}", dataset.license.id));

    let license_file = license.checkout(&LicenseCheckoutOpts::with_ttl(7 * 24 * 3600).with_encrypt(true)).await?;
    license_file.verify()?;
    let dataset = license_file.decrypt(key)?;
    check(dataset.license.id == license.id, format!("the license file's license {}", dataset.license.id));
    check(dataset.expiry > chrono::Utc::now(), "the license file expires later".to_owned());

    license.deactivate(&machine.id).await?;
    let after = keygen_rs::validate(&scope()).await?;
    check(
        !after.meta.valid && matches!(after.meta.code.as_str(), "NO_MACHINE" | "NO_MACHINES"),
        format!("after deactivation: {:?}", after.meta),
    );

    configure(api_url, "ZZZZ-ZZZZ-ZZZZ-ZZZZ", public_key)?;
    let unknown = keygen_rs::validate(&scope()).await?;
    check(!unknown.meta.valid && unknown.meta.code == "NOT_FOUND", format!("an unknown key: {:?}", unknown.meta));

    configure(api_url, key, &"11".repeat(32))?;
    match keygen_rs::validate(&scope()).await {
        Err(Error::KeygenSignatureInvalid { .. }) => {}
        other => check(false, format!("an answer verified with another public key: {other:?}")),
    }
    println!("OK");
    Ok(())
}
