//! Which regions a fleet or defaults run works on: as given, the default chain's, or every region enabled for
//! the account. `runner` runs over them, side by side, each with its own EC2 client and so its own budget.

use crate::cli::RegionsArgs;
use crate::ec2::{Account, Defaults as _};
use crate::error::{Error, Result};
use crate::ids::Region;
use crate::retry::Patient;
use crate::wait::patience;
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
