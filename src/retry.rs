//! The EC2 caller every command shares: each call retried with jittered backoff while EC2 throttles or
//! fails in passing, until the deadline it is given; a change EC2 may have carried out looked up before it is
//! sent again; the fleet's modifies paced to the account's budget. Below the commands and the runs.

use crate::ec2::{Described, Ec2, Filter, Fleet, Modified};
use crate::error::{Error, FailureKind, Result};
use crate::plan::{Change, InstanceState, MetadataOptions};
use crate::wait::Pace;
use std::cell::Cell;
use std::collections::HashSet;
use tokio::time::Instant;

/// An EC2 side that takes throttling and passing failures as normal: each call is retried with full jitter
/// (`Failure::retry` says with which backoff, or that retrying cannot help) until the deadline it is given,
/// and only then fails, with what EC2 answered last. A change that EC2 may have carried out (a timeout or a
/// 5xx after it was sent) is looked up before it is sent again, so one run never sends an accepted change
/// twice.
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

    /// `call`, retried as every call here is, until `until`.
    pub async fn retry<T, F: Future<Output = Result<T>>>(
        &self,
        operation: &'static str,
        until: Instant,
        mut call: impl FnMut(&'a E) -> F,
    ) -> Result<T> {
        let mut attempt = 0;
        let start = Instant::now();
        loop {
            match call(self.inner).await {
                Ok(value) => return Ok(value),
                Err(err) => self.back_off(operation, err, &mut attempt, start, until).await?,
            }
        }
    }
}

impl<E: Ec2> Patient<'_, E> {
    pub async fn describe(&self, instance_id: &str, until: Instant) -> Result<MetadataOptions> {
        Ok(self.describe_instance(instance_id, until).await?.1)
    }

    pub async fn describe_instance(
        &self,
        instance_id: &str,
        until: Instant,
    ) -> Result<(InstanceState, MetadataOptions)> {
        let mut attempt = 0;
        let start = Instant::now();
        loop {
            let err = match self.inner.describe_instance(instance_id).await {
                Ok(found) => return Ok(found),
                Err(err) => err,
            };
            self.back_off("DescribeInstances", err, &mut attempt, start, until).await?;
        }
    }

    pub async fn modify(&self, instance_id: &str, change: &Change, dry_run: bool, until: Instant) -> Result<Modified> {
        let mut attempt = 0;
        let start = Instant::now();
        loop {
            if let Some(pace) = self.pace {
                if !pace.acquire_before(until).await {
                    let (rate, throttled) = pace.slowed();
                    let operation = "ModifyInstanceMetadataOptions";
                    return Err(Error::NotSent { operation, rate, throttled, limit: None });
                }
            }
            let err = match self.inner.modify(instance_id, change, dry_run).await {
                Ok(modified) => {
                    if let Some(pace) = self.pace {
                        pace.accepted();
                    }
                    return Ok(modified);
                }
                Err(err) => err,
            };
            let maybe_done = matches!(&err, Error::Ec2 { failure, .. } if failure.maybe_done());
            if let (Some(pace), Error::Ec2 { failure, .. }) = (self.pace, &err) {
                if failure.kind == FailureKind::Throttled {
                    pace.throttled();
                }
            }
            self.back_off("ModifyInstanceMetadataOptions", err, &mut attempt, start, until).await?;
            if maybe_done && !dry_run {
                let now = self.describe(instance_id, until).await?;
                if change.is_reflected_in(&now) {
                    tracing::debug!("the change was carried out although its answer was lost; not sending it again");
                    return Ok(Modified::Accepted(now));
                }
            }
        }
    }
}

impl<E> Patient<'_, E> {
    /// Waits before the next attempt, or returns the error when retrying cannot help or `until` would pass.
    async fn back_off(
        &self,
        operation: &'static str,
        err: Error,
        attempt: &mut u32,
        start: Instant,
        until: Instant,
    ) -> Result<()> {
        let Error::Ec2 { failure, .. } = &err else { return Err(err) };
        let Some(backoff) = failure.retry() else { return Err(err) };
        let delay = backoff.delay(*attempt);
        if Instant::now() + delay >= until {
            return Err(Error::GaveUp {
                operation,
                waited: start.elapsed(),
                last: Box::new(failure.clone()),
                limit: None,
            });
        }
        if failure.kind == FailureKind::Throttled && !self.told.replace(true) {
            tracing::info!(
                "EC2 is throttling this account's requests ({}): backing off with jitter until the deadline",
                failure.code.as_deref().unwrap_or("throttled")
            );
        } else {
            tracing::debug!("ec2:{operation}: {failure}; retrying in {:.2} s", delay.as_secs_f64());
        }
        tokio::time::sleep(delay).await;
        *attempt += 1;
        Ok(())
    }
}

/// The most pages one listing reads: 2,000 pages of up to 1,000 instances, twenty times the largest accounts'
/// instance counts in a region. EC2 can answer a filtered page with fewer instances than asked for, even
/// none, and a next token, so the count of instances cannot bound a listing; this bounds one whose tokens
/// never repeat and never end (at EC2's 20 DescribeInstances a second, under two minutes of calls).
pub const MAX_PAGES: usize = 2_000;

impl<E: Fleet> Patient<'_, E> {
    /// Every page of the instances that pass `filters`, appended to `into` as they come; each page's retries end
    /// at `until()`. On a failure, the pages read so far stay in `into`. A page token seen before in the same
    /// listing (A, B, A, ...) would page forever: it ends the listing with an error, as does a listing longer
    /// than `MAX_PAGES`. Tokens are remembered by a hash, never shown.
    pub async fn every_page(
        &self,
        filters: &[Filter],
        until: impl Fn() -> Instant,
        into: &mut Vec<Described>,
    ) -> Result<()> {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let mut seen = HashSet::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self.retry("DescribeInstances", until(), |ec2| ec2.select(filters, next.as_deref())).await?;
            into.extend(page.instances);
            match page.next {
                None => return Ok(()),
                Some(token) if !seen.insert(hasher.hash_one(&token)) => {
                    return Err(endless_listing(&format!(
                        "EC2 answered with a page token it had already given in this listing, after {} pages: the \
                         listing would never end",
                        seen.len()
                    )));
                }
                Some(token) => next = Some(token),
            }
        }
        Err(endless_listing(&format!("the listing did not end within {MAX_PAGES} pages")))
    }
}

fn endless_listing(what: &str) -> Error {
    Error::Ec2 {
        operation: "DescribeInstances",
        failure: crate::error::Failure {
            message: Some(what.to_string()),
            ..crate::error::Failure::new(crate::error::FailureKind::Malformed)
        },
    }
}
