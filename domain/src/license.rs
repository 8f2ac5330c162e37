//! The `License` aggregate: state folded from events, and the rules that
//! decide which events a command may add.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use thin_vec::ThinVec;

use crate::device::{BlockedMachine, Device, MAX_PAST_DEVICES};
use crate::{
    AnomalyMark, CustomerId, LicenseCommand, LicenseError, LicenseEvent, LicenseId, LicenseKey, LicenseStatus,
    LicenseType, MachineHash, OpenAnomaly, OwnerId, Policy, ProductId, Seats, TenantId,
};

/// A license as its events left it. `Default` is the license before it was
/// generated: every command but generate is refused with `NotFound`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct License {
    pub id: LicenseId,
    pub tenant_id: TenantId,
    pub owner_id: OwnerId,
    pub license_key: Option<LicenseKey>,
    pub license_type: LicenseType,
    pub status: LicenseStatus,
    pub created_at: Option<DateTime<Utc>>,
    /// None: perpetual, or waiting for the first activation to start
    /// the validity below.
    pub expires_at: Option<DateTime<Utc>>,
    /// A validity that starts at the first activation (seed 002's trial),
    /// in seconds; cleared once that activation fixes `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after_activation_secs: Option<i64>,
    /// Its product; None for the tenant's default product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<ProductId>,
    /// Feature codes of its own, beside its product's.
    #[serde(default, skip_serializing_if = "ThinVec::is_empty")]
    pub features: ThinVec<String>,
    /// The customer it was sold to, if one is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
    /// Its per-tenant serial number, beside its UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    /// When the current binding began; cleared by revoke and by releasing
    /// the last machine.
    pub activated_at: Option<DateTime<Utc>>,
    pub max_activations: Seats,
    pub max_connections: Option<u32>,
    /// The devices holding seats now.
    pub devices: ThinVec<Device>,
    /// Devices that gave their seats up, newest last, at most
    /// [`MAX_PAST_DEVICES`]; a device activated again moves back.
    #[serde(default, skip_serializing_if = "ThinVec::is_empty")]
    pub past_devices: ThinVec<Device>,
    /// Machines an administrator blocked: they can't activate, validate
    /// or heartbeat this license until unblocked.
    #[serde(default, skip_serializing_if = "ThinVec::is_empty")]
    pub blocked: ThinVec<BlockedMachine>,
    #[serde(default, skip_serializing_if = "Policy::is_default")]
    pub policy: Policy,
    /// When its recent deactivations happened, oldest first: as many as
    /// the transfer limit counts, none without one.
    #[serde(default, skip_serializing_if = "ThinVec::is_empty")]
    pub transfers: ThinVec<DateTime<Utc>>,
    /// The status to return to on reinstatement.
    pub status_before_suspension: Option<LicenseStatus>,
    pub suspension_reason: Option<String>,
    /// Anomalies recorded and not yet resolved.
    #[serde(default, skip_serializing_if = "ThinVec::is_empty")]
    pub open_anomalies: ThinVec<OpenAnomaly>,
    /// The last recorded finding of each kind.
    #[serde(default, skip_serializing_if = "ThinVec::is_empty")]
    pub anomaly_marks: ThinVec<AnomalyMark>,
    /// When a detector last suspended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_suspended_at: Option<DateTime<Utc>>,
    /// Deleted (`LicenseDeleted`): it exists in the log and nowhere else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// When an offline file of it was last issued (`LicenseCheckedOut`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_out_at: Option<DateTime<Utc>>,
}

impl License {
    pub fn exists(&self) -> bool {
        self.license_key.is_some()
    }

    /// Gives back the spare room of its lists. A list that grew by
    /// pushes, or was read from JSON, has room for four or more: a
    /// license with one device would otherwise carry three devices' worth
    /// of empty space in every process's validation view.
    pub fn shrink_to_fit(&mut self) {
        self.features.shrink_to_fit();
        self.devices.shrink_to_fit();
        self.past_devices.shrink_to_fit();
        self.blocked.shrink_to_fit();
        self.transfers.shrink_to_fit();
        self.open_anomalies.shrink_to_fit();
        self.anomaly_marks.shrink_to_fit();
    }

    pub fn device(&self, machine: &MachineHash) -> Option<&Device> {
        self.devices.iter().find(|d| &d.machine == machine)
    }

    /// The device with this id, holding a seat or past, and whether it
    /// holds one.
    pub fn device_by_id(&self, device_id: &str) -> Option<(&Device, bool)> {
        let active = self.devices.iter().map(|d| (d, true));
        let past = self.past_devices.iter().map(|d| (d, false));
        active.chain(past).find(|(d, _)| d.id(&self.id) == device_id)
    }

    pub fn is_blocked(&self, machine: &MachineHash) -> bool {
        self.blocked.iter().any(|b| &b.machine == machine)
    }

    /// Whether the machine's seat was freed because its heartbeats stopped
    /// (and it has not activated since).
    fn was_culled(&self, machine: &MachineHash) -> bool {
        self.past_devices.iter().any(|d| &d.machine == machine && d.culled)
    }

    /// The caller's entitlement checks on a valid license: it is for
    /// `product_id` (None: any product), and carries every `required`
    /// feature, of its own or of its product (`product_features`).
    pub fn check_entitlements(
        &self,
        product_id: Option<&str>,
        required: &[String],
        product_features: &[String],
    ) -> Result<(), LicenseError> {
        if product_id.is_some_and(|wanted| self.product_id.as_deref() != Some(wanted)) {
            return Err(LicenseError::ProductMismatch);
        }
        let missing: Vec<String> = required
            .iter()
            .filter(|feature| !self.features.contains(feature) && !product_features.contains(feature))
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(LicenseError::FeatureMissing { missing })
        }
    }

    /// Whether the machine holds, or once held, a seat of this license
    /// (among its kept past devices): it has a device number already.
    pub fn knows_machine(&self, machine: &MachineHash) -> bool {
        self.device(machine).is_some() || self.past_devices.iter().any(|d| &d.machine == machine)
    }

    /// The number the machine had as a past device of this license.
    fn past_number(&self, machine: &MachineHash) -> Option<i64> {
        self.past_devices.iter().find(|d| &d.machine == machine).and_then(|d| d.number)
    }

    /// Devices the seats admit, overage included.
    pub fn allowed_devices(&self) -> u32 {
        self.policy.overage.allowed(self.max_activations.get())
    }

    /// When the first device holding a seat will be dead, if it keeps
    /// silent; None without a heartbeat policy or devices.
    pub fn next_death(&self) -> Option<DateTime<Utc>> {
        let after = self.policy.dead_after()?;
        self.devices.iter().map(|d| d.last_heartbeat_at + after).min()
    }

    /// A `LicenseExpired` event is in the log, even if a suspension hides
    /// it from the status.
    pub fn expiry_recorded(&self) -> bool {
        self.status == LicenseStatus::Expired || self.status_before_suspension == Some(LicenseStatus::Expired)
    }

    /// Past its expiry at `now`, whether or not a `LicenseExpired` event has
    /// been written yet: expiry must never wait for a scheduler.
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expiry_recorded() || self.expires_at.is_some_and(|expiry| now >= expiry)
    }

    /// The status a reader should see at `now`: a Generated or Activated
    /// license past its expiry reads as Expired before the event lands.
    pub fn status_at(&self, now: DateTime<Utc>) -> LicenseStatus {
        match self.status {
            LicenseStatus::Generated | LicenseStatus::Activated if self.is_expired_at(now) => LicenseStatus::Expired,
            status => status,
        }
    }

    /// The expiry a renewal gives: the current expiry moved on by the
    /// license's term (its expiry less its creation), so a renewal of an
    /// expired license counts from when it expired. `None` for a license
    /// that never expires.
    pub fn renewed_expiry(&self) -> Option<DateTime<Utc>> {
        let (expiry, created) = (self.expires_at?, self.created_at?);
        Some(expiry + (expiry - created))
    }

    /// Seed 000's validation: may `machine` run under this license at `now`?
    /// Checked in the order a support engineer would explain it.
    pub fn validate(&self, machine: &MachineHash, now: DateTime<Utc>) -> Result<&Device, LicenseError> {
        if !self.exists() {
            return Err(LicenseError::NotFound);
        }
        self.ensure_usable(now)?;
        if self.is_blocked(machine) {
            return Err(LicenseError::DeviceBlocked);
        }
        match self.device(machine) {
            // Dead before the sweep has freed its seat: death must not
            // wait for a scheduler.
            Some(device) if self.policy.is_dead(device.last_heartbeat_at, now) => Err(LicenseError::HeartbeatDead),
            Some(device) => Ok(device),
            None if self.was_culled(machine) => Err(LicenseError::HeartbeatDead),
            None if self.devices.is_empty() => Err(LicenseError::NotActivated),
            None => Err(LicenseError::MachineNotActivated),
        }
    }

    fn ensure_exists(&self) -> Result<(), LicenseError> {
        if self.exists() {
            Ok(())
        } else {
            Err(LicenseError::NotFound)
        }
    }

    /// Refuses a suspended, revoked or expired license: what a validation
    /// that names no machine checks.
    pub fn ensure_usable(&self, now: DateTime<Utc>) -> Result<(), LicenseError> {
        match self.status {
            LicenseStatus::Suspended => Err(LicenseError::Suspended),
            LicenseStatus::Revoked => Err(LicenseError::Revoked),
            _ if self.is_expired_at(now) => Err(LicenseError::Expired),
            _ => Ok(()),
        }
    }

    /// The status a license returns to when nothing overrides it.
    fn binding_status(&self) -> LicenseStatus {
        if self.devices.is_empty() {
            LicenseStatus::Generated
        } else {
            LicenseStatus::Activated
        }
    }
}

impl Aggregate for License {
    const TYPE: &'static str = "License";
    type Command = LicenseCommand;
    type Event = LicenseEvent;
    type Error = LicenseError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        // All checks happen in `decide` before the first write, so a refused
        // command leaves the aggregate untouched.
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use LicenseEvent::*;
        match event {
            LicenseGenerated {
                license_id,
                tenant_id,
                owner_id,
                license_key,
                license_type,
                max_activations,
                max_connections,
                created_at,
                expires_at,
                expires_after_activation_secs,
                product_id,
                features,
                customer_id,
                number,
                policy,
            } => {
                *self = License {
                    id: license_id,
                    tenant_id,
                    owner_id,
                    license_key: Some(license_key),
                    license_type,
                    status: LicenseStatus::Generated,
                    created_at: Some(created_at),
                    expires_at,
                    expires_after_activation_secs,
                    product_id,
                    features: features.into(),
                    customer_id,
                    number,
                    max_activations,
                    max_connections,
                    policy,
                    ..License::default()
                };
            }
            LicenseActivated { machine, machine_name, details, device_number, activated_at } => {
                self.past_devices.retain(|d| d.machine != machine);
                self.devices.push(Device {
                    machine,
                    machine_name,
                    activated_at,
                    last_heartbeat_at: activated_at,
                    call_rate_reported_for: None,
                    details,
                    released_at: None,
                    number: device_number,
                    culled: false,
                });
                self.activated_at.get_or_insert(activated_at);
                self.status = LicenseStatus::Activated;
                // The first activation starts a validity counted from it.
                if let Some(secs) = self.expires_after_activation_secs.take() {
                    self.expires_at = Some(activated_at + chrono::Duration::seconds(secs));
                }
            }
            LicenseDeactivated { machine, deactivated_at } => {
                self.release(&machine, deactivated_at);
                self.settle_binding_status();
                if let Some(limit) = self.policy.transfer_limit {
                    self.transfers.push(deactivated_at);
                    let excess = self.transfers.len().saturating_sub(limit.count as usize);
                    self.transfers.drain(..excess);
                }
            }
            DeviceCulled { machine, culled_at, .. } => {
                self.release(&machine, culled_at);
                if let Some(past) = self.past_devices.iter_mut().find(|d| d.machine == machine) {
                    past.culled = true;
                }
                self.settle_binding_status();
            }
            LicenseRevoked { released_machines, revoked_at } => {
                for machine in &released_machines {
                    self.release(machine, revoked_at);
                }
                self.devices.clear();
                self.activated_at = None;
                self.status = LicenseStatus::Generated;
            }
            DeviceBlocked { machine, released_seat, blocked_at } => {
                if released_seat {
                    self.release(&machine, blocked_at);
                    self.settle_binding_status();
                }
                self.blocked.push(BlockedMachine { machine, blocked_at });
            }
            DeviceUnblocked { machine, .. } => {
                self.blocked.retain(|b| b.machine != machine);
            }
            LicenseSuspended { reason, suspended_at } => {
                if reason.as_deref().is_some_and(|reason| reason.starts_with(crate::AUTO_SUSPEND_REASON)) {
                    self.auto_suspended_at = Some(suspended_at);
                }
                self.status_before_suspension = Some(self.status);
                self.suspension_reason = reason;
                self.status = LicenseStatus::Suspended;
            }
            LicenseReinstated { .. } => {
                self.status = match self.status_before_suspension.take() {
                    Some(LicenseStatus::Expired) => LicenseStatus::Expired,
                    _ => self.binding_status(),
                };
                self.suspension_reason = None;
            }
            LicenseExpired { .. } => {
                if self.status == LicenseStatus::Suspended {
                    self.status_before_suspension = Some(LicenseStatus::Expired);
                } else {
                    self.status = LicenseStatus::Expired;
                }
            }
            HeartbeatRecorded { machine, recorded_at } => {
                if let Some(device) = self.devices.iter_mut().find(|d| d.machine == machine) {
                    device.last_heartbeat_at = recorded_at;
                }
            }
            LicenseCallRateExceeded { machine, window_started_at, .. } => {
                if let Some(device) = self.devices.iter_mut().find(|d| d.machine == machine) {
                    device.call_rate_reported_for = Some(window_started_at);
                }
            }
            AnomalyDetected { anomaly_id, kind, trigger_sequence, detected_at, .. } => {
                self.open_anomalies.push(OpenAnomaly { id: anomaly_id, kind, detected_at });
                self.anomaly_marks.retain(|mark| mark.kind != kind);
                self.anomaly_marks.push(AnomalyMark { kind, trigger_sequence });
            }
            AnomalyResolved { anomaly_id, .. } => {
                self.open_anomalies.retain(|open| open.id != anomaly_id);
            }
            LicenseDeleted { .. } => self.deleted = true,
            LicenseCheckedOut { checked_out_at, .. } => self.last_checked_out_at = Some(checked_out_at),
            LicenseEdited { expires_at, max_activations, max_connections, policy, customer_id, edited_at } => {
                self.expires_at = expires_at;
                self.customer_id = customer_id;
                if expires_at.is_some() {
                    // A fixed expiry replaces one still waiting for an
                    // activation.
                    self.expires_after_activation_secs = None;
                }
                self.max_activations = max_activations;
                self.max_connections = max_connections;
                let kept = policy.transfer_limit.map_or(0, |limit| limit.count as usize);
                let excess = self.transfers.len().saturating_sub(kept);
                self.transfers.drain(..excess);
                self.policy = policy;
                // Moving the expiry into the future renews an expired license.
                if expires_at.is_none_or(|expiry| expiry > edited_at) {
                    if self.status == LicenseStatus::Expired {
                        self.status = self.binding_status();
                    }
                    if self.status_before_suspension == Some(LicenseStatus::Expired) {
                        self.status_before_suspension = Some(self.binding_status());
                    }
                }
            }
        }
    }
}

impl License {
    /// Refuses an activation when the seats (with their overage) are full.
    fn ensure_seat_free(&self) -> Result<(), LicenseError> {
        let allowed = self.allowed_devices();
        if self.devices.len() as u32 >= allowed {
            return Err(if allowed == 1 {
                LicenseError::BoundToAnotherMachine
            } else {
                LicenseError::SeatLimitReached { max: allowed }
            });
        }
        Ok(())
    }

    /// A device holding a seat called activate or revive: nothing to
    /// record, unless it was dead and not yet swept, when the call is its
    /// heartbeat.
    fn revived_in_place(&self, device: &Device, at: DateTime<Utc>) -> Vec<LicenseEvent> {
        if self.policy.is_dead(device.last_heartbeat_at, at) {
            vec![LicenseEvent::HeartbeatRecorded { machine: device.machine.clone(), recorded_at: at }]
        } else {
            vec![]
        }
    }

    /// Refuses a client's deactivation past the transfer limit.
    fn ensure_transfer_allowed(&self, at: DateTime<Utc>) -> Result<(), LicenseError> {
        let Some(limit) = self.policy.transfer_limit else { return Ok(()) };
        let since = at - chrono::Duration::seconds(i64::from(limit.period_secs));
        let recent = self.transfers.iter().filter(|t| **t > since).count();
        if recent >= limit.count as usize {
            return Err(LicenseError::TransferLimitReached { count: limit.count, period_secs: limit.period_secs });
        }
        Ok(())
    }

    /// Moves the machine's device from the seats to the past devices.
    fn release(&mut self, machine: &MachineHash, at: DateTime<Utc>) {
        let Some(index) = self.devices.iter().position(|d| &d.machine == machine) else { return };
        let mut device = self.devices.remove(index);
        device.released_at = Some(at);
        device.call_rate_reported_for = None;
        device.culled = false;
        self.past_devices.retain(|d| &d.machine != machine);
        self.past_devices.push(device);
        if self.past_devices.len() > MAX_PAST_DEVICES {
            self.past_devices.remove(0);
        }
        if self.devices.is_empty() {
            self.activated_at = None;
        }
    }

    /// After machines come or go, Generated/Activated follow the bindings;
    /// other statuses (and the status under a suspension) are left alone.
    fn settle_binding_status(&mut self) {
        let binding = self.binding_status();
        match self.status {
            LicenseStatus::Generated | LicenseStatus::Activated => self.status = binding,
            LicenseStatus::Suspended
                if matches!(
                    self.status_before_suspension,
                    Some(LicenseStatus::Generated | LicenseStatus::Activated)
                ) =>
            {
                self.status_before_suspension = Some(binding);
            }
            _ => {}
        }
    }
}

mod decide;
#[cfg(test)]
mod tests;
