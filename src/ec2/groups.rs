//! The Auto Scaling groups of a region, for `templates`: which launch template each launches from, and with
//! which version (autoscaling:DescribeAutoScalingGroups, pages of 100). Group names are remote text: one bounded
//! line; a template id is kept only in EC2's shape and a version only as `$Default`, `$Latest` or a number.

use super::Ec2Api;
use super::classify::classify;
use super::failures::Service;
use super::templates::is_template_id;
use crate::error::Result;
use crate::remote;

/// A group and the launch template it launches from (directly, or through its mixed instances policy).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Group {
    #[serde(rename = "group")]
    pub name: String,
    #[serde(skip)]
    pub template_id: Option<String>,
    #[serde(skip)]
    pub template_name: Option<String>,
    /// The version it asks for: `$Default`, `$Latest` or a number (`$Default` where it names none).
    pub version: String,
    /// For a group pinned to a version number, when its template needs or got a new version: what its owner can
    /// do (not taken: it replaces instances).
    pub next_step: Option<String>,
}

impl Group {
    /// Whether it launches `template` (by id, or by name where it names no id).
    pub fn launches(&self, id: &str, name: &str) -> bool {
        match (&self.template_id, &self.template_name) {
            (Some(own), _) => own == id,
            (None, Some(own)) => own == name,
            (None, None) => false,
        }
    }

    /// Pinned to a version number: a new default version does not reach it.
    pub fn pinned(&self) -> bool {
        self.version.bytes().all(|b| b.is_ascii_digit())
    }
}

#[derive(Debug, Clone, Default)]
pub struct GroupPage {
    pub groups: Vec<Group>,
    pub next: Option<String>,
}

pub trait Groups {
    /// One page of the region's groups that launch from a launch template.
    async fn groups(&self, next: Option<&str>) -> Result<GroupPage>;
}

/// The version a group asks for, as it is written back into no request: only its three shapes.
fn version(v: Option<&str>) -> String {
    match v {
        None | Some("") | Some("$Default") => "$Default".into(),
        Some("$Latest") => "$Latest".into(),
        Some(n) if n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()) => n.into(),
        Some(other) => format!("unknown ({})", remote::sanitize(other, 20)),
    }
}

impl Groups for Ec2Api {
    async fn groups(&self, next: Option<&str>) -> Result<GroupPage> {
        let op = "DescribeAutoScalingGroups";
        let next = next.filter(|t| t.len() <= 4096 && t.bytes().all(|b| b.is_ascii_graphic())).map(str::to_string);
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .max_records(100)
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| classify(Service::AutoScaling, op, &e, None))?;
        let mut groups = Vec::new();
        for g in out.auto_scaling_groups() {
            let spec = g.launch_template().or_else(|| {
                g.mixed_instances_policy()
                    .and_then(|p| p.launch_template())
                    .and_then(|t| t.launch_template_specification())
            });
            let Some(spec) = spec else { continue };
            groups.push(Group {
                name: remote::sanitize(g.auto_scaling_group_name().unwrap_or_default(), 255),
                template_id: spec.launch_template_id().filter(|id| is_template_id(id)).map(str::to_string),
                template_name: spec.launch_template_name().map(|n| remote::sanitize(n, 128)),
                version: version(spec.version()),
                next_step: None,
            });
        }
        let next = out.next_token().filter(|t| !t.is_empty()).map(str::to_string);
        Ok(GroupPage { groups, next })
    }
}
