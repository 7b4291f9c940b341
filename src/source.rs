//! Where an instance came from, read from the tags EC2 and the launchers put on it (no extra call), and the
//! fix that makes the hop limit stick there. An explicit value in a launch template or in RunInstances wins over
//! the account default, and the launchers people use write one (Karpenter's EC2NodeClass, EKS managed node groups,
//! Auto Scaling groups on a launch template): a healed fleet is replaced at hop limit 1 by the next scale-out
//! unless the source is fixed too. Pure: tags in, a `Source` out.
//!
//! Tag values are remote text: each is made one bounded line (`remote::sanitize`) before it is kept, and a
//! launch template's id and version only when they have EC2's shape. None is ever written into a request.

use crate::plan::HopLimit;
use serde::Serialize;

/// Who launched an instance, most specific owner first: where several tags speak, the first kind that does
/// names the owner whose setting decides the next instance's hop limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Launcher {
    /// Karpenter: the EC2NodeClass's `metadataOptions` is written into every launch template it makes.
    Karpenter,
    /// An EKS managed node group: its launch template (EKS's own, or the one it was given).
    EksNodegroup,
    /// An Elastic Beanstalk environment: no option of it sets the hop limit.
    ElasticBeanstalk,
    /// An Auto Scaling group: its launch template.
    AutoScalingGroup,
    /// An EC2 Fleet: its launch template.
    Ec2Fleet,
    /// A Spot Fleet request: its launch template or specification.
    SpotFleet,
    /// A CloudFormation stack: the template's launch template or instance.
    Cloudformation,
    /// RunInstances from a launch template, with no owner above it.
    LaunchTemplate,
}

impl Launcher {
    /// How a report names it.
    fn noun(self) -> &'static str {
        match self {
            Launcher::Karpenter => "Karpenter EC2NodeClass",
            Launcher::EksNodegroup => "EKS managed node group",
            Launcher::ElasticBeanstalk => "Elastic Beanstalk environment",
            Launcher::AutoScalingGroup => "Auto Scaling group",
            Launcher::Ec2Fleet => "EC2 Fleet",
            Launcher::SpotFleet => "Spot Fleet request",
            Launcher::Cloudformation => "CloudFormation stack",
            Launcher::LaunchTemplate => "launch template",
        }
    }
}

/// Where an instance came from: every field `null` where no tag says.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Source {
    pub kind: Option<Launcher>,
    /// The launcher's name for it: the EC2NodeClass, the node group, the environment, the Auto Scaling group,
    /// the fleet's id, the stack; the launch template's id for a bare one.
    pub name: Option<String>,
    /// The EKS cluster, where there is one.
    pub cluster: Option<String>,
    pub launch_template_id: Option<String>,
    pub launch_template_version: Option<String>,
}

/// How long a kept tag value may be: AWS allows 256 characters; a name longer than this is shown cut.
const MAX_VALUE: usize = 128;

impl Source {
    /// From an instance's tags (key, value), as DescribeInstances gives them.
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Source {
        let tags: Vec<(&str, &str)> = tags.into_iter().collect();
        let tag = |key: &str| {
            tags.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| crate::remote::sanitize(v, MAX_VALUE))
                .filter(|v| !v.is_empty())
        };
        // `kubernetes.io/cluster/NAME: owned`, as EKS and Karpenter tag their nodes.
        let cluster_key = || {
            tags.iter()
                .find_map(|(k, _)| k.strip_prefix("kubernetes.io/cluster/"))
                .map(|name| crate::remote::sanitize(name, MAX_VALUE))
                .filter(|v| !v.is_empty())
        };
        let cluster = tag("eks:cluster-name").or_else(|| tag("eks:eks-cluster-name")).or_else(cluster_key);
        let launch_template_id = tags
            .iter()
            .find(|(k, _)| *k == "aws:ec2launchtemplate:id")
            .map(|(_, v)| *v)
            .filter(|v| is_launch_template_id(v))
            .map(str::to_string);
        let launch_template_version = tags
            .iter()
            .find(|(k, _)| *k == "aws:ec2launchtemplate:version")
            .map(|(_, v)| *v)
            .filter(|v| (1..=10).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string);
        let (kind, name) = if let Some(class) = tag("karpenter.k8s.aws/ec2nodeclass") {
            (Some(Launcher::Karpenter), Some(class))
        } else if tag("karpenter.sh/nodepool").is_some() {
            // A node pool without its node class's tag (an older Karpenter): still Karpenter's, class unknown.
            (Some(Launcher::Karpenter), None)
        } else if let Some(group) = tag("eks:nodegroup-name") {
            (Some(Launcher::EksNodegroup), Some(group))
        } else if let Some(env) = tag("elasticbeanstalk:environment-name") {
            (Some(Launcher::ElasticBeanstalk), Some(env))
        } else if let Some(group) = tag("aws:autoscaling:groupName") {
            (Some(Launcher::AutoScalingGroup), Some(group))
        } else if let Some(fleet) = tag("aws:ec2:fleet-id") {
            (Some(Launcher::Ec2Fleet), Some(fleet))
        } else if let Some(fleet) = tag("aws:ec2spot:fleet-request-id") {
            (Some(Launcher::SpotFleet), Some(fleet))
        } else if let Some(stack) = tag("aws:cloudformation:stack-name") {
            (Some(Launcher::Cloudformation), Some(stack))
        } else if let Some(id) = &launch_template_id {
            (Some(Launcher::LaunchTemplate), Some(id.clone()))
        } else {
            (None, None)
        };
        Source { kind, name, cluster, launch_template_id, launch_template_version }
    }

    /// How the table names it: `Auto Scaling group web`, `Karpenter EC2NodeClass default (cluster prod)`, `-`.
    pub fn label(&self) -> String {
        let Some(kind) = self.kind else { return "-".into() };
        let mut label = match (&self.name, kind) {
            (Some(name), Launcher::LaunchTemplate) => format!("launch template {name}"),
            (Some(name), _) => format!("{} {name}", kind.noun()),
            (None, Launcher::Karpenter) => "Karpenter (node class not tagged)".into(),
            (None, _) => kind.noun().into(),
        };
        if let Some(cluster) = &self.cluster {
            label.push_str(&format!(" (cluster {cluster})"));
        }
        label
    }

    /// The launch template and version, as a report names them: `lt-0abc version 3`.
    fn template(&self) -> Option<String> {
        let id = self.launch_template_id.as_ref()?;
        Some(match &self.launch_template_version {
            Some(version) => format!("{id} version {version}"),
            None => id.clone(),
        })
    }

    /// What makes `hop_limit` stick where the next instance comes from, in the owner's own terms. Nothing
    /// here is run: it replaces instances or changes what launches them, which is the owner's to decide.
    pub fn fix(&self, hop_limit: HopLimit) -> String {
        let template = self.template();
        let in_template = || match &template {
            Some(t) => format!(
                "a new version of launch template {t} with MetadataOptions.HttpPutResponseHopLimit {hop_limit} (every \
                 other setting as it is), made the default version"
            ),
            None => format!("its launch template's MetadataOptions.HttpPutResponseHopLimit set to {hop_limit}"),
        };
        let cluster = self.cluster.as_deref().map(|c| format!(" of cluster {c}")).unwrap_or_default();
        match self.kind {
            Some(Launcher::Karpenter) => format!(
                "set spec.metadataOptions.httpPutResponseHopLimit: {hop_limit} on EC2NodeClass {}{cluster} \
                 (Karpenter writes it into every launch template it makes, and overwrites a change made there); \
                 Karpenter then replaces the drifted nodes",
                self.name.as_deref().unwrap_or("(the node pool's)")
            ),
            Some(Launcher::EksNodegroup) => format!(
                "{} for node group {}{cluster}, then `aws eks update-nodegroup-version` to roll the nodes (a \
                 launch template EKS created for the node group is EKS's: give the node group a launch template \
                 of your own)",
                in_template(),
                self.name.as_deref().unwrap_or_default()
            ),
            Some(Launcher::ElasticBeanstalk) => format!(
                "no Elastic Beanstalk option sets the hop limit: deploy the agent's .ebextensions with environment {} \
                 (each new instance fixes itself at boot)",
                self.name.as_deref().unwrap_or_default()
            ),
            Some(Launcher::AutoScalingGroup | Launcher::Ec2Fleet | Launcher::SpotFleet | Launcher::LaunchTemplate) => {
                format!("{}; a group pinned to a version number needs that version named too", in_template())
            }
            Some(Launcher::Cloudformation) => format!(
                "MetadataOptions.HttpPutResponseHopLimit: {hop_limit} in stack {}'s launch template (or instance), \
                 then update the stack",
                self.name.as_deref().unwrap_or_default()
            ),
            None => format!(
                "`imds-hop-limit defaults apply --hop-limit {hop_limit}` sets the \
                 region's default for new launches that do not set a hop limit themselves"
            ),
        }
    }
}

/// `lt-` and 17 (or, for older templates, 8) lowercase hex digits.
fn is_launch_template_id(text: &str) -> bool {
    text.strip_prefix("lt-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(tags: &[(&str, &str)]) -> Source {
        Source::from_tags(tags.iter().copied())
    }

    #[test]
    fn each_launcher_is_named_by_its_tags_most_specific_first() {
        let lt = [("aws:ec2launchtemplate:id", "lt-0123456789abcdef0"), ("aws:ec2launchtemplate:version", "7")];
        let karpenter = of(&[
            ("karpenter.sh/nodepool", "general"),
            ("karpenter.k8s.aws/ec2nodeclass", "default"),
            ("eks:eks-cluster-name", "prod"),
            ("aws:ec2launchtemplate:id", "lt-0123456789abcdef0"),
        ]);
        assert_eq!(karpenter.kind, Some(Launcher::Karpenter));
        assert_eq!((karpenter.name.as_deref(), karpenter.cluster.as_deref()), (Some("default"), Some("prod")));
        assert_eq!(karpenter.label(), "Karpenter EC2NodeClass default (cluster prod)");
        assert!(
            karpenter.fix(HopLimit::new(2).unwrap()).contains("httpPutResponseHopLimit: 2 on EC2NodeClass default")
        );

        let group = of(&[
            ("eks:nodegroup-name", "ng-1"),
            ("eks:cluster-name", "prod"),
            ("aws:autoscaling:groupName", "eks-ng-1-abc"),
            lt[0],
            lt[1],
        ]);
        assert_eq!((group.kind, group.name.as_deref()), (Some(Launcher::EksNodegroup), Some("ng-1")));
        assert!(group.fix(HopLimit::new(2).unwrap()).contains("update-nodegroup-version"));

        let beanstalk =
            of(&[("elasticbeanstalk:environment-name", "web-prod"), ("aws:autoscaling:groupName", "awseb-x")]);
        assert_eq!(beanstalk.kind, Some(Launcher::ElasticBeanstalk));
        assert!(beanstalk.fix(HopLimit::new(2).unwrap()).contains(".ebextensions"));

        let asg = of(&[("aws:autoscaling:groupName", "web"), lt[0], lt[1], ("aws:cloudformation:stack-name", "s")]);
        assert_eq!((asg.kind, asg.name.as_deref()), (Some(Launcher::AutoScalingGroup), Some("web")));
        assert_eq!(asg.launch_template_version.as_deref(), Some("7"));
        assert!(asg.fix(HopLimit::new(2).unwrap()).contains("launch template lt-0123456789abcdef0 version 7"));

        for (key, kind) in [
            ("aws:ec2:fleet-id", Launcher::Ec2Fleet),
            ("aws:ec2spot:fleet-request-id", Launcher::SpotFleet),
            ("aws:cloudformation:stack-name", Launcher::Cloudformation),
        ] {
            assert_eq!(of(&[(key, "x")]).kind, Some(kind), "{key}");
        }
        let bare = of(&lt);
        assert_eq!((bare.kind, bare.name.as_deref()), (Some(Launcher::LaunchTemplate), Some("lt-0123456789abcdef0")));
        let unknown = of(&[("Name", "web-1")]);
        assert_eq!(unknown, Source::default());
        assert_eq!(unknown.label(), "-");
        assert!(unknown.fix(HopLimit::new(2).unwrap()).contains("imds-hop-limit defaults apply --hop-limit 2"));
    }

    /// Tag values are remote text: one bounded line each; a template id or version of another shape is not
    /// kept at all.
    #[test]
    fn tag_values_are_made_safe_and_ids_kept_only_in_their_shape() {
        let long = "a".repeat(300);
        let hostile = of(&[
            ("aws:autoscaling:groupName", "web\r\nX-Injected: yes"),
            ("eks:cluster-name", &long),
            ("aws:ec2launchtemplate:id", "lt-0123\r\n"),
            ("aws:ec2launchtemplate:version", "$Latest"),
        ]);
        let name = hostile.name.unwrap();
        assert!(!name.contains('\n') && !name.contains('\r'), "{name:?}");
        let cluster = hostile.cluster.unwrap();
        assert!(cluster.starts_with(&"a".repeat(MAX_VALUE)) && cluster.ends_with("(172 more characters)"), "{cluster}");
        assert_eq!((hostile.launch_template_id, hostile.launch_template_version), (None, None));
        assert!(is_launch_template_id("lt-0123456789abcdef0") && is_launch_template_id("lt-01234567"));
        assert!(!is_launch_template_id("lt-0123456789ABCDEF0") && !is_launch_template_id("lt-xyz"));
    }
}
