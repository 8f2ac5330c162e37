//! The rules that decide which events a command adds to a license: one
//! function per command, and `decide` to dispatch. Each returns the events
//! (none when the command changes nothing) or the refusal.

use chrono::{DateTime, Duration, Utc};

use super::License;
use crate::{
    AnomalyEvidence, AnomalyKind, AutoSuspend, CustomerId, DeviceDetails, LicenseCommand, LicenseError, LicenseEvent,
    LicenseStatus, MachineHash, MachineName, Policy, Seats, AUTO_SUSPEND_REASON,
};

type Decision = Result<Vec<LicenseEvent>, LicenseError>;

impl License {
    pub(super) fn decide(&self, command: LicenseCommand) -> Decision {
        use LicenseCommand::*;

        if !matches!(command, GenerateLicense { .. }) {
            self.ensure_exists()?;
            if self.deleted {
                // A deleted license is unknown to every caller.
                return Err(LicenseError::NotFound);
            }
        }
        match command {
            GenerateLicense {
                license_id,
                tenant_id,
                owner_id,
                license_key,
                license_type,
                max_activations,
                max_connections,
                expires_at,
                expires_after_activation_secs,
                product_id,
                features,
                customer_id,
                number,
                policy,
                at,
            } => self.generate(LicenseEvent::LicenseGenerated {
                license_id,
                tenant_id,
                owner_id,
                license_key,
                license_type,
                max_activations,
                max_connections,
                created_at: at,
                expires_at,
                expires_after_activation_secs,
                product_id,
                features,
                customer_id,
                number,
                policy,
            }),
            ActivateLicense { machine, machine_name, details, device_number, at } => {
                self.activate(machine, machine_name, details, device_number, at)
            }
            ReviveDevice { machine, details, at } => self.revive(machine, details, at),
            DeactivateLicense { machine, enforce_transfer_limit, at } => {
                self.deactivate(machine, enforce_transfer_limit, at)
            }
            CullDeadDevices { at } => Ok(self.cull_dead_devices(at)),
            DeactivateAllDevices { at } => Ok(self.deactivate_all(at)),
            BlockDevice { machine, at } => Ok(self.block_device(machine, at)),
            UnblockDevice { machine, at } => Ok(self.unblock_device(machine, at)),
            RevokeLicense { at } => self.revoke(at),
            SuspendLicense { reason, at } => Ok(self.suspend(reason, at)),
            ReinstateLicense { at } => self.reinstate(at),
            ExpireLicense { at } => self.expire(at),
            RecordHeartbeat { machine, min_interval, at } => self.record_heartbeat(machine, min_interval, at),
            EditLicense { expires_at, max_activations, max_connections, policy, customer_id, at } => {
                self.edit(Edit { expires_at, max_activations, max_connections, policy, customer_id }, at)
            }
            ReportCallRate { machine, calls, allowance, window_started_at, window_secs, windows, at } => {
                let device = self.device(&machine).ok_or(LicenseError::MachineNotActivated)?;
                if device.call_rate_reported_for.is_some_and(|reported| reported >= window_started_at) {
                    return Ok(vec![]);
                }
                Ok(vec![LicenseEvent::LicenseCallRateExceeded {
                    machine,
                    calls,
                    allowance,
                    window_started_at,
                    window_secs,
                    windows,
                    observed_at: at,
                }])
            }
            RecordAnomaly { anomaly_id, kind, trigger_sequence, evidence, suspend, at } => {
                Ok(self.record_anomaly(anomaly_id, kind, trigger_sequence, evidence, suspend, at))
            }
            ResolveAnomaly { anomaly_id, note, at } => self.resolve_anomaly(anomaly_id, note, at),
            DeleteLicense { at } => Ok(vec![LicenseEvent::LicenseDeleted { deleted_at: at }]),
            CheckOut { machine, ttl_secs, at } => self.check_out(machine, ttl_secs, at),
        }
    }

    /// `generated`: the `LicenseGenerated` the command asks for.
    fn generate(&self, generated: LicenseEvent) -> Decision {
        if self.exists() {
            return Err(LicenseError::AlreadyExists);
        }
        let LicenseEvent::LicenseGenerated { created_at, expires_at, expires_after_activation_secs, .. } = &generated
        else {
            unreachable!("generate is given the event it decides on");
        };
        if expires_at.is_some_and(|expiry| expiry <= *created_at)
            || expires_after_activation_secs.is_some_and(|s| s <= 0)
        {
            return Err(LicenseError::ExpiryBeforeCreation);
        }
        Ok(vec![generated])
    }

    fn activate(
        &self,
        machine: MachineHash,
        machine_name: MachineName,
        details: DeviceDetails,
        device_number: Option<i64>,
        at: DateTime<Utc>,
    ) -> Decision {
        self.ensure_usable(at)?;
        if self.is_blocked(&machine) {
            return Err(LicenseError::DeviceBlocked);
        }
        if let Some(device) = self.device(&machine) {
            // Re-activating the bound machine is how a client recovers
            // from a lost response: answer as before. A dead one not yet
            // swept is alive again.
            return Ok(self.revived_in_place(device, at));
        }
        self.ensure_seat_free()?;
        let device_number = self.past_number(&machine).or(device_number);
        Ok(vec![LicenseEvent::LicenseActivated { machine, machine_name, details, device_number, activated_at: at }])
    }

    /// A dead device's call under a `revive` policy.
    fn revive(&self, machine: MachineHash, details: DeviceDetails, at: DateTime<Utc>) -> Decision {
        if self.policy.resurrection.is_none() {
            return Err(LicenseError::HeartbeatDead);
        }
        self.ensure_usable(at)?;
        if self.is_blocked(&machine) {
            return Err(LicenseError::DeviceBlocked);
        }
        if let Some(device) = self.device(&machine) {
            return Ok(self.revived_in_place(device, at));
        }
        let culled = self.past_devices.iter().find(|d| d.machine == machine && d.culled);
        let Some(machine_name) = culled.map(|d| d.machine_name.clone()) else {
            return Err(self.validate(&machine, at).err().unwrap_or(LicenseError::MachineNotActivated));
        };
        self.ensure_seat_free()?;
        let device_number = self.past_number(&machine);
        Ok(vec![LicenseEvent::LicenseActivated { machine, machine_name, details, device_number, activated_at: at }])
    }

    fn deactivate(&self, machine: MachineHash, enforce_transfer_limit: bool, at: DateTime<Utc>) -> Decision {
        if self.device(&machine).is_none() {
            return Err(if self.is_blocked(&machine) {
                LicenseError::DeviceBlocked
            } else {
                LicenseError::MachineNotActivated
            });
        }
        if enforce_transfer_limit {
            self.ensure_transfer_allowed(at)?;
        }
        Ok(vec![LicenseEvent::LicenseDeactivated { machine, deactivated_at: at }])
    }

    fn check_out(&self, machine: Option<MachineHash>, ttl_secs: u32, at: DateTime<Utc>) -> Decision {
        self.ensure_usable(at)?;
        if let Some(machine) = &machine {
            if self.device(machine).is_none() {
                return Err(if self.is_blocked(machine) {
                    LicenseError::DeviceBlocked
                } else {
                    LicenseError::MachineNotActivated
                });
            }
        }
        let expires_at = at + chrono::Duration::seconds(ttl_secs.into());
        Ok(vec![LicenseEvent::LicenseCheckedOut { machine, ttl_secs, expires_at, checked_out_at: at }])
    }

    fn cull_dead_devices(&self, at: DateTime<Utc>) -> Vec<LicenseEvent> {
        self.devices
            .iter()
            .filter(|device| self.policy.is_dead(device.last_heartbeat_at, at))
            .map(|device| LicenseEvent::DeviceCulled {
                machine: device.machine.clone(),
                last_seen_at: device.last_heartbeat_at,
                culled_at: at,
            })
            .collect()
    }

    fn deactivate_all(&self, at: DateTime<Utc>) -> Vec<LicenseEvent> {
        self.devices
            .iter()
            .map(|device| LicenseEvent::LicenseDeactivated { machine: device.machine.clone(), deactivated_at: at })
            .collect()
    }

    fn block_device(&self, machine: MachineHash, at: DateTime<Utc>) -> Vec<LicenseEvent> {
        if self.is_blocked(&machine) {
            return vec![];
        }
        let released = self.device(&machine).is_some();
        vec![LicenseEvent::DeviceBlocked { machine, released_seat: released, blocked_at: at }]
    }

    fn unblock_device(&self, machine: MachineHash, at: DateTime<Utc>) -> Vec<LicenseEvent> {
        if !self.is_blocked(&machine) {
            return vec![];
        }
        vec![LicenseEvent::DeviceUnblocked { machine, unblocked_at: at }]
    }

    fn revoke(&self, at: DateTime<Utc>) -> Decision {
        // Revoking would clear a suspension or an expiry, so a suspended or
        // expired license can't be reset this way.
        self.ensure_usable(at)?;
        if self.devices.is_empty() && self.activated_at.is_none() {
            return Ok(vec![]);
        }
        let released_machines = self.devices.iter().map(|d| d.machine.clone()).collect();
        Ok(vec![LicenseEvent::LicenseRevoked { released_machines, revoked_at: at }])
    }

    fn suspend(&self, reason: Option<String>, at: DateTime<Utc>) -> Vec<LicenseEvent> {
        if self.status == LicenseStatus::Suspended {
            return vec![];
        }
        vec![LicenseEvent::LicenseSuspended { reason, suspended_at: at }]
    }

    fn reinstate(&self, at: DateTime<Utc>) -> Decision {
        if self.status != LicenseStatus::Suspended {
            return Err(LicenseError::NotSuspended);
        }
        Ok(vec![LicenseEvent::LicenseReinstated { reinstated_at: at }])
    }

    fn expire(&self, at: DateTime<Utc>) -> Decision {
        if self.expiry_recorded() {
            return Ok(vec![]);
        }
        // A perpetual license, or one whose validity has not started, has
        // nothing to expire.
        let Some(expiry) = self.expires_at else { return Ok(vec![]) };
        if at < expiry {
            return Err(LicenseError::NotYetExpired { expires_at: expiry.to_rfc3339() });
        }
        Ok(vec![LicenseEvent::LicenseExpired { expired_at: at }])
    }

    fn record_heartbeat(&self, machine: MachineHash, min_interval: Duration, at: DateTime<Utc>) -> Decision {
        let device = self.validate(&machine, at)?;
        if at < device.last_heartbeat_at + min_interval {
            return Ok(vec![]);
        }
        Ok(vec![LicenseEvent::HeartbeatRecorded { machine, recorded_at: at }])
    }

    fn edit(&self, edit: Edit, at: DateTime<Utc>) -> Decision {
        let current_expiry = self.expires_at;
        let expires_at = edit.expires_at.or(current_expiry);
        let max_activations = edit.max_activations.unwrap_or(self.max_activations);
        let max_connections = edit.max_connections.unwrap_or(self.max_connections);
        let policy = edit.policy.unwrap_or_else(|| self.policy.clone());
        let customer_id = edit.customer_id.unwrap_or_else(|| self.customer_id.clone());
        if let (Some(created), Some(expiry)) = (self.created_at, expires_at) {
            if expiry <= created {
                return Err(LicenseError::ExpiryBeforeCreation);
            }
        }
        let active = self.devices.len() as u32;
        if policy.overage.allowed(max_activations.get()) < active {
            return Err(LicenseError::SeatsBelowActiveMachines { requested: max_activations.get(), active });
        }
        let unchanged = expires_at == current_expiry
            && max_activations == self.max_activations
            && max_connections == self.max_connections
            && policy == self.policy
            && customer_id == self.customer_id;
        if unchanged {
            return Ok(vec![]);
        }
        Ok(vec![LicenseEvent::LicenseEdited {
            expires_at,
            max_activations,
            max_connections,
            policy,
            customer_id,
            edited_at: at,
        }])
    }

    fn record_anomaly(
        &self,
        anomaly_id: String,
        kind: AnomalyKind,
        trigger_sequence: i64,
        evidence: AnomalyEvidence,
        suspend: Option<AutoSuspend>,
        at: DateTime<Utc>,
    ) -> Vec<LicenseEvent> {
        let open = self.open_anomalies.iter().any(|open| open.kind == kind);
        let seen = self.anomaly_marks.iter().any(|m| m.kind == kind && m.trigger_sequence >= trigger_sequence);
        if open || seen {
            return vec![];
        }
        let mut events =
            vec![LicenseEvent::AnomalyDetected { anomaly_id, kind, trigger_sequence, evidence, detected_at: at }];
        let cooled = |rule: &AutoSuspend| {
            self.auto_suspended_at.is_none_or(|last| at - last >= Duration::seconds(i64::from(rule.cooldown_secs)))
        };
        if suspend.as_ref().is_some_and(cooled) && self.status != LicenseStatus::Suspended {
            let reason = format!("{AUTO_SUSPEND_REASON}{kind}");
            events.push(LicenseEvent::LicenseSuspended { reason: Some(reason), suspended_at: at });
        }
        events
    }

    fn resolve_anomaly(&self, anomaly_id: String, note: Option<String>, at: DateTime<Utc>) -> Decision {
        let open = self.open_anomalies.iter().find(|open| open.id == anomaly_id);
        let kind = open.ok_or(LicenseError::AnomalyNotOpen)?.kind;
        Ok(vec![LicenseEvent::AnomalyResolved { anomaly_id, kind, note, resolved_at: at }])
    }
}

/// An administrator's edit: each field given replaces the license's.
struct Edit {
    expires_at: Option<DateTime<Utc>>,
    max_activations: Option<Seats>,
    max_connections: Option<Option<u32>>,
    policy: Option<Policy>,
    customer_id: Option<Option<CustomerId>>,
}
