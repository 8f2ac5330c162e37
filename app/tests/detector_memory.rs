//! What the anomaly detector holds for each license it tracks, counted by
//! an allocator that adds up what is asked of it: the detector tracks
//! every license with an event in the last hour, so a fleet whose devices
//! send hourly heartbeats has every license tracked at once, and the
//! process's memory target (a million activated licenses under 1 GiB)
//! must hold with them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use keyledger_app::anomalies::{AnomalySettings, Detector, Observed};
use keyledger_domain::{LicenseEvent, MachineHash, MachineName};

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const LICENSES: usize = 20_000;

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::seconds(seconds)
}

fn machine(license: usize, n: usize) -> MachineHash {
    MachineHash::from_hex(format!("{:060x}{n:04x}", license))
}

/// An event of a story, with its time (seconds from the start) and client
/// address.
type Told = (i64, LicenseEvent, Option<String>);

/// Feeds each license's story and answers the bytes held per license.
fn bytes_per_license(story: impl Fn(usize) -> Vec<Told>) -> f64 {
    let settings = AnomalySettings::default();
    let before = HELD.load(Ordering::Relaxed);
    let mut detector = Detector::default();
    for license in 0..LICENSES {
        let license_id = uuid::Uuid::from_u128(license as u128 + 1).to_string();
        for (sequence, (seconds, event, ip)) in story(license).into_iter().enumerate() {
            let event_id = uuid::Uuid::new_v4().to_string();
            let observed = Observed {
                event_id: &event_id,
                license_id: &license_id,
                sequence: sequence as i64 + 1,
                occurred_at: at(seconds),
                client_ip: ip.as_deref(),
                event: &event,
            };
            detector.observe(observed, &settings, false);
        }
    }
    assert_eq!(detector.tracked(), LICENSES);
    let held = HELD.load(Ordering::Relaxed) - before;
    drop(detector);
    held as f64 / LICENSES as f64
}

const DAY: i64 = 86_400;

fn activated(seconds: i64, license: usize, n: usize) -> Told {
    let event = LicenseEvent::LicenseActivated {
        machine: machine(license, n),
        machine_name: MachineName::parse(Some("build-agent")).unwrap(),
        details: Default::default(),
        device_number: None,
        activated_at: at(0),
    };
    (seconds, event, Some(format!("10.{}.{}.{}", license % 200, n % 200, 7)))
}

fn heartbeat(seconds: i64, license: usize, n: usize) -> Told {
    (seconds, LicenseEvent::HeartbeatRecorded { machine: machine(license, n), recorded_at: at(0) }, None)
}

#[test]
fn a_tracked_license_holds_little_more_than_its_id() {
    // The fleet's common case: a device activated weeks ago, sending
    // heartbeats (its history is read when it is first seen).
    let heartbeating = bytes_per_license(|license| {
        let mut story = vec![activated(0, license, 0)];
        story.extend((0..5).map(|n| heartbeat(30 * DAY + n * 600, license, 0)));
        story
    });
    // A device activated within the hour, with its first heartbeats.
    let new = bytes_per_license(|license| {
        let mut story = vec![activated(30 * DAY, license, 0)];
        story.extend((0..5).map(|n| heartbeat(30 * DAY + n * 600, license, 0)));
        story
    });
    // Five devices taking turns within minutes (the scale bench's
    // licenses): five activations, four deactivations.
    let churning = bytes_per_license(|license| {
        let mut story = Vec::new();
        for n in 0..5 {
            story.push(activated(n as i64 * 120, license, n));
            if n < 4 {
                let event = LicenseEvent::LicenseDeactivated { machine: machine(license, n), deactivated_at: at(0) };
                story.push((n as i64 * 120 + 60, event, Some("10.0.0.1".to_owned())));
            }
        }
        story
    });
    eprintln!(
        "bytes a tracked license: heartbeating {heartbeating:.0}, activated within the hour {new:.0}, five devices taking turns {churning:.0}"
    );
    // A million of the common case in a tenth of the 1 GiB target.
    assert!(heartbeating < 110.0, "{heartbeating:.0} bytes a heartbeating license");
    assert!(new < 600.0, "{new:.0} bytes a license activated within the hour");
    assert!(churning < 2_000.0, "{churning:.0} bytes a license of five devices");
}
