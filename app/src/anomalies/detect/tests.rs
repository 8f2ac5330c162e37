//! Each detector on a short story of events.

use chrono::TimeZone;
use keyledger_domain::MachineName;

use super::*;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap() + Duration::seconds(seconds)
}

fn machine(n: u8) -> MachineHash {
    MachineHash::from_hex(format!("{n:02x}").repeat(32))
}

/// A license's events fed in order, each with an id `e<sequence>`.
struct Story {
    detector: Detector,
    settings: AnomalySettings,
    sequence: i64,
    found: Vec<Finding>,
}

impl Story {
    fn new() -> Self {
        Self { detector: Detector::default(), settings: AnomalySettings::default(), sequence: 0, found: Vec::new() }
    }

    fn event(&mut self, at: i64, ip: Option<&str>, event: LicenseEvent) -> &mut Self {
        self.sequence += 1;
        let id = format!("e{}", self.sequence);
        let observed = Observed {
            event_id: &id,
            license_id: "lic",
            sequence: self.sequence,
            occurred_at: t(at),
            client_ip: ip,
            event: &event,
        };
        self.found.extend(self.detector.observe(observed, &self.settings, true));
        self
    }

    fn activate(&mut self, at: i64, n: u8, ip: &str) -> &mut Self {
        let name = MachineName::parse(Some("m")).unwrap();
        self.event(
            at,
            Some(ip),
            LicenseEvent::LicenseActivated {
                machine: machine(n),
                machine_name: name,
                details: Default::default(),
                device_number: None,
                activated_at: t(at),
            },
        )
    }

    fn deactivate(&mut self, at: i64, n: u8) -> &mut Self {
        self.event(
            at,
            Some("10.0.0.1"),
            LicenseEvent::LicenseDeactivated { machine: machine(n), deactivated_at: t(at) },
        )
    }

    /// A one-window report, as written before runs were counted.
    fn over(&mut self, window_start: i64, n: u8) -> &mut Self {
        self.over_run(window_start, n, 1)
    }

    /// A run of `windows` one-minute windows over the allowance, the last
    /// starting at `last_window`.
    fn over_run(&mut self, last_window: i64, n: u8, windows: u32) -> &mut Self {
        self.event(
            last_window,
            None,
            LicenseEvent::LicenseCallRateExceeded {
                machine: machine(n),
                calls: 3,
                allowance: 2,
                window_started_at: t(last_window),
                window_secs: 60,
                windows,
                observed_at: t(last_window),
            },
        )
    }

    fn heartbeat(&mut self, at: i64, n: u8) -> &mut Self {
        self.event(at, None, LicenseEvent::HeartbeatRecorded { machine: machine(n), recorded_at: t(at) })
    }

    fn kinds(&self) -> Vec<AnomalyKind> {
        self.found.iter().map(|f| f.kind).collect()
    }
}

#[test]
fn a_seat_moving_a_fourth_time_in_a_day_is_hopping() {
    let mut story = Story::new();
    story.activate(0, 1, "10.0.0.1");
    for (i, n) in (2..=4).enumerate() {
        story.deactivate(100 * i as i64 + 50, n - 1).activate(100 * i as i64 + 60, n, "10.0.0.1");
    }
    assert!(story.found.is_empty(), "three moves are allowed");
    story.deactivate(400, 4).activate(410, 5, "10.0.0.1");
    assert_eq!(story.kinds(), [AnomalyKind::LicenseHopping]);
    let evidence = &story.found[0].evidence;
    assert_eq!((evidence.count, evidence.threshold, evidence.event_ids.len()), (4, 3, 8));
    // The episode goes on: no second finding.
    story.deactivate(500, 5).activate(510, 6, "10.0.0.1");
    assert_eq!(story.found.len(), 1);
}

/// Someone holding the key churns the one free seat (activate, deactivate,
/// next machine) beside a machine that uses the other: hopping is
/// recorded, and it may not suspend, since no machine that let a seat go
/// had used it.
#[test]
fn churn_of_a_free_seat_is_hopping_that_does_not_suspend() {
    let mut story = Story::new();
    story.activate(0, 1, "10.0.0.1").heartbeat(30, 1);
    story.activate(40, 2, "10.9.9.9");
    for n in 3..=7u8 {
        let at = i64::from(n) * 10;
        story.deactivate(at + 50, n - 1).activate(at + 55, n, "10.9.9.9");
    }
    assert_eq!(story.kinds(), [AnomalyKind::LicenseHopping]);
    assert!(!story.found[0].suspendable, "churn alone never suspends");
}

/// A seat passed on between machines that each used it (a heartbeat, or
/// an hour holding it) is hopping that may suspend.
#[test]
fn machines_that_used_the_seat_make_hopping_that_suspends() {
    let mut story = Story::new();
    story.activate(0, 1, "10.0.0.1").heartbeat(60, 1);
    for n in 2..=5u8 {
        let at = i64::from(n) * 1000;
        story.deactivate(at, n - 1).activate(at + 10, n, "10.0.0.1").heartbeat(at + 20, n);
    }
    let mut hours = Story::new();
    hours.activate(0, 1, "10.0.0.1");
    for n in 2..=5u8 {
        let at = i64::from(n) * 3700;
        hours.deactivate(at, n - 1).activate(at + 10, n, "10.0.0.1");
    }
    for story in [&story, &hours] {
        assert_eq!(story.kinds(), [AnomalyKind::LicenseHopping]);
        assert!(story.found[0].suspendable);
    }
}

/// Activations from six networks: when five of them let their seats go at
/// once, only the networks of machines that used or still hold seats
/// count toward a suspension.
#[test]
fn networks_of_churned_activations_do_not_suspend() {
    let mut churn = Story::new();
    churn.activate(0, 1, "10.0.0.1").heartbeat(10, 1);
    for n in 2..=6u8 {
        let at = i64::from(n) * 100;
        churn.activate(at, n, &format!("10.{n}.0.1"));
        if n < 6 {
            churn.deactivate(at + 5, n);
        }
    }
    let networks = churn.found.iter().find(|f| f.kind == AnomalyKind::UnusualActivationPattern).unwrap();
    assert!(!networks.suspendable);

    let mut held = Story::new();
    for n in 1..=6u8 {
        held.activate(i64::from(n) * 100, n, &format!("10.{n}.0.1"));
    }
    assert_eq!(held.kinds(), [AnomalyKind::UnusualActivationPattern]);
    assert!(held.found[0].suspendable, "six machines on six networks hold their seats");
}

#[test]
fn a_machine_coming_back_is_not_a_move() {
    let mut story = Story::new();
    for i in 0..10 {
        story.activate(i * 10, 1, "10.0.0.1").deactivate(i * 10 + 5, 1);
    }
    assert!(story.found.is_empty());
}

#[test]
fn moves_spread_over_more_than_the_window_are_not_hopping() {
    let mut story = Story::new();
    story.activate(0, 1, "10.0.0.1");
    for n in 2..=8u8 {
        let at = i64::from(n) * 9 * 3600;
        story.deactivate(at, n - 1).activate(at + 1, n, "10.0.0.1");
    }
    assert!(story.found.is_empty());
}

#[test]
fn activations_from_a_sixth_network_are_unusual() {
    let mut story = Story::new();
    for n in 1..=5u8 {
        story.activate(i64::from(n), n, &format!("203.0.{n}.7"));
        story.activate(i64::from(n) + 100, n + 50, &format!("203.0.{n}.9")); // same /24
    }
    assert!(story.found.is_empty());
    story.activate(300, 99, "2001:db8:1::5");
    assert_eq!(story.kinds(), [AnomalyKind::UnusualActivationPattern]);
    assert_eq!(story.found[0].evidence.count, 6);
    assert_eq!(story.found[0].evidence.addresses.len(), 11);
}

#[test]
fn five_windows_in_a_row_over_the_allowance_are_excessive() {
    let mut story = Story::new();
    story.activate(0, 1, "10.0.0.1");
    // Four in a row, a gap, then four more: never five in a row.
    for w in [0, 1, 2, 3, 5, 6, 7, 8] {
        story.over(60 * w, 1);
    }
    assert!(story.found.is_empty());
    story.over(60 * 9, 1);
    assert_eq!(story.kinds(), [AnomalyKind::ExcessiveHeartbeats]);
    let evidence = &story.found[0].evidence;
    assert_eq!((evidence.count, evidence.event_ids.len()), (5, 5));
    assert_eq!(evidence.window_started_at, t(300));
    assert_eq!(evidence.window_ended_at, t(600));
}

#[test]
fn a_run_reported_at_its_sustained_length_is_excessive_once() {
    let mut story = Story::new();
    story.activate(0, 1, "10.0.0.1");
    story.over_run(60 * 3, 1, 4); // the API reports runs of five only; four is not enough
    assert!(story.found.is_empty());
    story.over_run(60 * 14, 1, 5);
    assert_eq!(story.kinds(), [AnomalyKind::ExcessiveHeartbeats]);
    let evidence = &story.found[0].evidence;
    assert_eq!((evidence.count, evidence.event_ids.len()), (5, 1));
    assert_eq!((evidence.window_started_at, evidence.window_ended_at), (t(600), t(900)));
    story.over_run(60 * 19, 1, 10); // the same run, longer: the same open episode
    assert_eq!(story.found.len(), 1);
}

#[test]
fn a_run_restated_longer_counts_as_one_run() {
    let mut story = Story::new();
    story.settings.excessive_heartbeats.sustained_windows = 8;
    story.activate(0, 1, "10.0.0.1");
    story.over_run(60 * 4, 1, 5);
    story.over_run(60 * 6, 1, 7);
    assert!(story.found.is_empty(), "seven windows are fewer than eight");
    story.over_run(60 * 7, 1, 8);
    assert_eq!(story.kinds(), [AnomalyKind::ExcessiveHeartbeats]);
    assert_eq!(story.found[0].evidence.count, 8);
    assert_eq!(story.found[0].evidence.window_started_at, t(0));
}

#[test]
fn a_resolved_anomaly_lets_the_next_finding_through() {
    let mut story = Story::new();
    story.settings.license_hopping.max_moves = 1;
    story.activate(0, 1, "10.0.0.1");
    story.deactivate(1, 1).activate(2, 2, "10.0.0.1").deactivate(3, 2).activate(4, 3, "10.0.0.1");
    assert_eq!(story.found.len(), 1);
    let finding = story.found[0].clone();
    story.event(
        5,
        None,
        LicenseEvent::AnomalyDetected {
            anomaly_id: finding.anomaly_id(),
            kind: finding.kind,
            trigger_sequence: finding.trigger_sequence,
            evidence: finding.evidence.clone(),
            detected_at: t(5),
        },
    );
    story.deactivate(6, 3).activate(7, 4, "10.0.0.1");
    assert_eq!(story.found.len(), 1, "still the same episode");
    story.event(
        8,
        None,
        LicenseEvent::AnomalyResolved {
            anomaly_id: finding.anomaly_id(),
            kind: finding.kind,
            note: None,
            resolved_at: t(8),
        },
    );
    story.deactivate(9, 4).activate(10, 5, "10.0.0.1");
    assert_eq!(story.found.len(), 2, "a new episode");
}

#[test]
fn a_disabled_detector_finds_nothing() {
    let mut story = Story::new();
    story.settings.license_hopping.enabled = false;
    story.settings.license_hopping.max_moves = 1;
    story.activate(0, 1, "10.0.0.1");
    story.deactivate(1, 1).activate(2, 2, "10.0.0.1").deactivate(3, 2).activate(4, 3, "10.0.0.1");
    assert!(story.found.is_empty());
}

#[test]
fn history_caught_up_finds_nothing_and_events_seen_twice_count_once() {
    let mut detector = Detector::default();
    let settings = AnomalySettings {
        license_hopping: super::super::settings::Hopping { max_moves: 0, ..Default::default() },
        ..Default::default()
    };
    let name = MachineName::parse(Some("m")).unwrap();
    let events = [
        LicenseEvent::LicenseActivated {
            machine: machine(1),
            machine_name: name.clone(),
            details: Default::default(),
            device_number: None,
            activated_at: t(0),
        },
        LicenseEvent::LicenseDeactivated { machine: machine(1), deactivated_at: t(1) },
        LicenseEvent::LicenseActivated {
            machine: machine(2),
            machine_name: name,
            details: Default::default(),
            device_number: None,
            activated_at: t(2),
        },
    ];
    let observed = |sequence: usize| Observed {
        event_id: ["a", "b", "c"][sequence - 1],
        license_id: "lic",
        sequence: sequence as i64,
        occurred_at: t(sequence as i64),
        client_ip: None,
        event: &events[sequence - 1],
    };
    for sequence in 1..=3 {
        assert!(detector.observe(observed(sequence), &settings, false).is_empty());
    }
    assert_eq!(detector.last_sequence("lic"), Some(3));
    assert!(detector.observe(observed(3), &settings, true).is_empty(), "seen already");
}

#[test]
fn the_anomaly_id_is_the_same_for_the_same_finding() {
    let finding = Finding {
        suspendable: true,
        license_id: "lic".into(),
        kind: AnomalyKind::LicenseHopping,
        evidence: AnomalyEvidence::default(),
        trigger_event_id: "e9".into(),
        trigger_sequence: 9,
        occurred_at: t(0),
    };
    assert_eq!(finding.anomaly_id(), finding.clone().anomaly_id());
    assert!(uuid::Uuid::parse_str(&finding.anomaly_id()).is_ok());
    let other = Finding { trigger_event_id: "e10".into(), ..finding.clone() };
    assert_ne!(finding.anomaly_id(), other.anomaly_id());
}

#[test]
fn networks_group_addresses() {
    assert_eq!(network("203.0.113.9"), "203.0.113.0/24");
    assert_eq!(network("::ffff:203.0.113.9"), "203.0.113.0/24");
    assert_eq!(network("2001:db8:aa:bb::1"), "2001:db8:aa::/48");
    assert_eq!(network("not an address"), "not an address");
}

#[test]
fn a_seat_freed_longer_ago_than_the_window_does_not_move() {
    let mut story = Story::new();
    story.settings.license_hopping.max_moves = 0;
    story.activate(0, 1, "10.0.0.1").deactivate(10, 1);
    story.activate(10 + 2 * 86_400, 2, "10.0.0.1");
    assert!(story.found.is_empty());
    story.deactivate(3 * 86_400, 2).activate(3 * 86_400 + 5, 3, "10.0.0.1");
    assert_eq!(story.kinds(), [AnomalyKind::LicenseHopping]);
}
