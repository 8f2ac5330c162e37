//! Every API style is a thin adapter over one client service: a license
//! activated through any one of them is validated, heartbeated and
//! deactivated through each of the others, and a refusal is the same
//! domain refusal whichever style answers it (each in its own shape; the
//! device-guard style answers validate's refusals with one generic error,
//! as its document asks, so only the fact of the refusal shows there).

use keyledger_tests::{on_both_backends, Backend, Reply, TestApp, TestTenant, TestUser};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

on_both_backends!(
    a_license_activated_in_one_style_is_used_and_released_in_every_other,
    a_refusal_is_the_same_domain_refusal_in_every_style,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Native,
    SignedRsa,
    DeviceGuard,
    TenantJwt,
}

const STYLES: [Style; 4] = [Style::Native, Style::SignedRsa, Style::DeviceGuard, Style::TenantJwt];

/// What a style's answer says, in the domain's words.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Served,
    /// The platform's refusal code; None where the style hides it.
    Refused(Option<String>),
}

/// One tenant with a five-by-five product (the signed-RSA style's key
/// form), a user who sells its licenses and a client key.
struct Shop {
    app: TestApp,
    tenant: TestTenant,
    seller: TestUser,
    client_key: String,
    product: String,
}

impl Shop {
    async fn open(backend: Backend) -> Self {
        let app = TestApp::spawn(backend).await;
        let tenant = app.tenant("Acme").await;
        let product = json!({ "name": "Studio", "code": "STUDIO", "keyFormat": "XXXXX-XXXXX-XXXXX-XXXXX-XXXXX" });
        let reply = app.post("/api/v1/products", Some(&tenant.admin_key), product).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        let product = reply.body["id"].as_str().unwrap().to_owned();
        let seller = app.user(&tenant, "seller").await;
        let reply = app.post("/api/v1/api-keys", Some(&tenant.admin_key), json!({ "role": "client" })).await;
        let client_key = reply.body["key"].as_str().unwrap().to_owned();
        Self { app, tenant, seller, client_key, product }
    }

    /// A new license: (id, key).
    async fn license(&self, seats: u32) -> (String, String) {
        let license =
            self.app.generate(&self.seller.key, json!({ "productId": self.product, "maxActivations": seats })).await;
        (license["id"].as_str().unwrap().to_owned(), license["licenseKey"].as_str().unwrap().to_owned())
    }

    async fn activate(&self, style: Style, key: &str, machine: &str) -> Outcome {
        let app = &self.app;
        let reply = match style {
            Style::Native => {
                app.post("/api/v1/licenses/activate", None, json!({ "licenseKey": key, "machineId": machine })).await
            }
            Style::SignedRsa => {
                app.post("/license/activate", None, json!({ "license_key": key, "machine_id": machine })).await
            }
            // Validate-and-activate.
            Style::DeviceGuard => {
                app.post("/api/licenses/validate", None, json!({ "license_key": key, "device_id": machine })).await
            }
            Style::TenantJwt => {
                let body = json!({ "license_key": key, "machine_id": machine, "product_id": "STUDIO" });
                app.post("/v1/activate", Some(&self.client_key), body).await
            }
        };
        outcome(style, &reply)
    }

    async fn validate(&self, style: Style, key: &str, machine: &str) -> Outcome {
        let app = &self.app;
        let reply = match style {
            Style::Native => {
                app.post("/api/v1/licenses/validate", None, json!({ "licenseKey": key, "machineId": machine })).await
            }
            Style::SignedRsa => {
                app.post("/license/validate", None, json!({ "license_key": key, "machine_id": machine })).await
            }
            Style::DeviceGuard => {
                app.post("/api/licenses/validate", None, json!({ "license_key": key, "device_id": machine })).await
            }
            Style::TenantJwt => {
                app.post("/v1/verify", Some(&self.client_key), json!({ "license_key": key, "machine_id": machine }))
                    .await
            }
        };
        outcome(style, &reply)
    }

    /// A heartbeat where the style has one; validate records heartbeats
    /// in the others.
    async fn heartbeat(&self, style: Style, key: &str, machine: &str) -> Outcome {
        let app = &self.app;
        match style {
            Style::Native => {
                let body = json!({ "licenseKey": key, "machineId": machine });
                outcome(style, &app.post("/api/v1/licenses/heartbeat", None, body).await)
            }
            Style::TenantJwt => {
                let body = json!({ "license_key": key, "machine_id": machine });
                outcome(style, &app.post("/v1/heartbeat", Some(&self.client_key), body).await)
            }
            Style::SignedRsa | Style::DeviceGuard => self.validate(style, key, machine).await,
        }
    }

    async fn deactivate(&self, style: Style, key: &str, machine: &str) -> Outcome {
        let app = &self.app;
        let reply = match style {
            Style::Native => {
                app.post("/api/v1/licenses/deactivate", None, json!({ "licenseKey": key, "machineId": machine })).await
            }
            Style::SignedRsa => {
                app.post("/license/deactivate", None, json!({ "license_key": key, "machine_id": machine })).await
            }
            // The owner frees a device.
            Style::DeviceGuard => {
                let body = json!({ "license_key": key, "device_id": machine });
                app.post("/api/licenses/deactivate", Some(&self.seller.key), body).await
            }
            Style::TenantJwt => {
                app.post("/v1/deactivate", Some(&self.client_key), json!({ "license_key": key, "machine_id": machine }))
                    .await
            }
        };
        outcome(style, &reply)
    }
}

/// Reads a style's answer as the domain's outcome.
fn outcome(style: Style, reply: &Reply) -> Outcome {
    let body = &reply.body;
    let served = match style {
        Style::Native => body["success"] == true || body["isValid"] == true,
        Style::SignedRsa => reply.status == StatusCode::OK && body["data"].is_object(),
        Style::DeviceGuard => reply.status == StatusCode::OK,
        Style::TenantJwt => body["ok"] == true,
    };
    if served {
        return Outcome::Served;
    }
    let code = match style {
        Style::Native => body["reason"].as_str(),
        Style::SignedRsa => body["error"]["code"].as_str(),
        // One generic message on validate; others name their cause only
        // in words.
        Style::DeviceGuard => None,
        Style::TenantJwt => body["code"].as_str(),
    };
    Outcome::Refused(code.map(str::to_owned))
}

fn machine(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

async fn a_license_activated_in_one_style_is_used_and_released_in_every_other(backend: Backend) {
    let shop = Shop::open(backend).await;
    for first in STYLES {
        for other in STYLES.into_iter().filter(|style| *style != first) {
            let (id, key) = shop.license(1).await;
            let machine = machine(&format!("{first:?}-{other:?}"));
            let case = format!("activated through {first:?}, used through {other:?}");
            assert_eq!(shop.activate(first, &key, &machine).await, Outcome::Served, "{case}: activate");
            assert_eq!(shop.validate(other, &key, &machine).await, Outcome::Served, "{case}: validate");
            assert_eq!(shop.heartbeat(other, &key, &machine).await, Outcome::Served, "{case}: heartbeat");
            assert_eq!(shop.deactivate(other, &key, &machine).await, Outcome::Served, "{case}: deactivate");
            // Released for every style: the native check says the machine
            // holds no seat (the device-guard style would take one again).
            let after = shop.validate(Style::Native, &key, &machine).await;
            assert!(
                matches!(&after, Outcome::Refused(Some(code)) if code == "license_not_activated" || code == "machine_not_activated"),
                "{case}: after deactivate {after:?}"
            );
            // One device, one activation and one deactivation in the log.
            assert_eq!(shop.app.count_events(&id, "LicenseActivated").await, 1, "{case}");
            assert_eq!(shop.app.count_events(&id, "LicenseDeactivated").await, 1, "{case}");
        }
    }
}

async fn a_refusal_is_the_same_domain_refusal_in_every_style(backend: Backend) {
    let shop = Shop::open(backend).await;
    let admin = shop.tenant.admin_key.clone();
    let expect = |style: Style, got: Outcome, domain: &str, what: &str| {
        let wanted = if style == Style::DeviceGuard {
            Outcome::Refused(None)
        } else {
            Outcome::Refused(Some(domain.to_owned()))
        };
        assert_eq!(got, wanted, "{style:?}: {what}");
    };

    // Seats full: a third machine on a two-seat license.
    let (_, key) = shop.license(2).await;
    for (index, style) in STYLES.into_iter().enumerate() {
        let (_, key) = if index == 0 { (String::new(), key.clone()) } else { shop.license(2).await };
        assert_eq!(shop.activate(style, &key, &machine("a")).await, Outcome::Served);
        assert_eq!(shop.activate(style, &key, &machine("b")).await, Outcome::Served);
        expect(style, shop.activate(style, &key, &machine("c")).await, "seat_limit_reached", "a third machine");
    }

    // Suspended: every style's validate refuses the machine that holds a seat.
    let (id, key) = shop.license(1).await;
    assert_eq!(shop.activate(Style::Native, &key, &machine("held")).await, Outcome::Served);
    let reply = shop.app.post(&format!("/api/v1/licenses/suspend/{id}"), Some(&admin), json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    for style in STYLES {
        expect(style, shop.validate(style, &key, &machine("held")).await, "license_suspended", "suspended");
    }

    // A machine without a seat, on a license that has one elsewhere: every
    // style but the device guard's (which would activate it) refuses it.
    let (_, key) = shop.license(2).await;
    assert_eq!(shop.activate(Style::Native, &key, &machine("held")).await, Outcome::Served);
    for style in [Style::Native, Style::SignedRsa, Style::TenantJwt] {
        expect(style, shop.validate(style, &key, &machine("stranger")).await, "machine_not_activated", "a stranger");
    }

    // An unknown key of the right form.
    let unknown = "ABCDE-FGHJK-LMNPQ-RSTUV-WXYZ2";
    for style in STYLES {
        expect(style, shop.validate(style, unknown, &machine("held")).await, "license_not_found", "an unknown key");
    }
}
