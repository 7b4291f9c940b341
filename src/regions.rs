//! Which regions a fleet or defaults run works on (as given, the default chain's, or every region enabled for
//! the account), and the one runner that works on them: side by side, each with its own EC2 client and so
//! its own budget, every result kept as it comes so that a run its deadline or a signal ends still reports
//! every region. An account is one more level above it: the same runner, once per account's credentials.

use crate::cli::RegionsArgs;
use crate::ec2::{Account, Defaults as _, Ec2Api};
use crate::error::{Error, Result};
use crate::ids::Region;
use crate::retry::Patient;
use crate::wait::patience;
use futures_util::StreamExt;
use std::cell::RefCell;
use tokio::time::Instant;

/// Which regions: those given (or the default chain's), or every region enabled for the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Regions {
    Given(Vec<Region>),
    /// The default chain's region (`AWS_REGION`, the profile's), known once the SDK has loaded.
    Default,
    All,
}

impl Regions {
    /// `--all-regions` wins over `--region` and AWS_REGION; each given region is taken once, in the order
    /// given (the same region twice would be changed twice, side by side).
    pub fn from_args(args: &RegionsArgs) -> Self {
        if args.all_regions {
            return Regions::All;
        }
        if args.region.is_empty() {
            return Regions::Default;
        }
        let mut regions: Vec<Region> = Vec::with_capacity(args.region.len());
        for region in &args.region {
            if !regions.contains(region) {
                regions.push(region.clone());
            }
        }
        Regions::Given(regions)
    }

    /// The regions to work on: as given, the default chain's, or every region enabled for the account
    /// (DescribeRegions, asked in the default chain's region, else us-east-1).
    pub async fn resolve(&self, account: &Account, deadline: Instant) -> Result<Vec<Region>> {
        let default = account
            .default_region()
            .map(|r| r.parse::<Region>().map_err(|e| Error::Usage(format!("the profile's region: {e}"))))
            .transpose()?;
        match self {
            Regions::Given(regions) => Ok(regions.clone()),
            Regions::Default => default.map(|r| vec![r]).ok_or_else(|| {
                Error::Usage(
                    "no region: give --region (several, or comma-separated), --all-regions, or set AWS_REGION or the \
                     profile's region"
                        .into(),
                )
            }),
            Regions::All => {
                let ec2 = account.ec2(default.as_deref().unwrap_or("us-east-1"));
                let regions =
                    Patient::new(&ec2).retry("DescribeRegions", patience(deadline), |ec2| ec2.regions()).await?;
                if regions.is_empty() {
                    return Err(Error::Unexpected("DescribeRegions listed no enabled region".into()));
                }
                Ok(regions)
            }
        }
    }
}

/// How many regions one run works on at once: more than AWS has, so that every region's budget is spent side
/// by side today; a bound on sockets and memory once accounts multiply the pairs.
pub const AT_ONCE: usize = 64;

/// The places of a run once known (its regions, or its accounts: `K`), and each one's result as it comes.
/// Outside the run's future, so that a run ended by its deadline or a signal (the future dropped) still has
/// every place on it, each done or not.
#[derive(Debug)]
pub struct Board<T, K = Region> {
    places: RefCell<Vec<K>>,
    done: RefCell<Vec<(K, T)>>,
}

impl<T, K> Default for Board<T, K> {
    fn default() -> Self {
        Board { places: RefCell::default(), done: RefCell::default() }
    }
}

impl<T, K: PartialEq> Board<T, K> {
    /// Every place known, in the order resolved, with its result if it has one.
    pub fn take(&self) -> Vec<(K, Option<T>)> {
        let mut done = self.done.take();
        self.places
            .take()
            .into_iter()
            .map(|place| {
                let result = done.iter().position(|(p, _)| *p == place).map(|at| done.swap_remove(at).1);
                (place, result)
            })
            .collect()
    }

    /// Whether the places are resolved (set).
    pub fn resolved(&self) -> bool {
        !self.places.borrow().is_empty()
    }

    /// The places, once resolved.
    pub fn set(&self, places: Vec<K>) {
        self.places.replace(places);
    }

    /// One place's result.
    pub fn done(&self, place: K, result: T) {
        self.done.borrow_mut().push((place, result));
    }
}

/// `work` for every region of `regions` in `account` (whose credentials sign the calls), at most `AT_ONCE` at
/// a time, each with an EC2 client of its own; the regions and each result go on `board` as they come. Fails
/// only when the regions cannot be resolved (DescribeRegions refused or answering garbage, no region given):
/// a region's own failure is its result. Several accounts are several calls, each with its account's board.
pub async fn each<T>(
    account: &Account,
    regions: &Regions,
    board: &Board<T>,
    deadline: Instant,
    work: impl AsyncFn(&Ec2Api, &Region) -> T,
) -> Result<()> {
    let regions = regions.resolve(account, deadline).await?;
    tracing::debug!(?regions, "regions");
    board.set(regions.clone());
    let work = &work;
    futures_util::stream::iter(regions)
        .map(|region| async move {
            let ec2 = account.ec2(&region);
            let result = work(&ec2, &region).await;
            board.done(region, result);
        })
        .buffer_unordered(AT_ONCE)
        .collect::<()>()
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_lists_every_region_in_order_done_or_not() {
        let board = Board::default();
        board.set(["us-west-2", "eu-west-1", "ap-south-1"].map(Region::from).to_vec());
        board.done("ap-south-1".into(), 3);
        board.done("us-west-2".into(), 1);
        let taken = board.take();
        let expected: Vec<(Region, Option<i32>)> =
            vec![("us-west-2".into(), Some(1)), ("eu-west-1".into(), None), ("ap-south-1".into(), Some(3))];
        assert_eq!(taken, expected);
        assert!(board.take().is_empty(), "taken once");
    }
}
