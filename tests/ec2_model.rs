//! One model of what EC2 does that both tiers of fakes need: its token buckets (a request budget) and how
//! DescribeInstances matches a filter. The unit tests' `FakeAccount` (src/fakes.rs, on tokio's paused clock)
//! and the simulator (tests/simulator, on the wall clock) each include this file as a module of their own,
//! so they cannot disagree about either. Plain std, besides the two clocks.

use std::time::Duration;

/// An instant of the clock a fake runs on.
pub trait Moment: Copy {
    /// How long after `earlier` this is (zero if before).
    fn since(self, earlier: Self) -> Duration;
}

impl Moment for std::time::Instant {
    fn since(self, earlier: Self) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl Moment for tokio::time::Instant {
    fn since(self, earlier: Self) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// A token bucket, as EC2 budgets requests per account and region: `tokens` of at most `burst`, refilled at
/// `rate` a second; a request finds a token, or is throttled.
#[derive(Debug, Clone)]
pub struct Bucket<I> {
    burst: f64,
    rate: f64,
    tokens: f64,
    at: I,
}

impl<I: Moment> Bucket<I> {
    /// Full at `now`.
    pub fn new((burst, rate): (f64, f64), now: I) -> Self {
        Bucket { burst, rate, tokens: burst, at: now }
    }

    /// Takes one token if there is one; time runs `scale` times as fast for the refill.
    pub fn take(&mut self, now: I, scale: f64) -> bool {
        self.tokens = (self.tokens + now.since(self.at).as_secs_f64() * self.rate * scale).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a DescribeInstances filter sees of an instance.
pub struct Seen<'a> {
    pub id: &'a str,
    /// `running`, `stopped`, ...
    pub state: &'a str,
    pub tags: &'a [(String, String)],
    pub hop_limit: Option<i64>,
    pub http_endpoint: Option<&'a str>,
    pub http_tokens: Option<&'a str>,
}

/// A filter as EC2 matches it: any of its values; `tag:KEY` on that tag's value, `tag-key` on the keys. A
/// filter EC2 does not know is an error, with EC2's message.
pub fn matches(i: &Seen, name: &str, values: &[String]) -> Result<bool, String> {
    let any = |have: Option<String>| have.is_some_and(|h| values.contains(&h));
    Ok(match name {
        "instance-id" => any(Some(i.id.to_string())),
        "instance-state-name" => any(Some(i.state.to_string())),
        "tag-key" => i.tags.iter().any(|(k, _)| values.contains(k)),
        "metadata-options.http-put-response-hop-limit" => any(i.hop_limit.map(|h| h.to_string())),
        "metadata-options.http-endpoint" => any(i.http_endpoint.map(str::to_string)),
        "metadata-options.http-tokens" => any(i.http_tokens.map(str::to_string)),
        tag if tag.starts_with("tag:") => i.tags.iter().any(|(k, v)| k == &tag[4..] && values.contains(v)),
        other => return Err(format!("The filter '{other}' is invalid")),
    })
}
