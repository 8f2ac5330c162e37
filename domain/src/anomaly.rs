//! Anomalies a detector found in a license's events, recorded in the
//! license's own stream so they are audited and replayed like any change.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::MachineHash;

/// What kind of misuse an anomaly points at. The names are seed 003's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A seat moving between machines more often than the window allows.
    LicenseHopping,
    /// A license activated from more networks than the window allows.
    UnusualActivationPattern,
    /// A device calling validate or heartbeat faster than its allowance
    /// for a sustained period.
    ExcessiveHeartbeats,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 3] =
        [AnomalyKind::LicenseHopping, AnomalyKind::UnusualActivationPattern, AnomalyKind::ExcessiveHeartbeats];

    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::LicenseHopping => "license_hopping",
            AnomalyKind::UnusualActivationPattern => "unusual_activation_pattern",
            AnomalyKind::ExcessiveHeartbeats => "excessive_heartbeats",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the detector raised an anomaly: enough for a reader of the log to
/// check the finding against the events it names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnomalyEvidence {
    /// The log events that make up the finding, oldest first.
    pub event_ids: Vec<String>,
    /// Moves, networks or windows over the allowance seen in the window.
    pub count: u32,
    /// The most the tenant's settings allow in the window.
    pub threshold: u32,
    pub window_started_at: DateTime<Utc>,
    pub window_ended_at: DateTime<Utc>,
    /// The client addresses involved (unusual activation patterns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The machines involved (hopping, excessive heartbeats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<MachineHash>,
    /// The tenant's average activations per hour over its trailing
    /// period, rounded up: set only on the tenant-wide form of an unusual
    /// activation pattern, where `count` is the tenant's activations in
    /// the hour and the license is the one whose activation passed the
    /// threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailing_per_hour: Option<u32>,
}

impl AnomalyEvidence {
    /// Whether this is the tenant-wide form of a finding (a surge of the
    /// tenant's activations), not one about the license itself.
    pub fn is_tenant_wide(&self) -> bool {
        self.trailing_per_hour.is_some()
    }
}

/// An anomaly recorded and not yet resolved. While one of a kind is open
/// on a license, the detector's further findings of that kind belong to
/// the same episode and record nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAnomaly {
    pub id: String,
    pub kind: AnomalyKind,
    pub detected_at: DateTime<Utc>,
}

/// The last finding of a kind recorded on a license: the sequence of the
/// event that passed the threshold. A finding from that event or an earlier
/// one (the log read again) is recorded already, resolved or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyMark {
    pub kind: AnomalyKind,
    pub trigger_sequence: i64,
}

/// A detector's suspension of a license, as a finding asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoSuspend {
    /// No second suspension by a detector within this many seconds of
    /// the last one.
    pub cooldown_secs: u32,
}

/// The reason a detector's suspension carries, before the anomaly's kind.
pub const AUTO_SUSPEND_REASON: &str = "anomaly: ";
