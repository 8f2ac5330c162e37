//! Keygen's resource objects for keyledger's licenses, machines and
//! entitlements: `{id, type, attributes, relationships}`, attributes in
//! camelCase. Keygen's clients need `relationships` on every resource
//! (possibly `{}`), never `null` metadata, and a machine's `fingerprint`,
//! `requireHeartbeat`, `heartbeatStatus`, `created` and `updated`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use keyledger_domain::{Device, License, LicenseStatus};
use serde::Serialize;
use serde_json::{json, Value};

use keyledger_http::instant;

/// A license expiring within this long is `EXPIRING`.
const EXPIRING_WITHIN: chrono::Duration = chrono::Duration::days(3);

/// Keygen's license status for a license now.
pub(super) fn license_status(license: &License, now: DateTime<Utc>) -> &'static str {
    match license.status_at(now) {
        LicenseStatus::Suspended => "SUSPENDED",
        // Revoked for good: Keygen's nearest is a banned license.
        LicenseStatus::Revoked => "BANNED",
        LicenseStatus::Expired => "EXPIRED",
        _ if license.expires_at.is_some_and(|at| at - now < EXPIRING_WITHIN) => "EXPIRING",
        _ => "ACTIVE",
    }
}

fn link(tenant_id: &str, path: &str) -> String {
    format!("{}{tenant_id}/v1/{path}", super::PREFIX)
}

/// A license as Keygen shows one: typed, so the validation answer (the
/// hot path) is written straight to bytes without a `Value` tree.
#[derive(Serialize)]
pub(super) struct LicenseResource<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    attributes: LicenseAttributes<'a>,
    relationships: LicenseRelationships<'a>,
    links: SelfLink,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LicenseAttributes<'a> {
    name: Option<&'a str>,
    key: Option<&'a str>,
    expiry: Option<String>,
    status: &'static str,
    uses: u32,
    suspended: bool,
    scheme: Option<&'a str>,
    encrypted: bool,
    strict: bool,
    floating: bool,
    protected: bool,
    max_machines: u32,
    max_processes: Option<u32>,
    max_users: Option<u32>,
    max_cores: Option<u32>,
    max_uses: Option<u32>,
    require_heartbeat: bool,
    require_check_in: bool,
    last_validated: Option<String>,
    last_check_out: Option<String>,
    last_check_in: Option<String>,
    next_check_in: Option<String>,
    entitlements: &'a [&'a str],
    metadata: Empty,
    created: Option<String>,
    updated: Option<String>,
}

/// `{}`: Keygen's clients refuse `null` metadata.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Related<'a> {
    data: Option<Identifier<'a>>,
}

#[derive(Serialize)]
struct Identifier<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
}

#[derive(Serialize)]
struct RelatedLink {
    related: String,
}

#[derive(Serialize)]
struct SelfLink {
    #[serde(rename = "self")]
    own: String,
}

#[derive(Serialize)]
struct Count {
    count: usize,
}

#[derive(Serialize)]
struct Machines {
    links: RelatedLink,
    meta: Count,
}

#[derive(Serialize)]
struct Entitlements {
    links: RelatedLink,
}

#[derive(Serialize)]
struct LicenseRelationships<'a> {
    account: Related<'a>,
    product: Related<'a>,
    machines: Machines,
    entitlements: Entitlements,
}

/// A license as Keygen shows one.
pub(super) fn license_resource<'a>(
    license: &'a License,
    features: &'a [&'a str],
    now: DateTime<Utc>,
) -> LicenseResource<'a> {
    let tenant = license.tenant_id.as_str();
    let id = license.id.as_str();
    let created = license.created_at.map(instant);
    LicenseResource {
        id,
        kind: "licenses",
        attributes: LicenseAttributes {
            name: None,
            key: license.license_key.as_ref().map(|key| key.as_str()),
            expiry: license.expires_at.map(instant),
            status: license_status(license, now),
            uses: 0,
            suspended: license.status == LicenseStatus::Suspended,
            scheme: None,
            encrypted: false,
            strict: true,
            floating: license.max_activations.get() > 1,
            protected: true,
            max_machines: license.max_activations.get(),
            max_processes: None,
            max_users: license.policy.max_users,
            max_cores: None,
            max_uses: None,
            require_heartbeat: license.policy.heartbeat_secs.is_some(),
            require_check_in: false,
            last_validated: None,
            last_check_out: license.last_checked_out_at.map(instant),
            last_check_in: None,
            next_check_in: None,
            entitlements: features,
            metadata: Empty {},
            updated: created.clone(),
            created,
        },
        relationships: LicenseRelationships {
            account: Related { data: Some(Identifier { kind: "accounts", id: tenant }) },
            product: Related {
                data: license.product_id.as_ref().map(|product| Identifier { kind: "products", id: product.as_str() }),
            },
            machines: Machines {
                links: RelatedLink { related: link(tenant, &format!("licenses/{id}/machines")) },
                meta: Count { count: license.devices.len() },
            },
            entitlements: Entitlements {
                links: RelatedLink { related: link(tenant, &format!("licenses/{id}/entitlements")) },
            },
        },
        links: SelfLink { own: link(tenant, &format!("licenses/{id}")) },
    }
}

/// [`license_resource`] as a JSON value, to embed in other documents.
pub(super) fn license(license: &License, features: &[&str], now: DateTime<Utc>) -> Value {
    serde_json::to_value(license_resource(license, features, now)).unwrap_or_default()
}

/// Keygen's heartbeat status of a device: `NOT_STARTED` until its first
/// heartbeat after activation (a ping, or a validation once the heartbeat
/// interval has passed), `ALIVE` until its policy counts it dead (always,
/// without one), `DEAD` after.
pub(super) fn heartbeat_status(license: &License, device: &Device, now: DateTime<Utc>) -> &'static str {
    if device.last_heartbeat_at <= device.activated_at {
        return "NOT_STARTED";
    }
    if license.policy.is_dead(device.last_heartbeat_at, now) {
        "DEAD"
    } else {
        "ALIVE"
    }
}

/// A machine (a device holding a seat) as Keygen shows one. Its
/// fingerprint is the one its client activated it with, when that was
/// through this dialect; else its id stands in (the fingerprints of other
/// dialects' devices are kept only as keyed hashes).
pub(super) fn machine(license: &License, device: &Device, fingerprint: Option<&str>, now: DateTime<Utc>) -> Value {
    let tenant = license.tenant_id.as_str();
    let id = device.id(&license.id).to_string();
    let name = device.machine_name.as_str();
    json!({
        "id": id,
        "type": "machines",
        "attributes": {
            "fingerprint": fingerprint.unwrap_or(&id),
            "name": (!name.is_empty()).then_some(name),
            "platform": null,
            "hostname": null,
            "ip": device.details.ip,
            "cores": null,
            "metadata": {},
            "requireHeartbeat": license.policy.heartbeat_secs.is_some(),
            "heartbeatStatus": heartbeat_status(license, device, now),
            "heartbeatDuration": license.policy.heartbeat_secs,
            "lastHeartbeat": (device.last_heartbeat_at > device.activated_at).then(|| instant(device.last_heartbeat_at)),
            "created": instant(device.activated_at),
            "updated": instant(device.last_heartbeat_at),
        },
        "relationships": {
            "account": { "data": { "type": "accounts", "id": tenant } },
            "license": { "data": { "type": "licenses", "id": license.id.as_str() } },
        },
        "links": { "self": link(tenant, &format!("machines/{id}")) },
    })
}

/// The license's machines, each with the fingerprint kept for it.
pub(super) fn machines(license: &License, fingerprints: &HashMap<String, String>, now: DateTime<Utc>) -> Vec<Value> {
    license
        .devices
        .iter()
        .map(|device| {
            let fingerprint = fingerprints.get(&device.id(&license.id).to_string()).map(String::as_str);
            machine(license, device, fingerprint, now)
        })
        .collect()
}

/// An entitlement: a feature the license carries. Its id is derived from
/// the tenant and the code, so it is the same on every answer.
pub(super) fn entitlement(license: &License, code: &str) -> Value {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"keyledger entitlement\0")
        .chain_update(license.tenant_id.as_str().as_bytes())
        .chain_update(b"\0")
        .chain_update(code.as_bytes())
        .finalize();
    let id = uuid::Builder::from_custom_bytes(digest[..16].try_into().expect("16 of 32 bytes")).into_uuid();
    let created = license.created_at.map(instant);
    json!({
        "id": id.to_string(),
        "type": "entitlements",
        "attributes": { "name": code, "code": code, "metadata": {}, "created": created, "updated": created },
        "relationships": { "account": { "data": { "type": "accounts", "id": license.tenant_id.as_str() } } },
    })
}
