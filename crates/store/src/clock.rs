//! The clock every part of tempora reads: [`now`].
//!
//! Where a reference clock exists — the PostgreSQL server's, for the nodes of a cluster (read
//! at each lease renewal by the elector); the answering server's, for a remote worker (every
//! worker-protocol answer carries it) — `now()` is that reference, extrapolated on the local
//! monotonic clock from the best recent reading (`tempora_core::clock`). Elsewhere (a lone
//! SQLite node, before the first reading) it is the system clock. So a cluster fires, leases
//! and reports on one clock whatever each machine's own says, and a step of a machine's clock
//! changes only the offset it reports.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use tempora_core::clock::{Anchor, Estimator, Sample};

static ESTIMATOR: Mutex<Estimator> = Mutex::new(Estimator::new());
static ANCHOR: RwLock<Option<Anchor>> = RwLock::new(None);

/// The current time: the reference clock's where there is one, the system clock's otherwise.
pub fn now() -> Timestamp {
    match anchor() {
        Some(a) => a.at(Instant::now()),
        None => Timestamp::now(),
    }
}

/// Record a reading of the reference clock; `now()` follows the best recent one from here on.
pub fn observe(sample: Sample) {
    let best = match ESTIMATOR.lock() {
        Ok(mut e) => e.observe(sample),
        Err(poisoned) => poisoned.into_inner().observe(sample),
    };
    match ANCHOR.write() {
        Ok(mut a) => *a = best,
        Err(poisoned) => *poisoned.into_inner() = best,
    }
}

/// Reference time minus system time now; `None` while there is no reference reading.
pub fn offset() -> Option<SignedDuration> {
    let a = anchor()?;
    let (mono, wall) = (Instant::now(), Timestamp::now());
    Some(a.offset(mono, wall))
}

/// How far off the estimate may be (half the best reading's round trip); `None` while there
/// is no reference reading.
pub fn uncertainty() -> Option<Duration> {
    anchor().map(|a| a.uncertainty)
}

/// Milliseconds of an offset, to the microsecond, as the API shows it.
pub fn millis(d: SignedDuration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn anchor() -> Option<Anchor> {
    match ANCHOR.read() {
        Ok(a) => *a,
        Err(poisoned) => *poisoned.into_inner(),
    }
}

/// Largest offset a worker may report (a year): beyond it the number is not a clock offset.
pub const MAX_REPORTED_OFFSET: SignedDuration = SignedDuration::from_hours(24 * 366);

/// Serde for an optional offset as milliseconds (a number with microsecond decimals), the
/// form the API shows: `"clock_offset_ms": -20000.125`. Refuses what is not a finite number
/// within [`MAX_REPORTED_OFFSET`].
pub mod offset_ms {
    use jiff::SignedDuration;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as milliseconds, `null` for none.
    pub fn serialize<S: Serializer>(v: &Option<SignedDuration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_f64(super::millis(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize from milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SignedDuration>, D::Error> {
        let Some(ms) = Option::<f64>::deserialize(d)? else {
            return Ok(None);
        };
        let max = super::MAX_REPORTED_OFFSET.as_millis() as f64;
        if !ms.is_finite() || ms.abs() > max {
            return Err(serde::de::Error::custom(format!(
                "a clock offset is a number of milliseconds within ±{max}"
            )));
        }
        Ok(Some(SignedDuration::from_micros(
            (ms * 1000.0).round() as i64
        )))
    }
}

/// Where a long-running task reads the time. Production passes [`system`] (the process clock,
/// [`now`]); tests pass a clock they control, such as [`TokioClock`], so that DST nights, long
/// outages and lease expiries take milliseconds and no sleep.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The process clock ([`now`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }
}

/// The process clock as a shared [`Clock`].
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves with tokio's: `start` plus the time elapsed on tokio's clock since it
/// was made. Under `tokio::time::pause()` tokio's clock only moves when the test advances it
/// (or, idle, jumps to the next timer), and this clock moves with it: a scheduler sleeping
/// until an occurrence a day away wakes at once, with this clock on that occurrence.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: Timestamp,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock showing `start` now.
    pub fn starting_at(start: Timestamp) -> Arc<Self> {
        Arc::new(Self {
            start,
            base: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.base.elapsed()).unwrap_or(SignedDuration::MAX);
        self.start.saturating_add(elapsed).unwrap_or(self.start)
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::MAX_REPORTED_OFFSET;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Reported {
        #[serde(default, with = "super::offset_ms")]
        clock_offset_ms: Option<SignedDuration>,
    }

    fn parse(json: &str) -> Result<Option<SignedDuration>, serde_json::Error> {
        serde_json::from_str::<Reported>(json).map(|r| r.clock_offset_ms)
    }

    #[test]
    fn reported_offsets_are_bounded_numbers() {
        assert_eq!(
            parse(r#"{"clock_offset_ms": -20000.125}"#).unwrap(),
            Some(SignedDuration::from_micros(-20_000_125))
        );
        assert_eq!(parse(r#"{"clock_offset_ms": null}"#).unwrap(), None);
        assert_eq!(parse("{}").unwrap(), None);
        for bad in [
            r#"{"clock_offset_ms": 1e300}"#,
            r#"{"clock_offset_ms": -31622400000.001}"#,
            r#"{"clock_offset_ms": "7000"}"#,
            r#"{"clock_offset_ms": true}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // The cap a worker reports when its clock is further off is itself accepted.
        for cap in [MAX_REPORTED_OFFSET, -MAX_REPORTED_OFFSET] {
            let json = serde_json::to_string(&Reported {
                clock_offset_ms: Some(cap),
            })
            .unwrap();
            assert_eq!(parse(&json).unwrap(), Some(cap), "{json}");
        }
    }
}
