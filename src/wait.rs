//! Every wait of a run: the backoff between retries of a throttled or failed call, and the schedule of the
//! polls that wait for `applied`. Each is a small type with its parameters, jittered, and every loop that
//! uses one ends at the run's deadline. Instances that boot together run the same schedule at the same
//! moment; jitter is what spreads their calls over EC2's shared, per-account request budget.

use std::time::Duration;
use tokio::time::Instant;

/// A uniformly random fraction in `[0, 1)`; the one source of randomness in the program, so tests can bound
/// its effect, or fix it (`seed`).
fn unit() -> f64 {
    fastrand::f64()
}

/// Makes this thread's draws repeat from `seed` (fastrand's generator is per thread, as each test is).
#[cfg(test)]
pub fn seed(seed: u64) {
    fastrand::seed(seed);
}

/// `interval`, give or take `spread` (a fraction): looks repeated by many nodes started together (a node group,
/// a DaemonSet rolled out at once) drift apart instead of calling at the same moment.
pub fn around(interval: Duration, spread: f64) -> Duration {
    interval.mul_f64(1.0 - spread + 2.0 * spread * unit())
}

/// The wait after `failures` failures in a row of a look repeated every `interval`: the interval doubled each
/// time, at most `cap`, drawn from the upper half of that window (equal jitter), so a failing look backs off
/// at once and still spreads out.
pub fn retreat(interval: Duration, failures: u32, cap: Duration) -> Duration {
    let window = interval.saturating_mul(1u32 << failures.min(16)).min(cap);
    window.mul_f64(0.5 + 0.5 * unit())
}

/// The data plane's probes, while a change takes effect: each waits `probe` for the token answer, and the next
/// starts up to `jitter` later, so the probes come about every 200 to 300 ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probes {
    pub probe: Duration,
    pub jitter: Duration,
}

impl Probes {
    pub const DATA_PLANE: Probes = Probes { probe: Duration::from_millis(200), jitter: Duration::from_millis(100) };

    /// When the probe after one that started at `started` begins.
    pub fn next(&self, started: Instant) -> Instant {
        started + self.probe + self.jitter.mul_f64(unit())
    }
}

/// How long one EC2 call is retried while EC2 throttles it or fails (then it fails, exit 8), unless the run's
/// `--timeout` comes sooner. Throttling by a shared budget passes in seconds; five minutes of it means
/// something else is spending the account's budget.
pub const CALL_PATIENCE: Duration = Duration::from_secs(300);

/// Until when one call made now is retried: `CALL_PATIENCE`, or the run's deadline if sooner.
pub fn patience(deadline: Instant) -> Instant {
    (Instant::now() + CALL_PATIENCE).min(deadline)
}

/// Exponential backoff with jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): the n-th retry
/// waits a uniformly random time in the top `1 - rest` share of the window `min(cap, base * 2^n)`: `rest` 0 is
/// full jitter (anywhere in the window), 1/2 equal jitter (the window's second half).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// The share of each window always waited.
    pub rest: f64,
}

impl Backoff {
    /// Throttling: EC2's budget is per account and region, shared by every instance that booted with this
    /// one. ModifyInstanceMetadataOptions refills 5 tokens a second, so 500 instances need 80 s whatever they
    /// do; what the backoff decides is how many throttled calls they spend meanwhile, and how long the last
    /// one waits after the budget could have taken it. Equal jitter in windows of 10, 20 and then 24 s (waits of
    /// 5 to 10 s, 10 to 20 s, then 12 to 24 s): a throttled answer says the budget is spent now, so a retry in
    /// the next few seconds (which full jitter draws as often as any other wait) is mostly throttled again.
    /// Chosen with the storm benchmarks and an event model of them (benches/storm_model.py; BENCHMARKS.md,
    /// "Boot storm" and "Sensing from IMDS"): at N = 500 the model gives 3.4 calls per instance at 1.12x the
    /// floor with sensing and 6.0 at 1.18x without, where full jitter in windows of 8, 16 and 32 s gave 3.9 at
    /// 1.25x and 7.0 at 1.21x; a larger base spends fewer calls but stretches storms of a few hundred, a larger
    /// cap stretches the tail.
    pub const THROTTLED: Backoff = Backoff { base: Duration::from_secs(10), cap: Duration::from_secs(24), rest: 0.5 };
    /// A 5xx answer, a timeout or a refused connection: usually brief, and not a shared budget.
    pub const TRANSIENT: Backoff = Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(8), rest: 0.0 };
    /// The metadata service at early boot (connection refused until the network is up) or throttling (429).
    pub const METADATA: Backoff = Backoff { base: Duration::from_millis(200), cap: Duration::from_secs(4), rest: 0.0 };

    /// The upper bound of the n-th wait (0-based), before jitter.
    pub fn window(&self, attempt: u32) -> Duration {
        self.base.saturating_mul(1u32 << attempt.min(20)).min(self.cap)
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        self.window(attempt).mul_f64(self.rest + (1.0 - self.rest) * unit())
    }
}

/// When to ask EC2 again whether a change is `applied`. Chosen from two constraints of the storm issue: a
/// change that EC2 applies about 2 s after accepting it must cost at most two confirming polls on a quiet
/// account, and be noticed within 1 s of being applied. So the first poll comes 2.0 to 2.5 s after the
/// change (one poll when EC2 took up to that long), the second 0.6 to 0.9 s later (noticed within 0.9 s when
/// it took a little longer), and later ones grow by half up to `cap`, since a change still pending after
/// 3 s may take much longer and every poll spends the account's DescribeInstances budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSchedule {
    /// The first poll, drawn uniformly from `[first, first + first_spread)` after the change.
    pub first: Duration,
    pub first_spread: Duration,
    /// The second interval, before jitter; later ones grow by `growth` up to `cap`.
    pub then: Duration,
    pub growth: f64,
    pub cap: Duration,
    /// Each interval after the first is scaled by a random factor in `[1 - jitter, 1 + jitter)`.
    pub jitter: f64,
}

impl PollSchedule {
    pub const APPLIED: PollSchedule = PollSchedule {
        first: Duration::from_millis(2000),
        first_spread: Duration::from_millis(500),
        then: Duration::from_millis(750),
        growth: 1.5,
        cap: Duration::from_secs(10),
        jitter: 0.2,
    };

    /// The wait before the n-th poll (0-based), before jitter: its centre.
    pub fn nominal(&self, poll: u32) -> Duration {
        match poll {
            0 => self.first + self.first_spread / 2,
            n => self.then.mul_f64(self.growth.powi((n - 1).min(30) as i32)).min(self.cap),
        }
    }

    pub fn delay(&self, poll: u32) -> Duration {
        match poll {
            0 => self.first + self.first_spread.mul_f64(unit()),
            n => self.nominal(n).mul_f64(1.0 - self.jitter + 2.0 * self.jitter * unit()),
        }
    }
}

/// A client-side token bucket that paces one kind of call to the budget EC2 documents for it (per account
/// and region: `burst` calls at once, refilled at `rate` a second). The account's bucket is shared with
/// everything else the account runs, so pacing cannot rule throttling out: each throttled answer halves the
/// rate (down to a sixteenth) and empties the bucket, and each accepted call wins back a twentieth of the
/// full rate (additive increase, multiplicative decrease, as TCP shares a link). One per region and action;
/// the runtime is single-threaded, so `Cell`s suffice.
#[derive(Debug)]
pub struct Pace {
    burst: f64,
    max_rate: f64,
    rate: std::cell::Cell<f64>,
    /// (tokens, when they were counted)
    state: std::cell::Cell<(f64, tokio::time::Instant)>,
}

impl Pace {
    /// How much sooner a request may arrive after the one before it than it was sent.
    const JITTER: Duration = Duration::from_millis(200);

    /// Paced a little under `burst`: a request can reach EC2 sooner after the one before it than it left here
    /// (latency varies), and once both buckets are empty that is a throttle. The headroom is what `rate`
    /// refills in `JITTER` (at least one token): at EC2's 5 a second, one token.
    pub fn new(burst: u32, rate: f64) -> Self {
        let headroom = (rate * Self::JITTER.as_secs_f64()).ceil().max(1.0);
        let burst = (f64::from(burst) - headroom).max(1.0);
        Pace {
            burst,
            max_rate: rate,
            rate: std::cell::Cell::new(rate),
            state: std::cell::Cell::new((burst, tokio::time::Instant::now())),
        }
    }

    /// The rate now, a second.
    #[cfg(test)]
    pub fn rate(&self) -> f64 {
        self.rate.get()
    }

    /// Counts the tokens refilled up to now, at the current rate.
    fn refill(&self) -> (f64, tokio::time::Instant) {
        let now = tokio::time::Instant::now();
        let (tokens, at) = self.state.get();
        let tokens = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate.get()).min(self.burst);
        (tokens, now)
    }

    /// Waits until a call may go and spends its token; `false`, at once, when the token would come only after
    /// `until`: the call is not to be sent.
    pub async fn acquire_before(&self, until: tokio::time::Instant) -> bool {
        loop {
            let (tokens, now) = self.refill();
            if tokens >= 1.0 {
                self.state.set((tokens - 1.0, now));
                return true;
            }
            self.state.set((tokens, now));
            let wait = self.until_token(tokens);
            if now + wait > until {
                return false;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// How long until a whole token is there, from `tokens`, at the current rate: at least a microsecond. A
    /// deficit of a hair (floating point leaves 0.999999999999 tokens) gives a wait that rounds to nothing, and a
    /// sleep of nothing does not move a paused clock (the tests'): the bucket would be counted again at the same
    /// instant, forever. A unit test spun for over an hour on one such draw.
    fn until_token(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64((1.0 - tokens) / self.rate.get()).max(Duration::from_micros(1))
    }

    /// The pace now, and whether throttling has slowed it below the budget's.
    pub fn slowed(&self) -> (f64, bool) {
        (self.rate.get(), self.rate.get() < self.max_rate)
    }

    /// EC2 throttled a call: something else spends the account's budget too.
    pub fn throttled(&self) {
        let (_, now) = self.refill();
        self.state.set((0.0, now));
        self.rate.set((self.rate.get() / 2.0).max(self.max_rate / 16.0));
        tracing::debug!("throttled: pacing at {:.2} calls a second", self.rate.get());
    }

    /// EC2 accepted a call.
    pub fn accepted(&self) {
        let (tokens, now) = self.refill();
        self.state.set((tokens, now));
        self.rate.set((self.rate.get() + self.max_rate / 20.0).min(self.max_rate));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_are_spread_and_failures_back_off_to_the_cap() {
        let i = Duration::from_secs(60);
        let draws: Vec<Duration> = (0..2000).map(|_| around(i, 0.1)).collect();
        assert!(draws.iter().all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)));
        assert!(
            draws.iter().any(|d| *d < Duration::from_secs(56)) && draws.iter().any(|d| *d > Duration::from_secs(64))
        );
        let cap = Duration::from_secs(900);
        for _ in 0..200 {
            let first = retreat(i, 1, cap);
            assert!(first >= Duration::from_secs(60) && first <= Duration::from_secs(120), "{first:?}");
            let late = retreat(i, 30, cap);
            assert!(late >= cap / 2 && late <= cap, "{late:?}");
        }
    }

    /// A seeded thread draws the same waits again: what a test of a schedule can rely on.
    #[test]
    fn a_seed_repeats_every_draw() {
        let draw = || {
            let b = Backoff::THROTTLED;
            (b.delay(3), PollSchedule::APPLIED.delay(2), around(Duration::from_secs(60), 0.1))
        };
        seed(27);
        let first = draw();
        seed(27);
        assert_eq!(draw(), first);
        seed(28);
        assert_ne!(draw(), first);
    }

    #[tokio::test(start_paused = true)]
    async fn data_plane_probes_come_every_200_to_300_ms() {
        let start = Instant::now();
        for _ in 0..500 {
            let next = Probes::DATA_PLANE.next(start) - start;
            assert!(next >= Duration::from_millis(200) && next <= Duration::from_millis(300), "{next:?}");
        }
    }

    #[test]
    fn full_jitter_stays_inside_a_doubling_capped_window() {
        let b = Backoff { base: Duration::from_secs(1), cap: Duration::from_secs(10), rest: 0.0 };
        assert_eq!(b.window(0), Duration::from_secs(1));
        assert_eq!(b.window(1), Duration::from_secs(2));
        assert_eq!(b.window(3), Duration::from_secs(8));
        assert_eq!(b.window(4), Duration::from_secs(10));
        assert_eq!(b.window(u32::MAX), Duration::from_secs(10));
        let delays: Vec<Duration> = (0..2000).map(|_| b.delay(5)).collect();
        assert!(delays.iter().all(|d| *d < Duration::from_secs(10)));
        // Full jitter: the draws cover the window, not a band at its top.
        assert!(delays.iter().any(|d| *d < Duration::from_secs(1)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(9)));
    }

    /// Throttling's equal jitter: never sooner than half the window, which doubles from 10 s up to 24 s.
    #[test]
    fn a_throttled_call_waits_at_least_half_its_window() {
        let b = Backoff::THROTTLED;
        let windows: Vec<u64> = (0..4).map(|n| b.window(n).as_secs()).collect();
        assert_eq!(windows, [10, 20, 24, 24]);
        for n in 0..4 {
            let delays: Vec<Duration> = (0..2000).map(|_| b.delay(n)).collect();
            assert!(delays.iter().all(|d| *d >= b.window(n) / 2 && *d < b.window(n)), "{n}");
            assert!(delays.iter().any(|d| *d < b.window(n).mul_f64(0.55)), "{n}: the whole upper half is drawn");
            assert!(delays.iter().any(|d| *d > b.window(n).mul_f64(0.95)), "{n}");
        }
    }

    /// Polls at the running sums of the delays, for a change applied `applied` after it was accepted:
    /// (how many polls saw it, how long after `applied` the first one that did came).
    fn notice(schedule: &PollSchedule, applied: Duration) -> (u32, Duration) {
        let mut t = Duration::ZERO;
        let mut polls = 0;
        loop {
            t += schedule.delay(polls);
            polls += 1;
            if t >= applied {
                return (polls, t - applied);
            }
        }
    }

    #[test]
    fn a_change_applied_after_two_seconds_costs_at_most_two_polls_and_is_seen_within_a_second() {
        for _ in 0..2000 {
            let (polls, late) = notice(&PollSchedule::APPLIED, Duration::from_secs(2));
            assert!(polls <= 2, "{polls} polls");
            assert!(late <= Duration::from_secs(1), "seen {late:?} after it applied");
        }
        // A little slower than 2 s is still seen within a second, with two polls at most.
        for applied_ms in [2100, 2300, 2600] {
            for _ in 0..500 {
                let (polls, late) = notice(&PollSchedule::APPLIED, Duration::from_millis(applied_ms));
                assert!(polls <= 2 && late <= Duration::from_secs(1), "{applied_ms} ms: {polls} polls, {late:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pace_spends_the_burst_then_goes_at_the_rate() {
        let pace = Pace::new(101, 5.0);
        let start = tokio::time::Instant::now();
        let far = start + Duration::from_secs(3600);
        for _ in 0..100 {
            assert!(pace.acquire_before(far).await);
        }
        assert!(start.elapsed() < Duration::from_millis(1), "the burst, less one token of headroom, goes at once");
        for _ in 0..50 {
            assert!(pace.acquire_before(far).await);
        }
        let took = start.elapsed().as_secs_f64();
        assert!((9.9..=10.1).contains(&took), "50 more at 5 a second: {took} s");
    }

    /// A hair short of a token: the wait is still a moment (it rounded to nothing, and a paused clock never moved),
    /// and the token comes.
    #[tokio::test(start_paused = true)]
    async fn a_hair_short_of_a_token_still_waits_a_moment() {
        let pace = Pace::new(2, 5.0);
        assert_eq!(pace.until_token(1.0 - 1e-12), Duration::from_micros(1));
        assert!(pace.until_token(0.0) >= Duration::from_millis(199));
        let now = tokio::time::Instant::now();
        pace.state.set((1.0 - 1e-12, now));
        let far = now + Duration::from_secs(3600);
        let got = tokio::time::timeout(Duration::from_secs(1), pace.acquire_before(far)).await;
        assert_eq!(got, Ok(true));
        assert!(now.elapsed() <= Duration::from_millis(1), "{:?}", now.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn pace_halves_on_a_throttle_and_wins_the_rate_back_call_by_call() {
        let pace = Pace::new(2, 4.0);
        pace.throttled();
        assert_eq!(pace.rate(), 2.0);
        for _ in 0..10 {
            pace.throttled();
        }
        assert_eq!(pace.rate(), 0.25, "never below a sixteenth");
        let start = tokio::time::Instant::now();
        assert_eq!(pace.slowed(), (0.25, true));
        // A turn that would come after the bound is refused at once, and spends nothing.
        assert!(!pace.acquire_before(start + Duration::from_secs(3)).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(pace.acquire_before(start + Duration::from_secs(5)).await);
        assert!(start.elapsed() >= Duration::from_secs(4), "the bucket was emptied: one token at 0.25 a second");
        for _ in 0..100 {
            pace.accepted();
        }
        assert_eq!(pace.rate(), 4.0, "back to the full rate, never above it");
        assert!(!pace.slowed().1);
    }

    #[test]
    fn polls_grow_to_the_cap_and_stay_there() {
        let s = PollSchedule::APPLIED;
        assert_eq!(s.nominal(1), Duration::from_millis(750));
        assert!(s.nominal(2) > s.nominal(1));
        assert_eq!(s.nominal(20), Duration::from_secs(10));
        assert_eq!(s.nominal(u32::MAX), Duration::from_secs(10));
        for _ in 0..1000 {
            let d = s.delay(20);
            assert!(d >= Duration::from_secs(8) && d < Duration::from_secs(12), "{d:?}");
            let d = s.delay(0);
            assert!(d >= Duration::from_millis(2000) && d < Duration::from_millis(2500), "{d:?}");
        }
    }
}
