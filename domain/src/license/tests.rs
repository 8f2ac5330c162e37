//! Given/when/then tests of every command path and every refusal.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;

use super::*;
use crate::LicenseEvent::*;
use crate::{
    AnomalyEvidence, AnomalyKind, CustomerId, DeviceDetails, LicenseId, MachineName, OwnerId, Policy, ProductId,
    TenantId, MAX_PAST_DEVICES,
};

type LicenseTest = TestFramework<License>;

fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 22, 10, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn expiry() -> DateTime<Utc> {
    t(0) + Duration::days(365)
}

fn key() -> LicenseKey {
    LicenseKey::parse("ABCD-EFGH-JKMN-2345").unwrap()
}

fn machine(n: u8) -> MachineHash {
    MachineHash::from_hex(format!("{n:02x}").repeat(32))
}

fn name(s: &str) -> MachineName {
    MachineName::parse(Some(s)).unwrap()
}

fn generated_with_seats(seats: u32) -> LicenseEvent {
    LicenseGenerated {
        license_id: LicenseId::trusted("lic-1"),
        tenant_id: TenantId::trusted("tenant-1"),
        owner_id: OwnerId::trusted("user-1"),
        license_key: key(),
        license_type: LicenseType::Standard,
        max_activations: Seats::new(seats.into()).unwrap(),
        max_connections: Some(10),
        policy: Policy::default(),
        created_at: t(0),
        expires_at: Some(expiry()),
        expires_after_activation_secs: None,
        product_id: None,
        features: Vec::new(),
        number: None,
        customer_id: None,
    }
}

fn generated() -> LicenseEvent {
    generated_with_seats(1)
}

fn activated(n: u8, at: i64) -> LicenseEvent {
    LicenseActivated {
        machine: machine(n),
        machine_name: name("prod-01"),
        details: DeviceDetails::default(),
        device_number: None,
        activated_at: t(at),
    }
}

fn activate(n: u8, at: i64) -> LicenseCommand {
    LicenseCommand::ActivateLicense {
        machine: machine(n),
        machine_name: name("prod-01"),
        details: DeviceDetails::default(),
        device_number: None,
        at: t(at),
    }
}

fn state(events: Vec<LicenseEvent>) -> License {
    let mut license = License::default();
    for event in events {
        license.apply(event);
    }
    license
}

// --- generate ---------------------------------------------------------------

#[test]
fn generating_a_license_records_its_terms() {
    LicenseTest::with(())
        .given_no_previous_events()
        .when(LicenseCommand::GenerateLicense {
            license_id: LicenseId::trusted("lic-1"),
            tenant_id: TenantId::trusted("tenant-1"),
            owner_id: OwnerId::trusted("user-1"),
            license_key: key(),
            license_type: LicenseType::Standard,
            max_activations: Seats::ONE,
            max_connections: Some(10),
            expires_at: Some(expiry()),
            expires_after_activation_secs: None,
            product_id: None,
            features: Vec::new(),
            number: None,
            policy: Policy::default(),
            at: t(0),
            customer_id: None,
        })
        .then_expect_events(vec![generated()]);
}

#[test]
fn generating_twice_is_refused() {
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::GenerateLicense {
            license_id: LicenseId::trusted("lic-1"),
            tenant_id: TenantId::trusted("tenant-1"),
            owner_id: OwnerId::trusted("user-1"),
            license_key: key(),
            license_type: LicenseType::Standard,
            max_activations: Seats::ONE,
            max_connections: None,
            expires_at: Some(expiry()),
            expires_after_activation_secs: None,
            product_id: None,
            features: Vec::new(),
            number: None,
            policy: Policy::default(),
            at: t(1),
            customer_id: None,
        })
        .then_expect_error(LicenseError::AlreadyExists);
}

#[test]
fn generating_a_license_that_expires_at_creation_is_refused() {
    LicenseTest::with(())
        .given_no_previous_events()
        .when(LicenseCommand::GenerateLicense {
            license_id: LicenseId::trusted("lic-1"),
            tenant_id: TenantId::trusted("tenant-1"),
            owner_id: OwnerId::trusted("user-1"),
            license_key: key(),
            license_type: LicenseType::Trial,
            max_activations: Seats::ONE,
            max_connections: None,
            expires_at: Some(t(0)),
            expires_after_activation_secs: None,
            product_id: None,
            features: Vec::new(),
            number: None,
            policy: Policy::default(),
            at: t(0),
            customer_id: None,
        })
        .then_expect_error(LicenseError::ExpiryBeforeCreation);
}

#[test]
fn every_command_on_a_missing_license_is_not_found() {
    for command in [
        activate(1, 1),
        LicenseCommand::DeactivateLicense { machine: machine(1), enforce_transfer_limit: true, at: t(1) },
        LicenseCommand::RevokeLicense { at: t(1) },
        LicenseCommand::SuspendLicense { reason: None, at: t(1) },
        LicenseCommand::ReinstateLicense { at: t(1) },
        LicenseCommand::ExpireLicense { at: t(1) },
        LicenseCommand::RecordHeartbeat { machine: machine(1), min_interval: Duration::zero(), at: t(1) },
        LicenseCommand::EditLicense {
            expires_at: None,
            max_activations: None,
            max_connections: None,
            policy: None,
            at: t(1),
            customer_id: None,
        },
    ] {
        LicenseTest::with(()).given_no_previous_events().when(command).then_expect_error(LicenseError::NotFound);
    }
}

// --- activate ---------------------------------------------------------------

#[test]
fn activating_binds_the_machine() {
    LicenseTest::with(()).given(vec![generated()]).when(activate(1, 5)).then_expect_events(vec![activated(1, 5)]);
    let license = state(vec![generated(), activated(1, 5)]);
    assert_eq!(license.status, LicenseStatus::Activated);
    assert_eq!(license.activated_at, Some(t(5)));
    assert_eq!(license.devices.len(), 1);
}

#[test]
fn activating_the_bound_machine_again_changes_nothing() {
    LicenseTest::with(()).given(vec![generated(), activated(1, 5)]).when(activate(1, 9)).then_expect_events(vec![]);
}

#[test]
fn activating_a_second_machine_on_a_one_seat_license_is_refused() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 5)])
        .when(activate(2, 9))
        .then_expect_error(LicenseError::BoundToAnotherMachine);
}

#[test]
fn seats_allow_that_many_machines_and_no_more() {
    LicenseTest::with(())
        .given(vec![generated_with_seats(3), activated(1, 1), activated(2, 2)])
        .when(activate(3, 3))
        .then_expect_events(vec![activated(3, 3)]);
    LicenseTest::with(())
        .given(vec![generated_with_seats(3), activated(1, 1), activated(2, 2), activated(3, 3)])
        .when(activate(4, 4))
        .then_expect_error(LicenseError::SeatLimitReached { max: 3 });
}

#[test]
fn activating_an_expired_license_is_refused_before_any_expiry_event() {
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::ActivateLicense {
            machine: machine(1),
            machine_name: name("x"),
            details: DeviceDetails::default(),
            device_number: None,
            at: expiry(),
        })
        .then_expect_error(LicenseError::Expired);
}

#[test]
fn activating_a_suspended_license_is_refused() {
    LicenseTest::with(())
        .given(vec![generated(), LicenseSuspended { reason: None, suspended_at: t(1) }])
        .when(activate(1, 2))
        .then_expect_error(LicenseError::Suspended);
}

// --- deactivate ---------------------------------------------------------------

#[test]
fn deactivating_the_last_machine_returns_the_license_to_generated() {
    let deactivated = LicenseDeactivated { machine: machine(1), deactivated_at: t(9) };
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 5)])
        .when(LicenseCommand::DeactivateLicense { machine: machine(1), enforce_transfer_limit: true, at: t(9) })
        .then_expect_events(vec![deactivated.clone()]);
    let license = state(vec![generated(), activated(1, 5), deactivated]);
    assert_eq!(license.status, LicenseStatus::Generated);
    assert_eq!(license.activated_at, None);
    assert!(license.devices.is_empty());
}

#[test]
fn deactivating_one_of_several_machines_keeps_the_license_activated() {
    let license = state(vec![
        generated_with_seats(2),
        activated(1, 1),
        activated(2, 2),
        LicenseDeactivated { machine: machine(1), deactivated_at: t(3) },
    ]);
    assert_eq!(license.status, LicenseStatus::Activated);
    assert_eq!(license.devices.len(), 1);
    assert_eq!(license.activated_at, Some(t(1)));
}

#[test]
fn deactivating_a_machine_that_is_not_bound_is_refused() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 5)])
        .when(LicenseCommand::DeactivateLicense { machine: machine(2), enforce_transfer_limit: true, at: t(9) })
        .then_expect_error(LicenseError::MachineNotActivated);
}

// --- revoke (reset for transfer) ------------------------------------------------

#[test]
fn revoking_releases_the_machine_and_returns_to_generated() {
    let revoked = LicenseRevoked { released_machines: vec![machine(1)], revoked_at: t(10) };
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 5)])
        .when(LicenseCommand::RevokeLicense { at: t(10) })
        .then_expect_events(vec![revoked.clone()]);
    let license = state(vec![generated(), activated(1, 5), revoked]);
    assert_eq!(license.status, LicenseStatus::Generated);
    assert_eq!(license.activated_at, None);
    assert!(license.devices.is_empty());
}

#[test]
fn after_revoke_another_machine_can_activate() {
    LicenseTest::with(())
        .given(vec![
            generated(),
            activated(1, 5),
            LicenseRevoked { released_machines: vec![machine(1)], revoked_at: t(10) },
        ])
        .when(activate(2, 11))
        .then_expect_events(vec![activated(2, 11)]);
}

#[test]
fn revoking_a_license_that_is_not_bound_changes_nothing() {
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::RevokeLicense { at: t(1) })
        .then_expect_events(vec![]);
}

#[test]
fn revoking_cannot_lift_a_suspension_or_an_expiry() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1), LicenseSuspended { reason: None, suspended_at: t(2) }])
        .when(LicenseCommand::RevokeLicense { at: t(3) })
        .then_expect_error(LicenseError::Suspended);
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1)])
        .when(LicenseCommand::RevokeLicense { at: expiry() })
        .then_expect_error(LicenseError::Expired);
}

// --- suspend / reinstate ----------------------------------------------------------

#[test]
fn suspending_then_reinstating_restores_the_previous_status() {
    let suspended = LicenseSuspended { reason: Some("chargeback".into()), suspended_at: t(2) };
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1)])
        .when(LicenseCommand::SuspendLicense { reason: Some("chargeback".into()), at: t(2) })
        .then_expect_events(vec![suspended.clone()]);
    let reinstated = LicenseReinstated { reinstated_at: t(3) };
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1), suspended.clone()])
        .when(LicenseCommand::ReinstateLicense { at: t(3) })
        .then_expect_events(vec![reinstated.clone()]);
    let license = state(vec![generated(), activated(1, 1), suspended, reinstated]);
    assert_eq!(license.status, LicenseStatus::Activated);
    assert_eq!(license.suspension_reason, None);
}

#[test]
fn suspending_a_suspended_license_changes_nothing() {
    LicenseTest::with(())
        .given(vec![generated(), LicenseSuspended { reason: None, suspended_at: t(1) }])
        .when(LicenseCommand::SuspendLicense { reason: None, at: t(2) })
        .then_expect_events(vec![]);
}

#[test]
fn reinstating_a_license_that_is_not_suspended_is_refused() {
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::ReinstateLicense { at: t(1) })
        .then_expect_error(LicenseError::NotSuspended);
}

#[test]
fn a_machine_released_while_suspended_is_not_restored_on_reinstatement() {
    let license = state(vec![
        generated(),
        activated(1, 1),
        LicenseSuspended { reason: None, suspended_at: t(2) },
        LicenseDeactivated { machine: machine(1), deactivated_at: t(3) },
        LicenseReinstated { reinstated_at: t(4) },
    ]);
    assert_eq!(license.status, LicenseStatus::Generated);
}

// --- expire -----------------------------------------------------------------------

#[test]
fn expiring_after_the_expiry_records_it() {
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::ExpireLicense { at: expiry() })
        .then_expect_events(vec![LicenseExpired { expired_at: expiry() }]);
}

#[test]
fn expiring_early_is_refused() {
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::ExpireLicense { at: t(1) })
        .then_expect_error(LicenseError::NotYetExpired { expires_at: expiry().to_rfc3339() });
}

#[test]
fn expiring_twice_changes_nothing() {
    LicenseTest::with(())
        .given(vec![generated(), LicenseExpired { expired_at: expiry() }])
        .when(LicenseCommand::ExpireLicense { at: expiry() + Duration::days(1) })
        .then_expect_events(vec![]);
}

#[test]
fn an_expiry_during_a_suspension_survives_reinstatement() {
    let license = state(vec![
        generated(),
        LicenseSuspended { reason: None, suspended_at: t(1) },
        LicenseExpired { expired_at: expiry() },
        LicenseReinstated { reinstated_at: expiry() + Duration::days(1) },
    ]);
    assert_eq!(license.status, LicenseStatus::Expired);
}

// --- heartbeat ---------------------------------------------------------------------

#[test]
fn a_heartbeat_after_the_interval_is_recorded() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 0)])
        .when(LicenseCommand::RecordHeartbeat { machine: machine(1), min_interval: Duration::minutes(15), at: t(15) })
        .then_expect_events(vec![HeartbeatRecorded { machine: machine(1), recorded_at: t(15) }]);
}

#[test]
fn heartbeats_within_the_interval_produce_no_event() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 0), HeartbeatRecorded { machine: machine(1), recorded_at: t(15) }])
        .when(LicenseCommand::RecordHeartbeat { machine: machine(1), min_interval: Duration::minutes(15), at: t(29) })
        .then_expect_events(vec![]);
}

#[test]
fn a_heartbeat_from_an_unbound_machine_is_refused() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 0)])
        .when(LicenseCommand::RecordHeartbeat { machine: machine(2), min_interval: Duration::zero(), at: t(1) })
        .then_expect_error(LicenseError::MachineNotActivated);
}

#[test]
fn a_heartbeat_on_a_suspended_or_expired_license_is_refused() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 0), LicenseSuspended { reason: None, suspended_at: t(1) }])
        .when(LicenseCommand::RecordHeartbeat { machine: machine(1), min_interval: Duration::zero(), at: t(2) })
        .then_expect_error(LicenseError::Suspended);
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 0)])
        .when(LicenseCommand::RecordHeartbeat { machine: machine(1), min_interval: Duration::zero(), at: expiry() })
        .then_expect_error(LicenseError::Expired);
}

// --- edit --------------------------------------------------------------------------

#[test]
fn an_edit_records_the_resulting_terms() {
    let new_expiry = expiry() + Duration::days(30);
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::EditLicense {
            expires_at: Some(new_expiry),
            max_activations: Some(Seats::new(5).unwrap()),
            max_connections: Some(None),
            policy: None,
            at: t(1),
            customer_id: None,
        })
        .then_expect_events(vec![LicenseEdited {
            expires_at: Some(new_expiry),
            max_activations: Seats::new(5).unwrap(),
            max_connections: None,
            policy: Policy::default(),
            edited_at: t(1),
            customer_id: None,
        }]);
}

#[test]
fn given_a_license_when_an_edit_names_a_customer_then_it_keeps_its_terms_and_names_the_customer() {
    let sold = LicenseEdited {
        expires_at: Some(expiry()),
        max_activations: Seats::new(1).unwrap(),
        max_connections: Some(10),
        policy: Policy::default(),
        edited_at: t(2),
        customer_id: Some(CustomerId::trusted("c-1")),
    };
    let edit = |customer_id| LicenseCommand::EditLicense {
        expires_at: None,
        max_activations: None,
        max_connections: None,
        policy: None,
        at: t(2),
        customer_id,
    };
    LicenseTest::with(())
        .given(vec![generated()])
        .when(edit(Some(Some(CustomerId::trusted("c-1")))))
        .then_expect_events(vec![sold.clone()]);
    LicenseTest::with(()).given(vec![generated(), sold.clone()]).when(edit(None)).then_expect_events(vec![]);
    let LicenseEdited { expires_at, max_activations, max_connections, policy, .. } = sold.clone() else {
        unreachable!()
    };
    LicenseTest::with(()).given(vec![generated(), sold]).when(edit(Some(None))).then_expect_events(vec![
        LicenseEdited { expires_at, max_activations, max_connections, policy, edited_at: t(2), customer_id: None },
    ]);
}

#[test]
fn an_edit_that_changes_nothing_records_nothing() {
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::EditLicense {
            expires_at: Some(expiry()),
            max_activations: None,
            max_connections: None,
            policy: None,
            at: t(1),
            customer_id: None,
        })
        .then_expect_events(vec![]);
}

#[test]
fn seats_cannot_drop_below_the_machines_in_use() {
    LicenseTest::with(())
        .given(vec![generated_with_seats(3), activated(1, 1), activated(2, 2)])
        .when(LicenseCommand::EditLicense {
            expires_at: None,
            max_activations: Some(Seats::ONE),
            max_connections: None,
            policy: None,
            at: t(3),
            customer_id: None,
        })
        .then_expect_error(LicenseError::SeatsBelowActiveMachines { requested: 1, active: 2 });
}

#[test]
fn an_edit_cannot_move_the_expiry_to_before_creation() {
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::EditLicense {
            expires_at: Some(t(0)),
            max_activations: None,
            max_connections: None,
            policy: None,
            at: t(1),
            customer_id: None,
        })
        .then_expect_error(LicenseError::ExpiryBeforeCreation);
}

#[test]
fn extending_an_expired_license_renews_it() {
    let later = expiry() + Duration::days(10);
    let license = state(vec![
        generated(),
        activated(1, 1),
        LicenseExpired { expired_at: expiry() },
        LicenseEdited {
            expires_at: Some(later + Duration::days(365)),
            max_activations: Seats::ONE,
            max_connections: Some(10),
            policy: Policy::default(),
            edited_at: later,
            customer_id: None,
        },
    ]);
    assert_eq!(license.status, LicenseStatus::Activated);
    assert!(license.validate(&machine(1), later).is_ok());
}

#[test]
fn a_renewal_moves_the_expiry_on_by_the_term_from_the_expiry() {
    let license = state(vec![generated()]);
    let term = expiry() - license.created_at.unwrap();
    assert_eq!(license.renewed_expiry(), Some(expiry() + term));
    let perpetual = License { expires_at: None, ..license };
    assert_eq!(perpetual.renewed_expiry(), None);
}

// --- validate (a query, not a command) ----------------------------------------------

#[test]
fn validation_accepts_the_bound_machine_only() {
    let license = state(vec![generated(), activated(1, 1)]);
    assert!(license.validate(&machine(1), t(2)).is_ok());
    assert_eq!(license.validate(&machine(2), t(2)).unwrap_err(), LicenseError::MachineNotActivated);
}

#[test]
fn validation_refuses_each_unusable_state() {
    assert_eq!(License::default().validate(&machine(1), t(1)).unwrap_err(), LicenseError::NotFound);
    assert_eq!(state(vec![generated()]).validate(&machine(1), t(1)).unwrap_err(), LicenseError::NotActivated);
    let suspended = state(vec![generated(), activated(1, 1), LicenseSuspended { reason: None, suspended_at: t(2) }]);
    assert_eq!(suspended.validate(&machine(1), t(3)).unwrap_err(), LicenseError::Suspended);
    let active = state(vec![generated(), activated(1, 1)]);
    assert_eq!(active.validate(&machine(1), expiry()).unwrap_err(), LicenseError::Expired);
    assert_eq!(active.status_at(expiry()), LicenseStatus::Expired);
    assert_eq!(active.status_at(t(2)), LicenseStatus::Activated);
}

#[test]
fn state_survives_a_json_round_trip() {
    let license = state(vec![generated_with_seats(2), activated(1, 1), activated(2, 2)]);
    let json = serde_json::to_string(&license).unwrap();
    assert_eq!(serde_json::from_str::<License>(&json).unwrap(), license);
}

// --- anomalies ----------------------------------------------------------------

fn evidence() -> AnomalyEvidence {
    AnomalyEvidence {
        event_ids: vec!["e1".into(), "e2".into()],
        count: 4,
        threshold: 3,
        window_started_at: t(0),
        window_ended_at: t(5),
        addresses: vec![],
        machines: vec![machine(1), machine(2)],
        trailing_per_hour: None,
    }
}

/// A finding triggered by the event with sequence `at` (the tests use the
/// minute as the trigger's sequence).
fn record(id: &str, kind: AnomalyKind, suspend: bool, at: i64) -> LicenseCommand {
    LicenseCommand::RecordAnomaly {
        anomaly_id: id.into(),
        kind,
        trigger_sequence: at,
        evidence: evidence(),
        // An hour's cooldown between a detector's suspensions.
        suspend: suspend.then_some(crate::AutoSuspend { cooldown_secs: 3600 }),
        at: t(at),
    }
}

fn detected(id: &str, kind: AnomalyKind, at: i64) -> LicenseEvent {
    AnomalyDetected { anomaly_id: id.into(), kind, trigger_sequence: at, evidence: evidence(), detected_at: t(at) }
}

#[test]
fn an_anomaly_is_recorded_once_per_episode() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1)])
        .when(record("a1", AnomalyKind::LicenseHopping, false, 5))
        .then_expect_events(vec![detected("a1", AnomalyKind::LicenseHopping, 5)]);
    LicenseTest::with(())
        .given(vec![generated(), detected("a1", AnomalyKind::LicenseHopping, 5)])
        .when(record("a2", AnomalyKind::LicenseHopping, false, 6))
        .then_expect_events(vec![]);
}

#[test]
fn another_kind_is_another_episode() {
    LicenseTest::with(())
        .given(vec![generated(), detected("a1", AnomalyKind::LicenseHopping, 5)])
        .when(record("a2", AnomalyKind::ExcessiveHeartbeats, false, 6))
        .then_expect_events(vec![detected("a2", AnomalyKind::ExcessiveHeartbeats, 6)]);
}

#[test]
fn a_resolved_anomaly_lets_the_next_finding_open_a_new_episode() {
    let resolved = AnomalyResolved {
        anomaly_id: "a1".into(),
        kind: AnomalyKind::LicenseHopping,
        note: Some("customer moved offices".into()),
        resolved_at: t(7),
    };
    LicenseTest::with(())
        .given(vec![generated(), detected("a1", AnomalyKind::LicenseHopping, 5)])
        .when(LicenseCommand::ResolveAnomaly {
            anomaly_id: "a1".into(),
            note: Some("customer moved offices".into()),
            at: t(7),
        })
        .then_expect_events(vec![resolved.clone()]);
    LicenseTest::with(())
        .given(vec![generated(), detected("a1", AnomalyKind::LicenseHopping, 5), resolved.clone()])
        .when(record("a2", AnomalyKind::LicenseHopping, false, 8))
        .then_expect_events(vec![detected("a2", AnomalyKind::LicenseHopping, 8)]);
    LicenseTest::with(())
        .given(vec![generated(), detected("a1", AnomalyKind::LicenseHopping, 5), resolved.clone()])
        .when(LicenseCommand::ResolveAnomaly { anomaly_id: "a1".into(), note: None, at: t(9) })
        .then_expect_error(LicenseError::AnomalyNotOpen);
    // The log read again finds the resolved anomaly's trigger once more:
    // it is recorded already.
    LicenseTest::with(())
        .given(vec![generated(), detected("a1", AnomalyKind::LicenseHopping, 5), resolved])
        .when(record("a1", AnomalyKind::LicenseHopping, false, 5))
        .then_expect_events(vec![]);
}

#[test]
fn the_suspend_action_suspends_in_the_same_append() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1)])
        .when(record("a1", AnomalyKind::UnusualActivationPattern, true, 5))
        .then_expect_events(vec![
            detected("a1", AnomalyKind::UnusualActivationPattern, 5),
            LicenseSuspended { reason: Some("anomaly: unusual_activation_pattern".into()), suspended_at: t(5) },
        ]);
    // Already suspended: the finding is recorded, the suspension stands.
    LicenseTest::with(())
        .given(vec![generated(), LicenseSuspended { reason: None, suspended_at: t(2) }])
        .when(record("a1", AnomalyKind::UnusualActivationPattern, true, 5))
        .then_expect_events(vec![detected("a1", AnomalyKind::UnusualActivationPattern, 5)]);
}

#[test]
fn a_detector_suspends_a_license_again_only_after_the_cooldown() {
    let suspended = |at| LicenseSuspended { reason: Some("anomaly: license_hopping".into()), suspended_at: t(at) };
    let resolved =
        AnomalyResolved { anomaly_id: "a1".into(), kind: AnomalyKind::LicenseHopping, note: None, resolved_at: t(7) };
    let reinstated = LicenseReinstated { reinstated_at: t(8) };
    let history = vec![
        generated(),
        activated(1, 1),
        detected("a1", AnomalyKind::LicenseHopping, 5),
        suspended(5),
        resolved,
        reinstated,
    ];
    // Within the hour: recorded, not suspended.
    LicenseTest::with(())
        .given(history.clone())
        .when(record("a2", AnomalyKind::LicenseHopping, true, 30))
        .then_expect_events(vec![detected("a2", AnomalyKind::LicenseHopping, 30)]);
    // An hour after the last suspension: suspended again.
    LicenseTest::with(())
        .given(history)
        .when(record("a2", AnomalyKind::LicenseHopping, true, 65))
        .then_expect_events(vec![detected("a2", AnomalyKind::LicenseHopping, 65), suspended(65)]);
}

fn report(n: u8, window: i64, at: i64) -> LicenseCommand {
    LicenseCommand::ReportCallRate {
        machine: machine(n),
        calls: 3,
        allowance: 2,
        window_started_at: t(window),
        window_secs: 60,
        windows: 5,
        at: t(at),
    }
}

#[test]
fn a_call_rate_is_reported_once_per_device_and_window() {
    let exceeded = LicenseCallRateExceeded {
        machine: machine(1),
        calls: 3,
        allowance: 2,
        window_started_at: t(10),
        window_secs: 60,
        windows: 5,
        observed_at: t(10),
    };
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1)])
        .when(report(1, 10, 10))
        .then_expect_events(vec![exceeded.clone()]);
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1), exceeded.clone()])
        .when(report(1, 10, 10))
        .then_expect_events(vec![]);
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1), exceeded])
        .when(report(1, 11, 11))
        .then_expect_events(vec![LicenseCallRateExceeded {
            machine: machine(1),
            calls: 3,
            allowance: 2,
            window_started_at: t(11),
            window_secs: 60,
            windows: 5,
            observed_at: t(11),
        }]);
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1)])
        .when(report(2, 10, 10))
        .then_expect_error(LicenseError::MachineNotActivated);
}

#[test]
fn a_call_rate_event_written_before_runs_were_counted_names_one_window() {
    let event = LicenseCallRateExceeded {
        machine: machine(1),
        calls: 3,
        allowance: 2,
        window_started_at: t(10),
        window_secs: 60,
        windows: 1,
        observed_at: t(10),
    };
    let mut json = serde_json::to_value(&event).unwrap();
    let fields = json.as_object_mut().unwrap().values_mut().find_map(|v| v.as_object_mut()).unwrap();
    assert!(fields.remove("windows").is_some());
    assert_eq!(serde_json::from_value::<LicenseEvent>(json).unwrap(), event);
}

#[test]
fn open_anomalies_survive_a_json_round_trip() {
    let license = state(vec![generated(), activated(1, 1), detected("a1", AnomalyKind::LicenseHopping, 5)]);
    let json = serde_json::to_string(&license).unwrap();
    assert_eq!(serde_json::from_str::<License>(&json).unwrap(), license);
    assert_eq!(license.open_anomalies.len(), 1);
}

// --- devices ----------------------------------------------------------------

fn blocked(n: u8, released_seat: bool, at: i64) -> LicenseEvent {
    DeviceBlocked { machine: machine(n), released_seat, blocked_at: t(at) }
}

#[test]
fn activation_records_what_the_device_reported() {
    let details = DeviceDetails {
        app_version: Some("2.1.0".into()),
        ip: Some(crate::ClientAddress::from_text("203.0.113.7")),
        user_agent: Some("app/2.1".into()),
    };
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::ActivateLicense {
            machine: machine(1),
            machine_name: name("prod-01"),
            details: details.clone(),
            device_number: Some(7),
            at: t(1),
        })
        .then_expect_events(vec![LicenseActivated {
            machine: machine(1),
            machine_name: name("prod-01"),
            details,
            device_number: Some(7),
            activated_at: t(1),
        }]);
}

#[test]
fn blocking_a_device_that_holds_a_seat_releases_it() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1)])
        .when(LicenseCommand::BlockDevice { machine: machine(1), at: t(2) })
        .then_expect_events(vec![blocked(1, true, 2)]);
    let license = state(vec![generated(), activated(1, 1), blocked(1, true, 2)]);
    assert!(license.devices.is_empty());
    assert_eq!(license.status, LicenseStatus::Generated);
    assert_eq!(license.past_devices.len(), 1);
    assert_eq!(license.past_devices[0].released_at, Some(t(2)));
    assert!(license.is_blocked(&machine(1)));
}

#[test]
fn blocking_a_past_device_only_blocks_it() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1), LicenseDeactivated { machine: machine(1), deactivated_at: t(2) }])
        .when(LicenseCommand::BlockDevice { machine: machine(1), at: t(3) })
        .then_expect_events(vec![blocked(1, false, 3)]);
}

#[test]
fn blocking_twice_records_nothing() {
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1), blocked(1, true, 2)])
        .when(LicenseCommand::BlockDevice { machine: machine(1), at: t(3) })
        .then_expect_events(vec![]);
}

#[test]
fn a_blocked_device_can_not_activate_validate_heartbeat_or_deactivate() {
    let given = vec![generated_with_seats(2), activated(1, 1), blocked(1, true, 2)];
    LicenseTest::with(()).given(given.clone()).when(activate(1, 3)).then_expect_error(LicenseError::DeviceBlocked);
    LicenseTest::with(())
        .given(given.clone())
        .when(LicenseCommand::RecordHeartbeat { machine: machine(1), min_interval: Duration::zero(), at: t(3) })
        .then_expect_error(LicenseError::DeviceBlocked);
    LicenseTest::with(())
        .given(given.clone())
        .when(LicenseCommand::DeactivateLicense { machine: machine(1), enforce_transfer_limit: true, at: t(3) })
        .then_expect_error(LicenseError::DeviceBlocked);
    assert_eq!(state(given.clone()).validate(&machine(1), t(3)).err(), Some(LicenseError::DeviceBlocked));
    // Another machine is not affected.
    LicenseTest::with(()).given(given).when(activate(2, 3)).then_expect_events(vec![activated(2, 3)]);
}

#[test]
fn an_unblocked_device_activates_again_under_its_old_id() {
    let unblocked = DeviceUnblocked { machine: machine(1), unblocked_at: t(3) };
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1), blocked(1, true, 2)])
        .when(LicenseCommand::UnblockDevice { machine: machine(1), at: t(3) })
        .then_expect_events(vec![unblocked.clone()]);
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 1)])
        .when(LicenseCommand::UnblockDevice { machine: machine(1), at: t(3) })
        .then_expect_events(vec![]);
    let license = state(vec![generated(), activated(1, 1), blocked(1, true, 2), unblocked, activated(1, 4)]);
    let id = license.devices[0].id("lic-1");
    assert_eq!(license.device_by_id(&id).map(|(d, active)| (d.machine.clone(), active)), Some((machine(1), true)));
    assert!(license.past_devices.is_empty(), "the device moved back from the past devices");
}

#[test]
fn deactivating_every_device_releases_each_with_its_own_event() {
    LicenseTest::with(())
        .given(vec![generated_with_seats(3), activated(1, 1), activated(2, 2)])
        .when(LicenseCommand::DeactivateAllDevices { at: t(3) })
        .then_expect_events(vec![
            LicenseDeactivated { machine: machine(1), deactivated_at: t(3) },
            LicenseDeactivated { machine: machine(2), deactivated_at: t(3) },
        ]);
    LicenseTest::with(())
        .given(vec![generated()])
        .when(LicenseCommand::DeactivateAllDevices { at: t(3) })
        .then_expect_events(vec![]);
}

#[test]
fn a_license_keeps_its_latest_past_devices() {
    let mut events = vec![generated()];
    for n in 0..(MAX_PAST_DEVICES as u8 + 5) {
        events.push(activated(n, i64::from(n) * 2));
        events.push(LicenseDeactivated { machine: machine(n), deactivated_at: t(i64::from(n) * 2 + 1) });
    }
    let license = state(events);
    assert_eq!(license.past_devices.len(), MAX_PAST_DEVICES);
    assert_eq!(license.past_devices.last().map(|d| d.machine.clone()), Some(machine(MAX_PAST_DEVICES as u8 + 4)));
}

#[test]
fn an_activation_written_before_devices_had_details_still_reads() {
    let old = r#"{"LicenseActivated":{"machine":"0101010101010101010101010101010101010101010101010101010101010101","machine_name":"prod-01","activated_at":"2026-04-22T10:01:00Z"}}"#;
    let event: LicenseEvent = serde_json::from_str(old).unwrap();
    assert_eq!(event, activated(1, 1));
    // And it is written back without the new field, so its hash holds.
    assert_eq!(serde_json::to_string(&event).unwrap(), old);
}

// --- policies ---------------------------------------------------------------

fn generated_with_policy(seats: u32, policy: Policy) -> LicenseEvent {
    let mut event = generated_with_seats(seats);
    if let LicenseGenerated { policy: generated, .. } = &mut event {
        *generated = policy;
    }
    event
}

fn heartbeats(secs: u32, resurrection: crate::Resurrection) -> Policy {
    Policy { heartbeat_secs: Some(secs), resurrection, ..Policy::default() }
}

fn culled(n: u8, last_seen: i64, at: i64) -> LicenseEvent {
    DeviceCulled { machine: machine(n), last_seen_at: t(last_seen), culled_at: t(at) }
}

#[test]
fn devices_silent_past_their_heartbeat_duration_are_culled_once() {
    // Ten minutes of heartbeat: dead after twelve and a half.
    let given =
        vec![generated_with_policy(3, heartbeats(600, crate::Resurrection::None)), activated(1, 0), activated(2, 10)];
    LicenseTest::with(())
        .given(given.clone())
        .when(LicenseCommand::CullDeadDevices { at: t(12) })
        .then_expect_events(vec![]);
    LicenseTest::with(())
        .given(given.clone())
        .when(LicenseCommand::CullDeadDevices { at: t(13) })
        .then_expect_events(vec![culled(1, 0, 13)]);
    let mut after = given.clone();
    after.push(culled(1, 0, 13));
    LicenseTest::with(())
        .given(after.clone())
        .when(LicenseCommand::CullDeadDevices { at: t(14) })
        .then_expect_events(vec![]);
    let license = state(after);
    assert_eq!(license.devices.len(), 1);
    assert!(license.past_devices[0].culled);
    assert_eq!(license.validate(&machine(1), t(14)).err(), Some(LicenseError::HeartbeatDead));
    assert_eq!(license.next_death(), Some(t(10) + Duration::seconds(750)));
    // Without a heartbeat policy nothing dies.
    LicenseTest::with(())
        .given(vec![generated_with_seats(2), activated(1, 0)])
        .when(LicenseCommand::CullDeadDevices { at: t(100_000) })
        .then_expect_events(vec![]);
}

#[test]
fn a_dead_device_is_refused_before_the_sweep_and_activating_again_revives_it() {
    let given = vec![generated_with_policy(1, heartbeats(60, crate::Resurrection::None)), activated(1, 0)];
    let license = state(given.clone());
    assert!(license.validate(&machine(1), t(1)).is_ok());
    assert_eq!(license.validate(&machine(1), t(2)).err(), Some(LicenseError::HeartbeatDead));
    LicenseTest::with(())
        .given(given.clone())
        .when(activate(1, 2))
        .then_expect_events(vec![HeartbeatRecorded { machine: machine(1), recorded_at: t(2) }]);
    // A culled device activates again like any other, into a free seat.
    let mut swept = given;
    swept.push(culled(1, 0, 2));
    LicenseTest::with(()).given(swept.clone()).when(activate(1, 3)).then_expect_events(vec![activated(1, 3)]);
    swept.push(activated(2, 3));
    LicenseTest::with(()).given(swept).when(activate(1, 4)).then_expect_error(LicenseError::BoundToAnotherMachine);
}

#[test]
fn revival_is_refused_unless_the_policy_revives() {
    let revive =
        |at| LicenseCommand::ReviveDevice { machine: machine(1), details: DeviceDetails::default(), at: t(at) };
    let dead =
        vec![generated_with_policy(1, heartbeats(60, crate::Resurrection::None)), activated(1, 0), culled(1, 0, 2)];
    LicenseTest::with(()).given(dead).when(revive(3)).then_expect_error(LicenseError::HeartbeatDead);
    let dead =
        vec![generated_with_policy(1, heartbeats(60, crate::Resurrection::Revive)), activated(1, 0), culled(1, 0, 2)];
    let revived = LicenseActivated {
        machine: machine(1),
        machine_name: name("prod-01"),
        details: DeviceDetails::default(),
        device_number: None,
        activated_at: t(3),
    };
    LicenseTest::with(()).given(dead.clone()).when(revive(3)).then_expect_events(vec![revived]);
    let mut taken = dead;
    taken.push(activated(2, 3));
    LicenseTest::with(()).given(taken).when(revive(4)).then_expect_error(LicenseError::BoundToAnotherMachine);
}

#[test]
fn a_client_may_deactivate_only_as_often_as_the_transfer_limit_allows() {
    let limit =
        Policy { transfer_limit: Some(crate::TransferLimit { count: 2, period_secs: 3600 }), ..Policy::default() };
    let deactivate = |n, at, enforce| LicenseCommand::DeactivateLicense {
        machine: machine(n),
        enforce_transfer_limit: enforce,
        at: t(at),
    };
    let deactivated = |n: u8, at| LicenseDeactivated { machine: machine(n), deactivated_at: t(at) };
    let given = vec![
        generated_with_policy(1, limit),
        activated(1, 0),
        deactivated(1, 1),
        activated(2, 2),
        deactivated(2, 3),
        activated(3, 4),
    ];
    LicenseTest::with(())
        .given(given.clone())
        .when(deactivate(3, 5, true))
        .then_expect_error(LicenseError::TransferLimitReached { count: 2, period_secs: 3600 });
    // An administrator is not refused.
    LicenseTest::with(())
        .given(given.clone())
        .when(deactivate(3, 5, false))
        .then_expect_events(vec![deactivated(3, 5)]);
    // An hour after the first, one transfer is free again.
    LicenseTest::with(()).given(given).when(deactivate(3, 61, true)).then_expect_events(vec![deactivated(3, 61)]);
}

#[test]
fn overage_admits_devices_beyond_the_seats() {
    let policy = Policy { overage: crate::Overage::Half, ..Policy::default() };
    let given = vec![generated_with_policy(2, policy), activated(1, 0), activated(2, 1)];
    LicenseTest::with(()).given(given.clone()).when(activate(3, 2)).then_expect_events(vec![activated(3, 2)]);
    let mut full = given;
    full.push(activated(3, 2));
    LicenseTest::with(())
        .given(full.clone())
        .when(activate(4, 3))
        .then_expect_error(LicenseError::SeatLimitReached { max: 3 });
    // An edit keeps the three devices the overage admits.
    LicenseTest::with(())
        .given(full)
        .when(LicenseCommand::EditLicense {
            expires_at: None,
            max_activations: None,
            max_connections: Some(None),
            policy: Some(Policy::default()),
            at: t(4),
            customer_id: None,
        })
        .then_expect_error(LicenseError::SeatsBelowActiveMachines { requested: 2, active: 3 });
}

#[test]
fn a_license_generated_before_policies_reads_with_the_default_policy() {
    let old = serde_json::to_value(generated()).unwrap();
    assert!(old["LicenseGenerated"].get("policy").is_none(), "a default policy is not written");
    let read: LicenseEvent = serde_json::from_value(old).unwrap();
    assert_eq!(read, generated());
}

// --- validity ---------------------------------------------------------------

fn generate_with(expires_at: Option<DateTime<Utc>>, after_activation: Option<i64>) -> LicenseCommand {
    LicenseCommand::GenerateLicense {
        license_id: LicenseId::trusted("lic-1"),
        tenant_id: TenantId::trusted("tenant-1"),
        owner_id: OwnerId::trusted("user-1"),
        license_key: key(),
        license_type: LicenseType::Trial,
        max_activations: Seats::ONE,
        max_connections: None,
        expires_at,
        expires_after_activation_secs: after_activation,
        product_id: None,
        features: Vec::new(),
        number: None,
        policy: Policy::default(),
        at: t(0),
        customer_id: None,
    }
}

fn fold_command(license: &mut License, command: LicenseCommand) {
    for event in license.decide(command).unwrap() {
        license.apply(event);
    }
}

#[test]
fn a_trial_counted_from_activation_starts_at_the_first_one() {
    let mut license = License::default();
    fold_command(&mut license, generate_with(None, Some(600)));
    assert_eq!(license.expires_at, None);
    assert!(!license.is_expired_at(t(100_000)), "nothing runs before the first activation");
    fold_command(&mut license, activate(1, 30));
    assert_eq!(license.expires_at, Some(t(40)));
    assert_eq!(license.validate(&machine(1), t(39)).map(|_| ()), Ok(()));
    assert_eq!(license.validate(&machine(1), t(40)).err(), Some(LicenseError::Expired));
    // Deactivating and activating again does not restart it.
    fold_command(
        &mut license,
        LicenseCommand::DeactivateLicense { machine: machine(1), enforce_transfer_limit: true, at: t(35) },
    );
    fold_command(&mut license, activate(1, 36));
    assert_eq!(license.expires_at, Some(t(40)));
}

#[test]
fn a_perpetual_license_never_expires_until_an_edit_gives_it_an_expiry() {
    let mut license = License::default();
    fold_command(&mut license, generate_with(None, None));
    assert!(!license.is_expired_at(t(60 * 24 * 365 * 50)));
    assert_eq!(license.decide(LicenseCommand::ExpireLicense { at: t(1_000_000) }), Ok(vec![]));
    let edit = |expires_at| LicenseCommand::EditLicense {
        expires_at,
        max_activations: Some(Seats::new(2).unwrap()),
        max_connections: None,
        policy: None,
        at: t(1),
        customer_id: None,
    };
    fold_command(&mut license, edit(None));
    assert_eq!((license.expires_at, license.max_activations.get()), (None, 2), "still perpetual");
    fold_command(&mut license, edit(Some(t(100))));
    assert_eq!(license.expires_at, Some(t(100)));
    assert!(license.is_expired_at(t(100)));
}

#[test]
fn a_validity_that_is_not_positive_is_refused() {
    assert_eq!(License::default().decide(generate_with(None, Some(0))), Err(LicenseError::ExpiryBeforeCreation));
}

#[test]
fn a_device_that_comes_back_keeps_its_number() {
    let numbered = |n: u8, number: i64, at: i64| LicenseActivated {
        machine: machine(n),
        machine_name: name("prod-01"),
        details: DeviceDetails::default(),
        device_number: Some(number),
        activated_at: t(at),
    };
    let given = vec![generated(), numbered(1, 41, 0), LicenseDeactivated { machine: machine(1), deactivated_at: t(1) }];
    assert!(state(given.clone()).knows_machine(&machine(1)));
    let again = LicenseCommand::ActivateLicense {
        machine: machine(1),
        machine_name: name("prod-01"),
        details: DeviceDetails::default(),
        device_number: Some(99),
        at: t(2),
    };
    LicenseTest::with(()).given(given).when(again).then_expect_events(vec![numbered(1, 41, 2)]);
}

#[test]
fn entitlements_are_the_product_and_the_features_of_license_and_product() {
    let mut license = state(vec![generated()]);
    license.product_id = Some(ProductId::trusted("p-1"));
    license.features = thin_vec::thin_vec!["beta".into()];
    let product_features = ["export".to_owned()];
    let need = |features: &[&str]| features.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    assert_eq!(license.check_entitlements(Some("p-1"), &need(&["beta", "export"]), &product_features), Ok(()));
    assert_eq!(license.check_entitlements(None, &[], &[]), Ok(()));
    assert_eq!(license.check_entitlements(Some("p-2"), &[], &product_features), Err(LicenseError::ProductMismatch));
    assert_eq!(
        license.check_entitlements(None, &need(&["export", "sync", "teams"]), &product_features),
        Err(LicenseError::FeatureMissing { missing: need(&["sync", "teams"]) })
    );
}

#[test]
fn a_checkout_of_a_usable_license_is_recorded_with_its_expiry() {
    let command = |machine| LicenseCommand::CheckOut { machine, ttl_secs: 3600, at: t(10) };
    let checked_out =
        |machine| LicenseEvent::LicenseCheckedOut { machine, ttl_secs: 3600, expires_at: t(70), checked_out_at: t(10) };
    LicenseTest::with(()).given(vec![generated()]).when(command(None)).then_expect_events(vec![checked_out(None)]);
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 5)])
        .when(command(Some(machine(1))))
        .then_expect_events(vec![checked_out(Some(machine(1)))]);
    // A machine file is only for a machine holding a seat.
    LicenseTest::with(())
        .given(vec![generated(), activated(1, 5)])
        .when(command(Some(machine(2))))
        .then_expect_error(LicenseError::MachineNotActivated);
    let license = state(vec![generated(), checked_out(None)]);
    assert_eq!(license.last_checked_out_at, Some(t(10)));
}

#[test]
fn a_suspended_license_is_not_checked_out() {
    let suspended = LicenseEvent::LicenseSuspended { reason: None, suspended_at: t(5) };
    LicenseTest::with(())
        .given(vec![generated(), suspended])
        .when(LicenseCommand::CheckOut { machine: None, ttl_secs: 3600, at: t(10) })
        .then_expect_error(LicenseError::Suspended);
}
