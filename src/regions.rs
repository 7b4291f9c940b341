//! Which regions a fleet or defaults run works on: as given, the default chain's, or every region enabled
//! for the account.

use crate::config::parse_region;
use crate::ec2::{Account, Defaults as _};
use crate::error::{Error, Result};
use crate::reconcile::Patient;
use crate::wait::patience;
use tokio::time::Instant;

/// Which regions: those given (or the default chain's), or every region enabled for the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Regions {
    Given(Vec<String>),
    /// The default chain's region (`AWS_REGION`, the profile's), known once the SDK has loaded.
    Default,
    All,
}

impl Regions {
    /// `--all-regions` wins over `--region` and AWS_REGION; each given region is validated and taken once, in
    /// the order given (the same region twice would be changed twice, side by side).
    pub fn from_flags(all: bool, given: &[String]) -> Result<Self> {
        if all {
            return Ok(Regions::All);
        }
        if given.is_empty() {
            return Ok(Regions::Default);
        }
        let mut regions: Vec<String> = Vec::with_capacity(given.len());
        for region in given {
            let region = parse_region(region)?;
            if !regions.contains(&region) {
                regions.push(region);
            }
        }
        Ok(Regions::Given(regions))
    }

    /// The regions to work on: as given, the default chain's, or every region enabled for the account
    /// (DescribeRegions, asked in the default chain's region, else us-east-1).
    pub async fn resolve(&self, account: &Account, deadline: Instant) -> Result<Vec<String>> {
        let default = account.default_region().map(|r| parse_region(&r)).transpose()?;
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
