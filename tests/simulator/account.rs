//! The account's state: instances, their options and changes, EC2's per-account token buckets, the
//! account-level defaults, and which instances DescribeInstances selects. Plain data with methods that take
//! the time, unit-tested apart from the wire formats.

use super::*;

/// One instance's metadata options and the state of its last change.
#[derive(Debug, Clone)]
pub struct Instance {
    pub region: &'static str,
    pub tags: Vec<(String, String)>,
    /// `running` or `stopped`.
    pub run_state: &'static str,
    pub options: Options,
    /// When the last change turns from pending to applied; None when applied.
    pub applied_at: Option<Instant>,
    /// When the last change was (or will be) applied, kept after it was.
    pub last_apply: Option<Instant>,
    /// The hop limit in effect (what IMDS answers with), which changes only once applied.
    pub effective_hop_limit: i64,
}

impl Instance {
    pub(super) fn new(options: Options) -> Self {
        Instance {
            region: REGION,
            tags: Vec::new(),
            run_state: "running",
            effective_hop_limit: options.hop_limit.unwrap_or(1),
            options,
            applied_at: None,
            last_apply: None,
        }
    }

    pub(super) fn settle(&mut self, now: Instant, forever: bool) {
        if let Some(at) = self.applied_at {
            if !forever && now >= at {
                self.applied_at = None;
                self.effective_hop_limit = self.options.hop_limit.unwrap_or(1);
            }
        }
    }

    pub fn state(&self) -> &'static str {
        if self.applied_at.is_some() { "pending" } else { "applied" }
    }
}

/// EC2's token bucket, on the simulator's (wall) clock: the one model the unit tests' fakes share.
pub type Bucket = super::model::Bucket<Instant>;

/// The account: its instances and its request budget.
pub struct Account {
    pub instances: BTreeMap<String, Instance>,
    /// How long a change stays pending (None: forever), scaled.
    pending_for: Option<Duration>,
    pub scale: f64,
    /// EC2's buckets are per account and region: one pair per region, made when first used.
    config: Option<Buckets>,
    buckets: HashMap<String, (Bucket, Bucket, Bucket)>,
    /// The account-level metadata defaults per region (None: no preference), as GetInstanceMetadataDefaults
    /// reports them.
    pub defaults: HashMap<String, Options>,
    /// The launch templates by id, in the order made.
    pub templates: BTreeMap<String, Template>,
}

/// A launch template as the simulator keeps it.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub region: &'static str,
    pub tags: Vec<(String, String)>,
    /// Version n is `versions[n - 1]`.
    pub versions: Vec<TemplateData>,
    pub default: i64,
    /// Each client token's version: a request retried with its token makes no second version.
    pub tokens: HashMap<String, i64>,
}

impl Account {
    pub fn new(scenario: &Scenario) -> Self {
        let mut instances = BTreeMap::new();
        instances.insert(scenario.instance_id.clone(), Instance::new(scenario.options.clone()));
        for n in 0..scenario.more_instances {
            instances.insert(more_instance_id(n), Instance::new(scenario.options.clone()));
        }
        for spec in &scenario.instances {
            let instance = Instance {
                region: spec.region,
                tags: spec.tags.clone(),
                run_state: spec.state,
                ..Instance::new(spec.options.clone())
            };
            instances.insert(spec.id.clone(), instance);
        }
        let scale = scenario.buckets.map_or(1.0, |b| b.time_scale);
        Account {
            instances,
            pending_for: match scenario.applies {
                Applies::After(pending) => Some(pending.div_f64(scale)),
                Applies::Never => None,
            },
            scale,
            config: scenario.buckets,
            buckets: HashMap::new(),
            defaults: HashMap::new(),
            templates: scenario
                .templates
                .iter()
                .map(|t| {
                    let template = Template {
                        name: t.name.into(),
                        region: t.region,
                        tags: t.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                        versions: t.versions.clone(),
                        default: t.default,
                        tokens: HashMap::new(),
                    };
                    (t.id.to_string(), template)
                })
                .collect(),
        }
    }

    /// Whether the account's budget for `action` in `region` has a token now (and spends it).
    pub fn admit(&mut self, action: &str, region: &str, now: Instant) -> bool {
        let (scale, Some(config)) = (self.scale, self.config) else { return true };
        let (describe, modify, defaults) = self.buckets.entry(region.to_string()).or_insert_with(|| {
            (Bucket::new(config.describe, now), Bucket::new(config.modify, now), Bucket::new(config.defaults, now))
        });
        match action {
            "ModifyInstanceMetadataOptions" => modify.take(now, scale),
            "ModifyInstanceMetadataDefaults" => defaults.take(now, scale),
            _ => describe.take(now, scale),
        }
    }

    pub fn settle(&mut self, now: Instant) {
        let forever = self.pending_for.is_none();
        for instance in self.instances.values_mut() {
            instance.settle(now, forever);
        }
    }

    /// EC2 takes a change: the fields given, the others kept; pending until `pending_for` has passed. A
    /// stopped instance's change is applied when it starts (EC2's API reference): it stays pending here.
    pub fn change(&mut self, id: &str, next: Options, now: Instant) {
        let pending_for = self.pending_for.unwrap_or(UNTIL_STARTED);
        if let Some(instance) = self.instances.get_mut(id) {
            instance.options = next;
            let pending_for = if instance.run_state == "stopped" { UNTIL_STARTED } else { pending_for };
            instance.applied_at = Some(now + pending_for);
            instance.last_apply = instance.applied_at;
        }
    }

    /// The regions DescribeRegions lists: the scenario's and every instance's, each once, sorted.
    pub fn regions(&self, scenario: &Scenario) -> Vec<&'static str> {
        let mut all: Vec<&'static str> = scenario.regions.clone();
        all.extend(self.instances.values().map(|i| i.region));
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// A stopped instance's change waits for a start that no scenario makes.
pub(super) const UNTIL_STARTED: Duration = Duration::from_secs(365 * 86_400);

/// What DescribeInstances may ask: instance ids, filters (name, values), a page size and where to start.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub ids: Vec<String>,
    pub filters: Vec<(String, Vec<String>)>,
    pub max_results: Option<usize>,
    pub next_token: Option<String>,
}

impl Query {
    pub(super) fn from_params(params: &[(String, String)]) -> Self {
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let ids = (1..).map_while(|n| param(&format!("InstanceId.{n}"))).collect();
        let filters = (1..)
            .map_while(|n| {
                let name = param(&format!("Filter.{n}.Name"))?;
                Some((name, (1..).map_while(|m| param(&format!("Filter.{n}.Value.{m}"))).collect()))
            })
            .collect();
        Query {
            ids,
            filters,
            max_results: param("MaxResults").and_then(|v| v.parse().ok()),
            next_token: param("NextToken"),
        }
    }
}

/// A filter as EC2 matches it (the one model the unit tests' fakes share).
pub(super) fn matches(id: &str, i: &Instance, name: &str, values: &[String]) -> Result<bool, String> {
    let seen = super::model::Seen {
        id,
        state: i.run_state,
        tags: &i.tags,
        hop_limit: i.options.hop_limit,
        http_endpoint: i.options.http_endpoint,
        http_tokens: i.options.http_tokens,
    };
    super::model::matches(&seen, name, values)
}

/// The ids DescribeInstances answers with in `region`, and the token of the next page: by id, all of them
/// (each must exist, or the answer is NotFound), or those that pass every filter, a page at a time (EC2:
/// MaxResults 5 to 1000, not together with instance ids).
pub fn select(account: &Account, region: &str, q: &Query) -> Result<(Vec<String>, Option<String>), (String, String)> {
    let invalid = |code: &str, message: String| Err((code.to_string(), message));
    if !q.ids.is_empty() {
        if q.max_results.is_some() {
            return invalid(
                "InvalidParameterCombination",
                "The parameter instancesSet cannot be used with the parameter maxResults".into(),
            );
        }
        let missing: Vec<&str> = q
            .ids
            .iter()
            .filter(|id| account.instances.get(*id).is_none_or(|i| i.region != region))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return invalid(
                "InvalidInstanceID.NotFound",
                format!("The instance IDs '{}' do not exist", missing.join(", ")),
            );
        }
    }
    if let Some(max) = q.max_results {
        if !(5..=1000).contains(&max) {
            return invalid("InvalidParameterValue", format!("Value ( {max} ) for parameter maxResults is invalid"));
        }
    }
    let mut selected = Vec::new();
    for (id, i) in account.instances.iter().filter(|(_, i)| i.region == region) {
        if !q.ids.is_empty() && !q.ids.contains(id) {
            continue;
        }
        let mut all = true;
        for (name, values) in &q.filters {
            all &= matches(id, i, name, values).map_err(|m| ("InvalidParameterValue".to_string(), m))?;
        }
        if all {
            selected.push(id.clone());
        }
    }
    let start: usize = match &q.next_token {
        // The tokens of `Ec2Fault::PageTokenCycle`: the first page again.
        Some(token) if token == "A" || token == "B" => 0,
        Some(token) => {
            token.parse().map_err(|_| ("InvalidParameterValue".to_string(), "Invalid NextToken".to_string()))?
        }
        None => 0,
    };
    let page = q.max_results.unwrap_or(1000);
    let end = (start + page).min(selected.len());
    let next = (end < selected.len()).then(|| end.to_string());
    Ok((selected.get(start..end).unwrap_or_default().to_vec(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_spends_its_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new((3.0, 2.0), t0);
        assert!((0..3).all(|_| b.take(t0, 1.0)));
        assert!(!b.take(t0, 1.0), "burst spent");
        assert!(!b.take(t0 + Duration::from_millis(400), 1.0), "0.8 of a token");
        assert!(b.take(t0 + Duration::from_millis(500), 1.0), "one token after half a second at 2/s");
        assert!(b.take(t0 + Duration::from_millis(750), 2.0), "scaled: twice the refill");
        let mut b = Bucket::new((3.0, 2.0), t0);
        assert!((0..3).all(|_| b.take(t0 + Duration::from_secs(100), 1.0)), "never more than the burst");
        assert!(!b.take(t0 + Duration::from_secs(100), 1.0));
    }

    #[test]
    fn an_account_throttles_each_action_from_its_own_bucket_and_applies_after_pending() {
        let scenario = Scenario {
            more_instances: 2,
            buckets: Some(Buckets { describe: (2.0, 1.0), modify: (1.0, 1.0), defaults: (2.0, 2.0), time_scale: 1.0 }),
            ..Scenario::default()
        };
        let t0 = Instant::now();
        let mut a = Account::new(&scenario);
        assert_eq!(a.instances.len(), 3);
        assert!(a.admit("DescribeInstances", REGION, t0) && a.admit("DescribeInstances", REGION, t0));
        assert!(!a.admit("DescribeInstances", REGION, t0));
        assert!(a.admit("ModifyInstanceMetadataOptions", REGION, t0), "its own bucket");
        assert!(!a.admit("ModifyInstanceMetadataOptions", REGION, t0));
        assert!(a.admit("DescribeInstances", "eu-west-1", t0), "each region has its own budget");
        let id = more_instance_id(1);
        a.change(&id, Options { hop_limit: Some(2), ..Options::default() }, t0);
        assert_eq!(a.instances[&id].state(), "pending");
        let Applies::After(pending) = scenario.applies else { unreachable!() };
        a.settle(t0 + pending);
        assert_eq!(a.instances[&id].state(), "applied");
        assert_eq!(a.instances[&id].effective_hop_limit, 2);
    }

    fn fleet() -> Account {
        let spec = |n: usize, region: &'static str, team: &str, state: &'static str| InstanceSpec {
            id: format!("i-2{n:016x}"),
            region,
            tags: vec![("team".into(), team.into())],
            state,
            options: Options { hop_limit: Some(if n % 2 == 0 { 1 } else { 2 }), ..Options::default() },
        };
        let mut instances: Vec<InstanceSpec> = (0..12).map(|n| spec(n, REGION, "web", "running")).collect();
        instances.push(spec(12, REGION, "web", "stopped"));
        instances.push(spec(13, REGION, "batch", "running"));
        instances.push(spec(14, "eu-west-1", "web", "running"));
        Account::new(&Scenario { instances, ..Scenario::default() })
    }

    fn query(filters: &[(&str, &[&str])], max: Option<usize>, token: Option<&str>) -> Query {
        Query {
            ids: Vec::new(),
            filters: filters.iter().map(|(n, v)| (n.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
            max_results: max,
            next_token: token.map(str::to_string),
        }
    }

    #[test]
    fn describe_filters_by_tag_state_and_options_in_the_signed_region_only() {
        let a = fleet();
        let web = select(&a, REGION, &query(&[("tag:team", &["web"])], None, None)).unwrap().0;
        assert_eq!(web.len(), 13, "12 running and 1 stopped web instances in this region, not eu-west-1's");
        let running_web =
            select(&a, REGION, &query(&[("tag:team", &["web"]), ("instance-state-name", &["running"])], None, None));
        assert_eq!(running_web.unwrap().0.len(), 12, "filters are ANDed");
        let at_1 = select(&a, REGION, &query(&[("metadata-options.http-put-response-hop-limit", &["1"])], None, None));
        assert_eq!(at_1.unwrap().0.len(), 8, "even-numbered instances (7 of 0..14 in this region, and the own one)");
        assert_eq!(select(&a, "eu-west-1", &query(&[], None, None)).unwrap().0.len(), 1);
        assert!(select(&a, REGION, &query(&[("colour", &["blue"])], None, None)).is_err(), "unknown filter");
    }

    #[test]
    fn describe_pages_with_max_results_and_next_token() {
        let a = fleet();
        let mut token = None;
        let mut seen = Vec::new();
        loop {
            let (page, next) = select(&a, REGION, &query(&[], Some(5), token.as_deref())).unwrap();
            assert!(page.len() <= 5);
            seen.extend(page);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen.len(), 15, "14 instances of this region and the own one, each once");
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 15);
        assert!(select(&a, REGION, &query(&[], Some(4), None)).is_err(), "MaxResults is 5 to 1000");
    }

    #[test]
    fn describe_by_ids_needs_every_id_and_no_max_results() {
        let a = fleet();
        let ids = vec![INSTANCE_ID.to_string(), "i-20000000000000003".to_string()];
        let q = Query { ids: ids.clone(), ..Query::default() };
        assert_eq!(select(&a, REGION, &q).unwrap().0.len(), 2);
        let q = Query { ids: vec!["i-2000000000000000e".into()], ..Query::default() };
        assert_eq!(select(&a, REGION, &q).unwrap_err().0, "InvalidInstanceID.NotFound", "eu-west-1's, not here");
        let q = Query { ids, max_results: Some(5), ..Query::default() };
        assert_eq!(select(&a, REGION, &q).unwrap_err().0, "InvalidParameterCombination");
    }
}
