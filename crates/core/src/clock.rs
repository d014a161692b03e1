//! Estimating a reference clock from timed readings, as NTP does.
//!
//! A node's reference is the PostgreSQL server's clock; a remote worker's is the server's
//! (itself corrected). Each [`Sample`] is one reading of the reference taken between two
//! instants of the local *monotonic* clock. The reading happened somewhere in that window, so
//! the sample with the shortest round trip among the recent ones bounds the error best (half
//! its round trip); the reference is then extrapolated from it on the monotonic clock. A step
//! of the local wall clock (a bad NTP step, `date -s`, a VM resumed) moves nothing here: only
//! the *offset* to the local wall clock changes, and that is what is reported.
//!
//! This module is pure: the caller passes the instants. The process-wide clock that tempora
//! reads is `tempora_store::clock`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// Samples kept; the one with the shortest round trip anchors the estimate. With a sample
/// per lease renewal (every second by default) a change of the reference itself is followed
/// within this many renewals.
pub const SAMPLES: usize = 8;

/// One reading of the reference clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Monotonic instant just before the request was sent.
    pub sent: Instant,
    /// Monotonic instant just after the answer arrived.
    pub received: Instant,
    /// The reference's time in the answer.
    pub reference: Timestamp,
}

impl Sample {
    /// How long the request took: the window in which the reading was taken.
    pub fn round_trip(&self) -> Duration {
        self.received.saturating_duration_since(self.sent)
    }

    fn anchor(&self) -> Anchor {
        let half = self.round_trip() / 2;
        Anchor {
            mono: self.sent + half,
            reference: self.reference,
            uncertainty: half,
        }
    }
}

/// The reference's time at one monotonic instant, and how far off that may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// A monotonic instant (the middle of the best sample's round trip).
    pub mono: Instant,
    /// The reference's time at `mono`.
    pub reference: Timestamp,
    /// Half the best sample's round trip: the most `reference` can be off.
    pub uncertainty: Duration,
}

impl Anchor {
    /// The reference's time at monotonic instant `at`.
    pub fn at(&self, at: Instant) -> Timestamp {
        let elapsed = match at.checked_duration_since(self.mono) {
            Some(d) => SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX),
            None => -SignedDuration::try_from(self.mono - at).unwrap_or(SignedDuration::MAX),
        };
        self.reference
            .saturating_add(elapsed)
            .unwrap_or(self.reference)
    }

    /// Reference time minus local wall-clock time, both read at monotonic instant `at` (the
    /// caller reads the wall clock `wall` at that instant).
    pub fn offset(&self, at: Instant, wall: Timestamp) -> SignedDuration {
        self.at(at).duration_since(wall)
    }
}

/// The recent samples of one reference.
#[derive(Debug, Default, Clone)]
pub struct Estimator {
    samples: VecDeque<Sample>,
}

impl Estimator {
    /// An estimator with no sample.
    pub const fn new() -> Self {
        Self {
            samples: VecDeque::new(),
        }
    }

    /// Record a sample (the oldest goes beyond [`SAMPLES`]) and return the new estimate.
    pub fn observe(&mut self, sample: Sample) -> Option<Anchor> {
        self.samples.push_back(sample);
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
        self.best()
    }

    /// The estimate: the recent sample with the shortest round trip (the newest of equals).
    pub fn best(&self) -> Option<Anchor> {
        self.samples
            .iter()
            .rev()
            .min_by_key(|s| s.round_trip())
            .map(Sample::anchor)
    }

    /// Forget every sample (the reference changed, e.g. a worker moved to another server).
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_shortest_round_trip_anchors_the_estimate() {
        let base = Instant::now();
        let reference = t("2026-03-29T00:59:59Z");
        let mut e = Estimator::new();
        // A reading in a 40 ms window, then one in a 2 ms window 1 s later.
        e.observe(Sample {
            sent: base,
            received: base + Duration::from_millis(40),
            reference,
        });
        let a = e
            .observe(Sample {
                sent: base + Duration::from_secs(1),
                received: base + Duration::from_millis(1002),
                reference: t("2026-03-29T01:00:00.001Z"),
            })
            .unwrap();
        assert_eq!(a.uncertainty, Duration::from_millis(1));
        assert_eq!(a.mono, base + Duration::from_millis(1001));
        // Extrapolated both ways on the monotonic clock.
        assert_eq!(
            a.at(base + Duration::from_millis(3001)),
            t("2026-03-29T01:00:02.001Z")
        );
        assert_eq!(
            a.at(base + Duration::from_millis(1)),
            t("2026-03-29T00:59:59.001Z")
        );
        // A slow sample later does not displace the good one while it is among the recent.
        let a2 = e
            .observe(Sample {
                sent: base + Duration::from_secs(2),
                received: base + Duration::from_millis(2900),
                reference: t("2026-03-29T01:00:05Z"),
            })
            .unwrap();
        assert_eq!(a2, a);
    }

    #[test]
    fn old_samples_age_out() {
        let base = Instant::now();
        let mut e = Estimator::new();
        e.observe(Sample {
            sent: base,
            received: base,
            reference: t("2026-01-01T00:00:00Z"),
        });
        let mut last = None;
        for i in 1..=SAMPLES as u64 {
            let at = base + Duration::from_secs(i);
            last = e.observe(Sample {
                sent: at,
                received: at + Duration::from_millis(5),
                // The reference stepped by +30 s.
                reference: t("2026-01-01T00:00:30Z") + Duration::from_secs(i),
            });
        }
        // Only the stepped readings are left (each taken mid-way through its 5 ms).
        let a = last.unwrap();
        assert_eq!(
            a.at(base + Duration::from_micros(2500)),
            t("2026-01-01T00:00:30Z")
        );
        e.clear();
        assert!(e.best().is_none());
    }

    #[test]
    fn offset_is_reference_minus_wall() {
        let base = Instant::now();
        let a = Anchor {
            mono: base,
            reference: t("2026-07-01T12:00:00Z"),
            uncertainty: Duration::ZERO,
        };
        // The local wall clock runs 20 s fast.
        let wall = t("2026-07-01T12:00:21Z");
        assert_eq!(
            a.offset(base + Duration::from_secs(1), wall),
            SignedDuration::from_secs(-20)
        );
    }
}
