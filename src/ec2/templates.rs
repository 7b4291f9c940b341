//! Launch templates over aws-sdk-ec2, for `templates`: the templates of a region (DescribeLaunchTemplates), their
//! default versions (DescribeLaunchTemplateVersions with `$Default`, every template in one listing where none is
//! named), and a change as a new version made from the default one and then made the default
//! (CreateLaunchTemplateVersion, ModifyLaunchTemplate).
//!
//! A new version must equal its source in everything but the metadata options. EC2 inherits the source's
//! parameters (`SourceVersion`), but a parameter given in `LaunchTemplateData` replaces the inherited one whole:
//! so the request carries the source's whole `MetadataOptions` with only the fields that must change changed,
//! and, because EC2 drops the snapshots of inherited block device mappings unless they are given explicitly, the
//! source's block device mappings as they are. The new version is then read back and compared with its source,
//! every parameter but the metadata options, and those with what was asked; only then may it become the
//! default. The source's data stays inside this module (`Data`): nothing else sees SDK types.

use super::convert::{hop_limit, toggle, unknown};
use super::{Ec2Api, remote};
use crate::error::{Error, Result};
use crate::plan::{HttpTokens, MetadataOptions};
use crate::source::Source;
use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMapping, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptions,
    LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateInstanceMetadataProtocolIpv6,
    LaunchTemplateInstanceMetadataTagsState, RequestLaunchTemplateData, ResponseLaunchTemplateData,
};

/// The largest page of either listing (MaxResults).
pub const TEMPLATE_PAGE: i32 = 200;

/// A launch template as DescribeLaunchTemplates lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplate {
    /// `lt-` and hex: checked, as it is written into requests.
    pub id: String,
    /// As its owner named it: remote text, one bounded line.
    pub name: String,
    pub default_version: i64,
    pub latest_version: i64,
    /// Who owns it, by its tags: Karpenter and EKS tag the templates they make.
    pub owner: Source,
}

/// One version of a launch template: its metadata options as the version sets them (`None`: left unset), and
/// its whole data, opaque, to make a new version from.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateVersion {
    pub template_id: String,
    pub version: i64,
    pub options: MetadataOptions,
    data: Data,
}

/// A version's launch template data, as EC2 answered it: only this module looks inside.
#[derive(Debug, Clone, PartialEq)]
struct Data(ResponseLaunchTemplateData);

#[derive(Debug, Clone, Default)]
pub struct TemplatePage {
    pub templates: Vec<LaunchTemplate>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct VersionPage {
    pub versions: Vec<TemplateVersion>,
    pub next: Option<String>,
}

/// What the templates command needs from EC2.
pub trait Templates {
    /// One page of the region's launch templates, or of those named (ids `lt-...`, else names).
    async fn templates(&self, ids: &[String], names: &[String], next: Option<&str>) -> Result<TemplatePage>;
    /// One page of the default versions: of every template (`template` `None`), or of one.
    async fn default_versions(&self, template: Option<&str>, next: Option<&str>) -> Result<VersionPage>;
    /// A new version from `source` whose metadata options are `options` (the source's own, with the fields
    /// that must change changed), read back and compared with its source: its number where it equals the
    /// source in everything else and has the options asked for, else an error saying what differs (the version
    /// stays, and is not made the default). `token` makes a retried request create one version, not two.
    async fn new_version(&self, source: &TemplateVersion, options: &MetadataOptions, token: &str) -> Result<i64>;
    /// Makes `version` the template's default (what `$Default` launches).
    async fn make_default(&self, template_id: &str, version: i64) -> Result<()>;
}

/// A version as a unit test spells it (its data empty).
#[cfg(test)]
pub fn tests_version(id: &str, version: i64, options: MetadataOptions) -> TemplateVersion {
    TemplateVersion {
        template_id: id.into(),
        version,
        options,
        data: Data(ResponseLaunchTemplateData::builder().build()),
    }
}

/// `lt-` and 8 or 17 lowercase hex digits.
pub fn is_template_id(text: &str) -> bool {
    text.strip_prefix("lt-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn malformed(operation: &'static str, what: String) -> Error {
    use super::failures::{Failure, FailureKind, Service};
    Error::Call {
        operation,
        failure: Failure { message: Some(what), ..Failure::new(Service::Ec2, FailureKind::Malformed) },
    }
}

/// A page token written back into the next request: only what has a token's shape.
fn token(operation: &'static str, next: Option<&str>) -> Result<Option<String>> {
    match next {
        None | Some("") => Ok(None),
        Some(t) if t.len() <= 4096 && t.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(t.to_string())),
        Some(t) => Err(malformed(operation, format!("a next token of {} bytes that is not one", t.len()))),
    }
}

/// The options a template version sets, each `None` where it leaves the field unset.
fn options_of(o: Option<&LaunchTemplateInstanceMetadataOptions>) -> MetadataOptions {
    let Some(o) = o else { return MetadataOptions::default() };
    MetadataOptions {
        state: None,
        http_tokens: o.http_tokens().and_then(|t| match t {
            LaunchTemplateHttpTokensState::Required => Some(HttpTokens::Required),
            LaunchTemplateHttpTokensState::Optional => Some(HttpTokens::Optional),
            other => unknown("HttpTokens", other.as_str()),
        }),
        hop_limit: o.http_put_response_hop_limit().and_then(hop_limit),
        http_endpoint: o.http_endpoint().and_then(|t| toggle("HttpEndpoint", t.as_str())),
        ipv6_endpoint: o.http_protocol_ipv6().and_then(|t| toggle("HttpProtocolIpv6", t.as_str())),
        instance_tags: o.instance_metadata_tags().and_then(|t| toggle("InstanceMetadataTags", t.as_str())),
    }
}

/// The whole `MetadataOptions` of a new version: every field as `options` says, unset where it is `None`.
fn options_request(options: &MetadataOptions) -> LaunchTemplateInstanceMetadataOptionsRequest {
    LaunchTemplateInstanceMetadataOptionsRequest::builder()
        .set_http_tokens(options.http_tokens.map(|t| LaunchTemplateHttpTokensState::from(t.as_str())))
        .set_http_put_response_hop_limit(options.hop_limit.map(|h| i32::from(h.get())))
        .set_http_endpoint(options.http_endpoint.map(|t| LaunchTemplateInstanceMetadataEndpointState::from(t.as_str())))
        .set_http_protocol_ipv6(
            options.ipv6_endpoint.map(|t| LaunchTemplateInstanceMetadataProtocolIpv6::from(t.as_str())),
        )
        .set_instance_metadata_tags(
            options.instance_tags.map(|t| LaunchTemplateInstanceMetadataTagsState::from(t.as_str())),
        )
        .build()
}

/// A block device mapping as the version has it, to give explicitly: EC2 drops the snapshots of inherited
/// mappings. A field this copy leaves out shows in the comparison with the source, which then refuses.
fn mapping_request(m: &LaunchTemplateBlockDeviceMapping) -> LaunchTemplateBlockDeviceMappingRequest {
    let ebs = m.ebs().map(|e| {
        LaunchTemplateEbsBlockDeviceRequest::builder()
            .set_encrypted(e.encrypted())
            .set_delete_on_termination(e.delete_on_termination())
            .set_iops(e.iops())
            .set_kms_key_id(e.kms_key_id().map(str::to_string))
            .set_snapshot_id(e.snapshot_id().map(str::to_string))
            .set_volume_size(e.volume_size())
            .set_volume_type(e.volume_type().cloned())
            .set_throughput(e.throughput())
            .set_volume_initialization_rate(e.volume_initialization_rate())
            .build()
    });
    LaunchTemplateBlockDeviceMappingRequest::builder()
        .set_device_name(m.device_name().map(str::to_string))
        .set_virtual_name(m.virtual_name().map(str::to_string))
        .set_ebs(ebs)
        .set_no_device(m.no_device().map(str::to_string))
        .build()
}

/// What differs between a new version and its source, other than the metadata options; and whether the new
/// version's options are those asked for. `None`: equal as they must be.
fn difference(
    source: &ResponseLaunchTemplateData,
    new: &ResponseLaunchTemplateData,
    asked: &MetadataOptions,
) -> Option<String> {
    let (mut a, mut b) = (source.clone(), new.clone());
    let got = options_of(b.metadata_options.as_ref());
    a.metadata_options = None;
    b.metadata_options = None;
    if a != b {
        // Name the parameters that differ, never their values (remote text, and maybe secrets: user data).
        let mut differ = Vec::new();
        macro_rules! compare {
            ($($field:ident),+) => {$(
                if a.$field != b.$field {
                    differ.push(stringify!($field));
                }
            )+};
        }
        compare!(
            kernel_id,
            ebs_optimized,
            iam_instance_profile,
            block_device_mappings,
            network_interfaces,
            image_id,
            instance_type,
            key_name,
            monitoring,
            placement,
            ram_disk_id,
            disable_api_termination,
            instance_initiated_shutdown_behavior,
            user_data,
            tag_specifications,
            elastic_gpu_specifications,
            elastic_inference_accelerators,
            security_group_ids,
            security_groups,
            instance_market_options,
            credit_specification,
            cpu_options,
            capacity_reservation_specification,
            license_specifications,
            hibernation_options,
            enclave_options,
            instance_requirements,
            private_dns_name_options,
            maintenance_options,
            disable_api_stop,
            operator,
            network_performance_options
        );
        let what = if differ.is_empty() { "parameters".to_string() } else { differ.join(", ") };
        return Some(format!("it differs from its source in {what}"));
    }
    let asked = MetadataOptions { state: None, ..asked.clone() };
    (got != asked).then(|| {
        format!(
            "its metadata options read back as {}, not {}",
            got.describe(&crate::plan::Field::ALL, crate::plan::Absent::NotSet),
            asked.describe(&crate::plan::Field::ALL, crate::plan::Absent::NotSet)
        )
    })
}

impl Templates for Ec2Api {
    async fn templates(&self, ids: &[String], names: &[String], next: Option<&str>) -> Result<TemplatePage> {
        let op = "DescribeLaunchTemplates";
        let mut request = self.client.describe_launch_templates().set_next_token(token(op, next)?);
        if ids.is_empty() && names.is_empty() {
            request = request.max_results(TEMPLATE_PAGE);
        } else {
            request = request
                .set_launch_template_ids((!ids.is_empty()).then(|| ids.to_vec()))
                .set_launch_template_names((!names.is_empty()).then(|| names.to_vec()));
        }
        let out = request.send().await.map_err(|e| self.error(op, &self.region, e))?;
        let mut templates = Vec::new();
        for t in out.launch_templates() {
            let id = t.launch_template_id().unwrap_or_default();
            if !is_template_id(id) {
                return Err(malformed(
                    op,
                    format!("a launch template id that is not one: {:?}", remote::sanitize(id, 40)),
                ));
            }
            let version = |v: Option<i64>, what: &str| {
                v.filter(|v| *v >= 1).ok_or_else(|| malformed(op, format!("{id} without its {what} version number")))
            };
            templates.push(LaunchTemplate {
                id: id.to_string(),
                name: remote::sanitize(t.launch_template_name().unwrap_or_default(), 128),
                default_version: version(t.default_version_number(), "default")?,
                latest_version: version(t.latest_version_number(), "latest")?,
                owner: Source::from_tags(
                    t.tags().iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
                ),
            });
        }
        Ok(TemplatePage { templates, next: token(op, out.next_token())? })
    }

    async fn default_versions(&self, template: Option<&str>, next: Option<&str>) -> Result<VersionPage> {
        let op = "DescribeLaunchTemplateVersions";
        let mut request =
            self.client.describe_launch_template_versions().versions("$Default").set_next_token(token(op, next)?);
        request = match template {
            Some(id) => request.launch_template_id(id),
            None => request.max_results(TEMPLATE_PAGE),
        };
        let out = request.send().await.map_err(|e| self.error(op, template.unwrap_or(&self.region), e))?;
        let mut versions = Vec::new();
        for v in out.launch_template_versions() {
            let id = v.launch_template_id().unwrap_or_default();
            let (Some(number), Some(data)) = (v.version_number(), v.launch_template_data()) else {
                return Err(malformed(
                    op,
                    format!("a version of {} without its number or data", remote::sanitize(id, 40)),
                ));
            };
            if !is_template_id(id) {
                return Err(malformed(
                    op,
                    format!("a launch template id that is not one: {:?}", remote::sanitize(id, 40)),
                ));
            }
            versions.push(TemplateVersion {
                template_id: id.to_string(),
                version: number,
                options: options_of(data.metadata_options()),
                data: Data(data.clone()),
            });
        }
        Ok(VersionPage { versions, next: token(op, out.next_token())? })
    }

    async fn new_version(&self, source: &TemplateVersion, options: &MetadataOptions, token: &str) -> Result<i64> {
        let id = source.template_id.as_str();
        let mut data = RequestLaunchTemplateData::builder().metadata_options(options_request(options));
        let mappings = source.data.0.block_device_mappings();
        if !mappings.is_empty() {
            data = data.set_block_device_mappings(Some(mappings.iter().map(mapping_request).collect()));
        }
        tracing::debug!(template = id, source = source.version, ?options, "ec2:CreateLaunchTemplateVersion");
        let created = self
            .client
            .create_launch_template_version()
            .launch_template_id(id)
            .source_version(source.version.to_string())
            .version_description(format!("imds-hop-limit: metadata options of version {}", source.version))
            .client_token(token)
            .launch_template_data(data.build())
            .send()
            .await
            .map_err(|e| self.error("CreateLaunchTemplateVersion", id, e))?;
        let Some(version) = created.launch_template_version().and_then(|v| v.version_number()) else {
            return Err(malformed("CreateLaunchTemplateVersion", format!("no version number for {id}")));
        };
        let read = self
            .client
            .describe_launch_template_versions()
            .launch_template_id(id)
            .versions(version.to_string())
            .send()
            .await
            .map_err(|e| self.error("DescribeLaunchTemplateVersions", id, e))?;
        let Some(new) = read.launch_template_versions().first().and_then(|v| v.launch_template_data()) else {
            return Err(malformed(
                "DescribeLaunchTemplateVersions",
                format!("version {version} of {id} not read back"),
            ));
        };
        match difference(&source.data.0, new, options) {
            None => Ok(version),
            Some(what) => Err(Error::Unexpected(format!(
                "version {version} of {id}, made from version {}, was not made the default: {what}. Nothing launches \
                 from it unless named; delete it (`aws ec2 delete-launch-template-versions --launch-template-id {id} \
                 --versions {version}`) or look into it",
                source.version
            ))),
        }
    }

    async fn make_default(&self, template_id: &str, version: i64) -> Result<()> {
        tracing::debug!(template = template_id, version, "ec2:ModifyLaunchTemplate");
        self.client
            .modify_launch_template()
            .launch_template_id(template_id)
            .default_version(version.to_string())
            .send()
            .await
            .map_err(|e| self.error("ModifyLaunchTemplate", template_id, e))?;
        Ok(())
    }
}
