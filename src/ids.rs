//! Names that EC2 issues, validated once where they enter (a flag, an IMDS answer, an EC2 listing), so that
//! everything past that point holds a checked value rather than a bare string.

use std::fmt;
use std::str::FromStr;

/// An EC2 instance id: `i-` and 8 or 17 lowercase hex digits, as EC2 issues them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct InstanceId(String);

impl FromStr for InstanceId {
    type Err = String;

    fn from_str(id: &str) -> Result<Self, String> {
        let ok = id.strip_prefix("i-").is_some_and(|hex| {
            matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(InstanceId(id.to_string()))
        } else {
            Err(format!("{:?} is not an EC2 instance id (i- and 8 or 17 hex digits)", shown(id)))
        }
    }
}

/// An AWS region name such as `us-west-2` or `us-gov-east-1`: lowercase words and digits joined by dashes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Region(String);

impl FromStr for Region {
    type Err = String;

    fn from_str(region: &str) -> Result<Self, String> {
        let ok = region.split('-').count() >= 3
            && region
                .split('-')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        if ok {
            Ok(Region(region.to_string()))
        } else {
            Err(format!("{:?} is not an AWS region name such as us-west-2", shown(region)))
        }
    }
}

/// An AWS account id: 12 digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl FromStr for AccountId {
    type Err = String;

    fn from_str(id: &str) -> Result<Self, String> {
        if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(id.to_string()))
        } else {
            Err(format!("{:?} is not an AWS account id (12 digits)", shown(id)))
        }
    }
}

/// An IAM role name: 1 to 64 of letters, digits and `+=,.@_-` (IAM's own rule), no path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RoleName(String);

impl FromStr for RoleName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        let ok = (1..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        if ok {
            Ok(RoleName(name.to_string()))
        } else {
            Err(format!("{:?} is not an IAM role name (1 to 64 letters, digits and +=,.@_-; no path)", shown(name)))
        }
    }
}

/// An STS external id: 2 to 1,224 of letters, digits and `+=,.@:/_-` (STS's own rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId(String);

impl FromStr for ExternalId {
    type Err = String;

    fn from_str(id: &str) -> Result<Self, String> {
        let ok = (2..=1224).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/_-".contains(&b));
        // Not shown: an external id is a shared secret of sorts.
        if ok {
            Ok(ExternalId(id.to_string()))
        } else {
            Err("not an STS external id (2 to 1224 letters, digits and +=,.@:/_-)".into())
        }
    }
}

/// At most 80 characters of what was given, for the message (its `Debug` form keeps it on one line).
fn shown(text: &str) -> String {
    text.chars().take(80).collect()
}

macro_rules! name {
    ($($ty:ident),+) => {$(
        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&$ty> for String {
            fn from(name: &$ty) -> String {
                name.0.clone()
            }
        }

        /// Tests spell names as literals; a literal that is not one is a bug in the test.
        #[cfg(test)]
        impl From<&str> for $ty {
            fn from(name: &str) -> Self {
                name.parse().expect("a valid name in a test")
            }
        }

        impl PartialEq<$ty> for String {
            fn eq(&self, other: &$ty) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    )+};
}

name!(InstanceId, Region, AccountId, RoleName, ExternalId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_as_ec2_issues_them() {
        for good in ["i-0123456789abcdef0", "i-12345678"] {
            assert_eq!(good.parse::<InstanceId>().unwrap().as_str(), good);
        }
        for bad in ["", "i-", "i-1234567", "i-0123456789ABCDEF0", "0123456789abcdef0", "i-0123456789abcdef", "i-xyz"] {
            assert!(bad.parse::<InstanceId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn account_ids_role_names_and_external_ids() {
        assert_eq!("123456789012".parse::<AccountId>().unwrap().as_str(), "123456789012");
        for bad in ["", "12345678901", "1234567890123", "12345678901a", " 123456789012", "１２３456789012"] {
            assert!(bad.parse::<AccountId>().is_err(), "{bad:?}");
        }
        for good in ["OrganizationAccountAccessRole", "imds-hop-limit_fleet+a=b,c.d@e", &"r".repeat(64)] {
            assert!(good.parse::<RoleName>().is_ok(), "{good}");
        }
        for bad in ["", "a/b", "service-role/x", "a b", &"r".repeat(65), "rôle"] {
            assert!(bad.parse::<RoleName>().is_err(), "{bad:?}");
        }
        assert!("ab".parse::<ExternalId>().is_ok() && "a".parse::<ExternalId>().is_err());
        assert!("x y".parse::<ExternalId>().is_err());
    }

    #[test]
    fn region_names() {
        for good in ["us-west-2", "eu-central-1", "us-gov-east-1", "ap-southeast-4"] {
            assert_eq!(good.parse::<Region>().unwrap().as_str(), good);
        }
        for bad in ["", "Oregon", "us-west", "us--west-2", "US-WEST-2", "us-west-2 ", "us-west-2\nx"] {
            assert!(bad.parse::<Region>().is_err(), "{bad:?}");
        }
    }
}
