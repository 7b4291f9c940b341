//! The one retry loop of the program (`retry`): every AWS call (EC2, STS, Organizations) and the identity
//! read from IMDS go through it, each with its own classification of what may heal and its own words when it
//! gives up. Over it, the AWS caller every command shares (`Patient`): each call retried with jittered backoff
//! while the service throttles or fails in passing, until the deadline it is given; a change EC2 may have
//! carried out looked up before it is sent again; the fleet's modifies paced to the account's budget. Below
//! the commands and the runs.

use crate::ec2::failures::FailureKind;
use crate::ec2::failures::{Failure, Service};
use crate::ec2::{Described, Ec2, Filter, Fleet, Modified};
use crate::error::{Error, Result};
use crate::plan::{Change, MetadataOptions};
use crate::wait::{Backoff, Pace};
use std::cell::Cell;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

/// `call` until it succeeds, or fails in a way `backoff` says retrying cannot help (that error is returned as
/// it is), or the next wait would end at or after `until`: then `give_up` makes the error returned of the last
/// failure and the time spent. Each wait is `backoff`'s jittered delay for the attempt; `retrying` is told of
/// each before it starts (to say so).
pub async fn retry<T, F: Future<Output = Result<T>>>(
    until: Instant,
    backoff: impl Fn(&Error) -> Option<Backoff>,
    mut call: impl FnMut() -> F,
    mut retrying: impl FnMut(&Error, Duration),
    give_up: impl FnOnce(Error, Duration) -> Error,
) -> Result<T> {
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        let err = match call().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let Some(backoff) = backoff(&err) else { return Err(err) };
        let delay = backoff.delay(attempt);
        if Instant::now() + delay >= until {
            return Err(give_up(err, start.elapsed()));
        }
        retrying(&err, delay);
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// An AWS side that takes throttling and passing failures as normal: each call is retried with jittered backoff
/// (`Failure::retry` says which, or that retrying cannot help) until the deadline it is given,
/// and only then fails, with what the service answered last. A change that EC2 may have carried out (a
/// timeout or a 5xx after it was sent) is looked up before it is sent again, so one run never sends an
/// accepted change twice. `E` is the client: an EC2 side, or an STS or Organizations client.
pub struct Patient<'a, E> {
    inner: &'a E,
    /// Throttling is said once, at INFO; each retry after that at DEBUG.
    told: Cell<bool>,
    /// The fleet's pace for ModifyInstanceMetadataOptions (only `modify` uses it): every attempt, retries
    /// included, waits for it, and each throttled answer slows it down.
    pace: Option<&'a Pace>,
}

impl<'a, E> Patient<'a, E> {
    pub fn new(inner: &'a E) -> Self {
        Patient { inner, told: Cell::new(false), pace: None }
    }

    pub fn inner(&self) -> &'a E {
        self.inner
    }

    /// Modifies paced by `pace` (the fleet).
    pub fn paced(inner: &'a E, pace: &'a Pace) -> Self {
        Patient { pace: Some(pace), ..Self::new(inner) }
    }

    /// `call`, retried as every AWS call here is, until `until`; then `Error::GaveUp` with the last failure.
    pub async fn retry<T, F: Future<Output = Result<T>>>(
        &self,
        operation: &'static str,
        until: Instant,
        mut call: impl FnMut(&'a E) -> F,
    ) -> Result<T> {
        let backoff = |err: &Error| match err {
            Error::Call { failure, .. } => failure.retry(),
            _ => None,
        };
        let give_up = |err: Error, waited: Duration| match err {
            Error::Call { failure, .. } => Error::GaveUp { operation, waited, last: Box::new(failure), limit: None },
            other => other,
        };
        retry(until, backoff, || call(self.inner), |err, delay| self.tell(operation, err, delay), give_up).await
    }

    /// Says that a call is retried: throttling once at INFO (it is the account's, not this call's), the rest
    /// at DEBUG.
    fn tell(&self, operation: &'static str, err: &Error, delay: Duration) {
        let Error::Call { failure, .. } = err else { return };
        if failure.kind == FailureKind::Throttled && !self.told.replace(true) {
            tracing::info!(
                "{} is throttling this account's requests ({}): backing off with jitter until the deadline",
                failure.service,
                failure.code.as_deref().unwrap_or("throttled")
            );
        } else {
            tracing::debug!(
                "{}:{operation}: {failure}; retrying in {:.2} s",
                failure.service.prefix(),
                delay.as_secs_f64()
            );
        }
    }
}

impl<E: Ec2> Patient<'_, E> {
    pub async fn describe(&self, instance_id: &str, until: Instant) -> Result<MetadataOptions> {
        Ok(self.describe_instance(instance_id, until).await?.options)
    }

    pub async fn describe_instance(&self, instance_id: &str, until: Instant) -> Result<Described> {
        self.retry("DescribeInstances", until, |ec2| ec2.describe_instance(instance_id)).await
    }

    /// `change`, sent once: a retry after a failure that EC2 may have carried out (a timeout, a 5xx, a cut
    /// answer) first reads the instance, and sends nothing where the change is there.
    pub async fn modify(&self, instance_id: &str, change: &Change, dry_run: bool, until: Instant) -> Result<Modified> {
        let operation = "ModifyInstanceMetadataOptions";
        let maybe_done = Cell::new(false);
        self.retry(operation, until, |ec2| {
            let maybe_done = &maybe_done;
            async move {
                if maybe_done.take() && !dry_run {
                    let now = self.describe(instance_id, until).await?;
                    if change.is_reflected_in(&now) {
                        tracing::debug!(
                            "the change was carried out although its answer was lost; not sending it again"
                        );
                        return Ok(Modified::Accepted(now));
                    }
                }
                if let Some(pace) = self.pace {
                    if !pace.acquire_before(until).await {
                        let (rate, throttled) = pace.slowed();
                        return Err(Error::NotSent { operation, rate, throttled, limit: None });
                    }
                }
                let result = ec2.modify(instance_id, change, dry_run).await;
                match (&result, self.pace) {
                    (Ok(_), Some(pace)) => pace.accepted(),
                    (Err(Error::Call { failure, .. }), pace) => {
                        maybe_done.set(failure.maybe_done());
                        if let (FailureKind::Throttled, Some(pace)) = (failure.kind, pace) {
                            pace.throttled();
                        }
                    }
                    _ => {}
                }
                result
            }
        })
        .await
    }
}

/// The most pages one listing reads: 2,000 pages of up to 1,000 instances, twenty times the largest accounts'
/// instance counts in a region. EC2 can answer a filtered page with fewer instances than asked for, even
/// none, and a next token, so the count of instances cannot bound a listing; this bounds one whose tokens
/// never repeat and never end (at EC2's 20 DescribeInstances a second, under two minutes of calls).
pub const MAX_PAGES: usize = 2_000;

impl<E: Fleet> Patient<'_, E> {
    /// Every page of the instances that pass `filters`, appended to `into` as they come; each page's retries end
    /// at `until()`. On a failure, the pages read so far stay in `into`.
    pub async fn every_page(
        &self,
        filters: &[Filter],
        until: impl Fn() -> Instant,
        into: &mut Vec<Described>,
    ) -> Result<()> {
        let until = &until;
        pages(Service::Ec2, "DescribeInstances", MAX_PAGES, into, |next| async move {
            let page = self.retry("DescribeInstances", until(), |ec2| ec2.select(filters, next.as_deref())).await?;
            Ok((page.instances, page.next))
        })
        .await
    }
}

/// Every page of one listing of `service`'s, appended to `into` as they come: `page` reads the page a token
/// names (retried as its caller retries it). A page token seen before in the same listing (A, B, A, ...) would
/// page forever: it ends the listing with an error, as does a listing longer than `max_pages`. Tokens are
/// remembered by a hash, never shown.
pub async fn pages<T, F: Future<Output = Result<(Vec<T>, Option<String>)>>>(
    service: Service,
    operation: &'static str,
    max_pages: usize,
    into: &mut Vec<T>,
    mut page: impl FnMut(Option<String>) -> F,
) -> Result<()> {
    use std::hash::BuildHasher;
    let hasher = std::collections::hash_map::RandomState::new();
    let mut seen = HashSet::new();
    let mut next: Option<String> = None;
    let endless = |what: String| Error::Call {
        operation,
        failure: Failure { message: Some(what), ..Failure::new(service, FailureKind::Malformed) },
    };
    for _ in 0..max_pages {
        let (items, token) = page(next.take()).await?;
        into.extend(items);
        match token {
            None => return Ok(()),
            Some(token) if !seen.insert(hasher.hash_one(&token)) => {
                return Err(endless(format!(
                    "{service} answered with a page token it had already given in this listing, after {} pages: the \
                     listing would never end",
                    seen.len()
                )));
            }
            Some(token) => next = Some(token),
        }
    }
    Err(endless(format!("the listing did not end within {max_pages} pages")))
}
