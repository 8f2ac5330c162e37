//! The detectors: pure functions of a license's events (their times,
//! their client addresses) and the tenant's settings, so the same log
//! always gives the same findings. No clock is read here.
//!
//! A finding is raised when a threshold is passed and no anomaly of its
//! kind is open on the license; the license aggregate refuses a second
//! one of a kind while the first is open, so an episode is recorded once
//! even when a finding is raised twice (after a restart, say).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use keyledger_domain::{AnomalyEvidence, AnomalyKind, LicenseEvent, MachineHash};

use super::settings::AnomalySettings;

/// Makes room for one more element of a `Vec` or `VecDeque`, doubling
/// from one rather than from the four a first growth would take: most
/// licenses hold one or two of each.
macro_rules! grow_by_doubling {
    ($collection:expr) => {
        if $collection.len() == $collection.capacity() {
            $collection.reserve_exact($collection.len().max(1));
        }
    };
}

/// Seats freed and not yet taken that a license remembers: more than this
/// and the oldest is forgotten.
const MAX_FREED: usize = 64;
/// Activations a license remembers for the network count: a license
/// activated more often than this within the window has passed any
/// sensible threshold long before.
const MAX_ACTIVATIONS: usize = 1_000;

/// One event of the log as a detector needs it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub event_id: &'a str,
    pub license_id: &'a str,
    pub sequence: i64,
    pub occurred_at: DateTime<Utc>,
    pub client_ip: Option<&'a str>,
    pub event: &'a LicenseEvent,
}

/// A threshold passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub license_id: String,
    pub kind: AnomalyKind,
    pub evidence: AnomalyEvidence,
    /// The event that passed the threshold, and its sequence.
    pub trigger_event_id: String,
    pub trigger_sequence: i64,
    pub occurred_at: DateTime<Utc>,
    /// Whether the finding stands on devices that were used, not on
    /// activate-deactivate churn alone: only such a finding may suspend
    /// the license (the tenant's `suspend` action). Churn of a free seat
    /// costs its holder nothing, so anyone holding the key could
    /// otherwise get the license suspended under its rightful users.
    pub suspendable: bool,
}

impl Finding {
    /// Derived from the license, the kind and the event that passed the
    /// threshold: a finding raised again after a restart has the same id.
    pub fn anomaly_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest =
            Sha256::digest(format!("{}\n{}\n{}", self.license_id, self.kind, self.trigger_event_id).as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        // A version 8 (custom) UUID: the layout of one, the bits of a hash.
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        uuid::Uuid::from_bytes(bytes).to_string()
    }
}

#[derive(Debug, Clone)]
struct Move {
    at: DateTime<Utc>,
    event_ids: [Id; 2],
    to: MachineHash,
    /// The machine that freed the seat had used it ([`Bound::lived`]).
    from_used: bool,
}

#[derive(Debug, Clone)]
struct Activation {
    at: DateTime<Utc>,
    event_id: Id,
    address: Box<str>,
}

/// A machine holding a seat that has not been seen to use it yet: since
/// when, and the activation that bound it. A machine is used once it sends
/// a heartbeat or has held its seat for `lived_secs`, and is then no
/// longer remembered: freeing a seat the detector does not remember counts
/// as freeing a used one.
#[derive(Debug, Clone)]
struct Bound {
    since: DateTime<Utc>,
    activation: Id,
}

impl Bound {
    /// Held its seat for `lived_secs` by `until`.
    fn lived(&self, until: DateTime<Utc>, lived_secs: u32) -> bool {
        until - self.since >= window(lived_secs)
    }
}

/// What one `LicenseCallRateExceeded` says: `windows` consecutive windows
/// over the allowance, the last starting at `last_window`.
#[derive(Debug, Clone, Copy)]
struct ReportedRun {
    last_window: DateTime<Utc>,
    window_secs: u32,
    windows: u32,
}

/// Consecutive windows in which one device passed its allowance.
#[derive(Debug, Clone)]
struct Run {
    first_window: DateTime<Utc>,
    last_window: DateTime<Utc>,
    window_secs: u32,
    windows: u32,
    event_ids: VecDeque<Id>,
}

/// What the detectors remember of one license. The detector tracks every
/// license with an event in the last hour (a fleet sending hourly
/// heartbeats: every license), so a license whose recent events call for
/// nothing more is these few bytes alone.
#[derive(Debug, Clone)]
struct Track {
    last_sequence: i64,
    last_event_at: DateTime<Utc>,
    /// None while there is nothing more to remember.
    recent: Option<Box<Recent>>,
}

/// What the detectors remember of a license's recent events: each part
/// only for as long as a detector's window may look back at it.
#[derive(Debug, Clone, Default)]
struct Recent {
    /// Machines whose seats were freed and not yet taken, with the event
    /// that freed each, when, and whether the machine had used its seat.
    freed: VecDeque<(MachineHash, Id, DateTime<Utc>, bool)>,
    /// Machines holding seats that have not been seen to use them.
    bound: Vec<(MachineHash, Bound)>,
    /// Activations whose machine let its seat go without using it, by
    /// event id (within the activations remembered).
    churned: HashSet<Id>,
    moves: VecDeque<Move>,
    activations: VecDeque<Activation>,
    runs: HashMap<MachineHash, Run>,
    open: Vec<AnomalyKind>,
}

/// A license's or an event's id as the detector keeps it: the 16 bytes of
/// a UUID in its usual lowercase text (every id keyledger makes), other
/// text as it is. It gives back the same text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Id {
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl Id {
    fn of(id: &str) -> Self {
        // Only the one text form maps to the bytes, so two different ids
        // never share them and the text comes back as it was.
        let canonical = id.len() == 36 && !id.bytes().any(|b| b.is_ascii_uppercase());
        match uuid::Uuid::try_parse(id) {
            Ok(uuid) if canonical => Id::Uuid(uuid.into_bytes()),
            _ => Id::Text(id.into()),
        }
    }

    fn text(&self) -> String {
        match self {
            Id::Uuid(bytes) => uuid::Uuid::from_bytes(*bytes).hyphenated().to_string(),
            Id::Text(text) => text.to_string(),
        }
    }
}

/// Every tracked license's recent history.
#[derive(Debug, Default)]
pub struct Detector {
    licenses: HashMap<Id, Track>,
    /// The newest event time seen: the detector's clock.
    newest: Option<DateTime<Utc>>,
}

impl Detector {
    /// The sequence of the last event seen of the license, if it is
    /// tracked. An untracked license's earlier events must be observed
    /// (with `live` false) before its next one.
    pub fn last_sequence(&self, license_id: &str) -> Option<i64> {
        self.licenses.get(&Id::of(license_id)).map(|track| track.last_sequence)
    }

    /// The newest event time seen: the detectors' clock.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.newest
    }

    pub fn tracked(&self) -> usize {
        self.licenses.len()
    }

    /// Forgets licenses with no event within `idle` of the newest event
    /// seen (event time, so a replay forgets what a live run would); a
    /// later event of one has its history read again.
    pub fn forget_idle(&mut self, idle: Duration) {
        let Some(newest) = self.newest else { return };
        let before = newest - idle;
        self.licenses.retain(|_, track| track.last_event_at >= before);
        // Gives memory back after a busy stretch, but only once the map is
        // mostly empty: shrinking rehashes every entry, and a map near its
        // size would grow and shrink again and again.
        if self.licenses.capacity() > 4 * self.licenses.len().max(1024) {
            self.licenses.shrink_to_fit();
        }
    }

    /// Takes one event into account and returns what it makes pass a
    /// threshold. An event already seen changes nothing. With `live`
    /// false (a license's history read to catch up), nothing is found:
    /// that history was examined when it happened.
    pub fn observe(&mut self, observed: Observed<'_>, settings: &AnomalySettings, live: bool) -> Vec<Finding> {
        let track = self.licenses.entry(Id::of(observed.license_id)).or_insert_with(|| Track {
            last_sequence: 0,
            last_event_at: observed.occurred_at,
            recent: None,
        });
        if observed.sequence <= track.last_sequence {
            return Vec::new();
        }
        track.last_sequence = observed.sequence;
        track.last_event_at = observed.occurred_at;
        self.newest = self.newest.max(Some(observed.occurred_at));
        if track.recent.is_none() && !remembered(observed.event) {
            return Vec::new();
        }
        let recent = track.recent.get_or_insert_with(Box::default);
        let found = recent.take(&observed, settings);
        recent.forget_past(observed.occurred_at, settings);
        let found: Vec<Finding> = if live {
            found
                .into_iter()
                .filter(|(kind, _, _)| recent.open_now(*kind))
                .map(|(kind, evidence, suspendable)| Finding {
                    license_id: observed.license_id.to_owned(),
                    kind,
                    evidence,
                    trigger_event_id: observed.event_id.to_owned(),
                    trigger_sequence: observed.sequence,
                    occurred_at: observed.occurred_at,
                    suspendable,
                })
                .collect()
        } else {
            Vec::new()
        };
        if recent.is_empty() {
            track.recent = None;
        }
        found
    }
}

/// Whether an event leaves anything to remember for a license that has
/// nothing remembered: a heartbeat, say, does not (its machine is not
/// remembered, so it is used already).
fn remembered(event: &LicenseEvent) -> bool {
    matches!(
        event,
        LicenseEvent::LicenseActivated { .. }
            | LicenseEvent::LicenseDeactivated { .. }
            | LicenseEvent::LicenseRevoked { .. }
            | LicenseEvent::LicenseCallRateExceeded { .. }
            | LicenseEvent::AnomalyDetected { .. }
    )
}

fn window(secs: u32) -> Duration {
    Duration::seconds(i64::from(secs))
}

/// A threshold passed: its kind, its evidence, and whether it may suspend.
type Found = (AnomalyKind, AnomalyEvidence, bool);

impl Recent {
    fn is_empty(&self) -> bool {
        self.freed.is_empty()
            && self.bound.is_empty()
            && self.churned.is_empty()
            && self.moves.is_empty()
            && self.activations.is_empty()
            && self.runs.is_empty()
            && self.open.is_empty()
    }

    /// Marks an anomaly of `kind` open; false if one was open already.
    fn open_now(&mut self, kind: AnomalyKind) -> bool {
        if self.open.contains(&kind) {
            return false;
        }
        self.open.push(kind);
        true
    }

    /// Forgets what no detector's window can look back at from `now`
    /// (event time): machines that have held their seats long enough to
    /// count as used, and freed seats, moves and activations older than
    /// their windows. Each detector forgets the same again before it
    /// counts, so this changes no finding; it only keeps a license that
    /// has gone quiet from holding on to them.
    fn forget_past(&mut self, now: DateTime<Utc>, settings: &AnomalySettings) {
        let lived = settings.device_lived_secs;
        self.bound.retain(|(_, bound)| !bound.lived(now, lived));
        let hopping = now - window(settings.license_hopping.window_secs);
        self.freed.retain(|(_, _, freed_at, _)| *freed_at >= hopping);
        while self.moves.front().is_some_and(|m| m.at < hopping) {
            self.moves.pop_front();
        }
        let networks = now - window(settings.unusual_activation_pattern.window_secs);
        while self.activations.front().is_some_and(|a| a.at < networks) {
            if let Some(forgotten) = self.activations.pop_front() {
                self.churned.remove(&forgotten.event_id);
            }
        }
        if self.activations.is_empty() {
            self.churned = HashSet::new();
        }
    }

    fn take(&mut self, observed: &Observed<'_>, settings: &AnomalySettings) -> Vec<Found> {
        let at = observed.occurred_at;
        let mut found = Vec::new();
        match observed.event {
            LicenseEvent::LicenseActivated { machine, .. } => {
                // A seat freed longer ago than the window is not moving now.
                let since = at - window(settings.license_hopping.window_secs);
                self.freed.retain(|(_, _, freed_at, _)| *freed_at >= since);
                if let Some(position) = self.freed.iter().position(|(freed, _, _, _)| freed == machine) {
                    // The same machine came back: its seat did not move.
                    self.freed.remove(position);
                } else if let Some((_, freed_by, _, from_used)) = self.freed.pop_front() {
                    let event_ids = [freed_by, Id::of(observed.event_id)];
                    self.moves.push_back(Move { at, event_ids, to: machine.clone(), from_used });
                    found.extend(self.hopping(at, settings));
                }
                let bound = Bound { since: at, activation: Id::of(observed.event_id) };
                match self.bound.iter_mut().find(|(bound, _)| bound == machine) {
                    Some((_, held)) => *held = bound,
                    None => {
                        grow_by_doubling!(self.bound);
                        self.bound.push((machine.clone(), bound));
                    }
                }
                if let Some(address) = observed.client_ip {
                    grow_by_doubling!(self.activations);
                    self.activations.push_back(Activation {
                        at,
                        event_id: Id::of(observed.event_id),
                        address: address.into(),
                    });
                    if self.activations.len() > MAX_ACTIVATIONS {
                        if let Some(forgotten) = self.activations.pop_front() {
                            self.churned.remove(&forgotten.event_id);
                        }
                    }
                    found.extend(self.networks(at, settings));
                }
            }
            // A heartbeat uses the seat: the machine need not be
            // remembered any longer.
            LicenseEvent::HeartbeatRecorded { machine, .. } => {
                self.unbind(machine);
            }
            LicenseEvent::LicenseDeactivated { machine, .. } => {
                self.free([machine], observed.event_id, at, settings.device_lived_secs)
            }
            LicenseEvent::LicenseRevoked { released_machines, .. } => {
                self.free(released_machines, observed.event_id, at, settings.device_lived_secs)
            }
            LicenseEvent::DeviceCulled { machine, .. } => {
                self.unbind(machine);
            }
            LicenseEvent::LicenseCallRateExceeded { machine, window_started_at, window_secs, windows, .. } => {
                let run = ReportedRun { last_window: *window_started_at, window_secs: *window_secs, windows: *windows };
                found.extend(self.call_rate(machine, run, observed.event_id, settings));
            }
            LicenseEvent::AnomalyDetected { kind, .. } => {
                self.open_now(*kind);
            }
            LicenseEvent::AnomalyResolved { kind, .. } => self.open.retain(|open| open != kind),
            _ => {}
        }
        found.retain(|(kind, _, _)| !self.open.contains(kind));
        found
    }

    /// Forgets the machine's seat, answering what was remembered of it.
    fn unbind(&mut self, machine: &MachineHash) -> Option<Bound> {
        let position = self.bound.iter().position(|(bound, _)| bound == machine)?;
        Some(self.bound.swap_remove(position).1)
    }

    fn free<'m>(
        &mut self,
        machines: impl IntoIterator<Item = &'m MachineHash>,
        event_id: &str,
        at: DateTime<Utc>,
        lived_secs: u32,
    ) {
        for machine in machines {
            let used = match self.unbind(machine) {
                Some(bound) => {
                    let used = bound.lived(at, lived_secs);
                    if !used {
                        self.churned.insert(bound.activation);
                    }
                    used
                }
                // Bound before the history this detector read: it held
                // its seat for a while.
                None => true,
            };
            grow_by_doubling!(self.freed);
            self.freed.push_back((machine.clone(), Id::of(event_id), at, used));
        }
        while self.freed.len() > MAX_FREED {
            self.freed.pop_front();
        }
    }

    /// More moves than allowed; suspendable when the moves away from
    /// machines that had used their seats are more than allowed too.
    fn hopping(&mut self, now: DateTime<Utc>, settings: &AnomalySettings) -> Option<Found> {
        let rule = &settings.license_hopping;
        let since = now - window(rule.window_secs);
        while self.moves.front().is_some_and(|m| m.at < since) {
            self.moves.pop_front();
        }
        let open = self.open.contains(&AnomalyKind::LicenseHopping);
        if open || !rule.enabled || self.moves.len() as u32 <= rule.max_moves {
            return None;
        }
        let evidence = AnomalyEvidence {
            event_ids: self.moves.iter().flat_map(|m| m.event_ids.iter().map(Id::text)).collect(),
            count: self.moves.len() as u32,
            threshold: rule.max_moves,
            window_started_at: since,
            window_ended_at: now,
            addresses: Vec::new(),
            machines: self.moves.iter().map(|m| m.to.clone()).collect(),
            trailing_per_hour: None,
        };
        let used_moves = self.moves.iter().filter(|m| m.from_used).count() as u32;
        Some((AnomalyKind::LicenseHopping, evidence, used_moves > rule.max_moves))
    }

    /// Activations from more networks than allowed; suspendable when the
    /// networks of activations whose machines hold their seats still, or
    /// used them before letting go, are more than allowed too.
    fn networks(&mut self, now: DateTime<Utc>, settings: &AnomalySettings) -> Option<Found> {
        let rule = &settings.unusual_activation_pattern;
        let since = now - window(rule.window_secs);
        while self.activations.front().is_some_and(|a| a.at < since) {
            if let Some(forgotten) = self.activations.pop_front() {
                self.churned.remove(&forgotten.event_id);
            }
        }
        if self.open.contains(&AnomalyKind::UnusualActivationPattern) || !rule.enabled {
            return None;
        }
        let networks: HashSet<String> = self.activations.iter().map(|a| network(&a.address)).collect();
        if networks.len() as u32 <= rule.max_networks {
            return None;
        }
        let (mut seen, mut addresses) = (HashSet::new(), Vec::new());
        for activation in &self.activations {
            if seen.insert(&*activation.address) {
                addresses.push(activation.address.to_string());
            }
        }
        let evidence = AnomalyEvidence {
            event_ids: self.activations.iter().map(|a| a.event_id.text()).collect(),
            count: networks.len() as u32,
            threshold: rule.max_networks,
            window_started_at: since,
            window_ended_at: now,
            addresses,
            machines: Vec::new(),
            trailing_per_hour: None,
        };
        let used: HashSet<String> = self
            .activations
            .iter()
            .filter(|a| !self.churned.contains(&a.event_id))
            .map(|a| network(&a.address))
            .collect();
        Some((AnomalyKind::UnusualActivationPattern, evidence, used.len() as u32 > rule.max_networks))
    }

    /// A run of consecutive windows over the allowance; `threshold` in the
    /// evidence is the longest run allowed (one less than
    /// `sustainedWindows`). The API reports a run once it is long enough,
    /// naming its length; a report that restates a run longer, or starts
    /// right after its last window (as one-window reports written before
    /// runs were counted do), extends it.
    fn call_rate(
        &mut self,
        machine: &MachineHash,
        reported: ReportedRun,
        event_id: &str,
        settings: &AnomalySettings,
    ) -> Option<Found> {
        let rule = &settings.excessive_heartbeats;
        let ReportedRun { last_window, window_secs, windows } = reported;
        let windows = windows.max(1);
        let first_window = last_window - window(window_secs) * (windows - 1) as i32;
        let run = self.runs.entry(machine.clone()).or_insert_with(|| Run {
            first_window,
            last_window,
            window_secs,
            windows: 0,
            event_ids: VecDeque::new(),
        });
        let same_length = run.window_secs == window_secs && run.windows > 0;
        if same_length && run.first_window == first_window && last_window > run.last_window {
            run.windows = windows; // the same run, reported again longer
        } else if same_length && run.last_window + window(window_secs) == first_window {
            run.windows += windows; // picks up right after the run's last window
        } else {
            *run = Run { first_window, last_window, window_secs, windows, event_ids: VecDeque::new() };
        }
        run.last_window = last_window;
        run.event_ids.push_back(Id::of(event_id));
        while run.event_ids.len() > rule.sustained_windows.max(1) as usize {
            run.event_ids.pop_front();
        }
        if self.open.contains(&AnomalyKind::ExcessiveHeartbeats)
            || !rule.enabled
            || run.windows < rule.sustained_windows
        {
            return None;
        }
        let evidence = AnomalyEvidence {
            event_ids: run.event_ids.iter().map(Id::text).collect(),
            count: run.windows,
            threshold: rule.sustained_windows.saturating_sub(1),
            window_started_at: run.first_window,
            window_ended_at: last_window + window(window_secs),
            addresses: Vec::new(),
            machines: vec![machine.clone()],
            trailing_per_hour: None,
        };
        // One machine calling too often used its seat, whoever holds it.
        Some((AnomalyKind::ExcessiveHeartbeats, evidence, true))
    }
}

/// The network an address belongs to for counting: its IPv4 /24 or IPv6
/// /48, so a device that changes address within an office or a provider's
/// pool counts once. Anything that is not an address counts as itself.
pub fn network(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => network(&v4.to_string()),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
        Err(_) => address.to_owned(),
    }
}

#[cfg(test)]
mod tests;
