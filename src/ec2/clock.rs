//! The time requests are signed with, corrected by what EC2's answers show this clock to be off by.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

/// The time requests are signed with: this machine's clock, corrected by what EC2's answers showed it to be
/// off by. Early in boot, before chrony steps the clock, it can be off by hours, and EC2 refuses a request
/// signed more than 5 minutes away from its own time (RequestExpired, RequestTimeTooSkewed). The SDK
/// corrects for that only inside its own retries, which are off here (`Patient` retries), so the
/// correction is kept for the whole process: one clock, one offset.
#[derive(Debug)]
pub(super) struct Clock;

/// Milliseconds to add to the system clock.
static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);
/// Corrections made so far: a skew that does not go away after `MAX_CLOCK_CORRECTIONS` is the clock's fault
/// (or EC2's), and the run ends with the clock advice.
static CLOCK_CORRECTIONS: AtomicU32 = AtomicU32::new(0);
const MAX_CLOCK_CORRECTIONS: u32 = 2;
static CLOCK_RETRIES_AFTER_CORRECTION: AtomicU32 = AtomicU32::new(0);
/// A smaller difference between EC2's `Date` and this clock cannot be why EC2 refused the time.
const MIN_CLOCK_CORRECTION: Duration = Duration::from_secs(60);

impl Clock {
    pub(super) fn now() -> SystemTime {
        let offset = CLOCK_OFFSET_MS.load(Ordering::Relaxed);
        let now = SystemTime::now();
        if offset >= 0 {
            now + Duration::from_millis(offset.unsigned_abs())
        } else {
            now - Duration::from_millis(offset.unsigned_abs())
        }
    }

    /// EC2 refused the request's time and answered with its own in `date` (an HTTP date): corrects the clock
    /// by the difference and says so, unless the difference is too small to be the reason or the clock has
    /// been corrected as often as it may be. Whether it corrected.
    pub(super) fn correct(date: Option<&str>) -> bool {
        let Some(server) = date
            .and_then(|d| aws_smithy_types::DateTime::from_str(d, aws_smithy_types::date_time::Format::HttpDate).ok())
            .and_then(|d| SystemTime::try_from(d).ok())
        else {
            return false;
        };
        let ours = Clock::now();
        let (ahead, skew) = match server.duration_since(ours) {
            Ok(d) => (true, d),
            Err(e) => (false, e.duration()),
        };
        if skew > Duration::from_secs(10 * 365 * 86_400) {
            return false;
        }
        if skew < MIN_CLOCK_CORRECTION {
            // This call was signed before another one corrected the clock (a fleet's regions start side by
            // side): try again with the corrected clock, a bounded number of times in all.
            return CLOCK_CORRECTIONS.load(Ordering::Relaxed) > 0
                && CLOCK_RETRIES_AFTER_CORRECTION.fetch_add(1, Ordering::Relaxed) < 64;
        }
        if CLOCK_CORRECTIONS.fetch_add(1, Ordering::Relaxed) >= MAX_CLOCK_CORRECTIONS {
            return false;
        }
        let ms = i64::try_from(skew.as_millis()).unwrap_or(i64::MAX);
        CLOCK_OFFSET_MS.fetch_add(if ahead { ms } else { -ms }, Ordering::Relaxed);
        tracing::warn!(
            "EC2 refused the request's time: this clock is {:.0} s {} EC2's (the Date of its answer); signing with \
             EC2's time from now on and trying again. Set the clock right (`chronyc tracking`, `timedatectl`)",
            skew.as_secs_f64(),
            if ahead { "behind" } else { "ahead of" }
        );
        true
    }
}

impl aws_smithy_async::time::TimeSource for Clock {
    fn now(&self) -> SystemTime {
        Clock::now()
    }
}
