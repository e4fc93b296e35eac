//! The resource registry: built-in kinds and the kinds that CustomResourceDefinitions add.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};

/// One additional printer column of a CRD version.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// Optional format.
    pub format: String,
    /// Column description.
    pub description: String,
    /// 0 shows by default, above 0 only with `-o wide`.
    pub priority: i64,
    /// Simple JSONPath relative to the object.
    pub json_path: String,
}

/// A kind served by the stand-in.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// Served versions, in preference order.
    pub versions: Vec<String>,
    /// The version objects are stored at.
    pub storage_version: String,
    /// Plural resource name (URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// List kind.
    pub list_kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories (`all`, ...).
    pub categories: Vec<String>,
    /// Whether `/status` is a separate subresource.
    pub status_subresource: bool,
    /// openAPIV3Schema per version (custom resources only).
    pub schemas: BTreeMap<String, Value>,
    /// Printer columns per version (custom resources only).
    pub columns: BTreeMap<String, Vec<PrinterColumn>>,
    /// Defined by a CRD.
    pub custom: bool,
}

impl ResourceType {
    /// `group/version` or `version` for core.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// Whether this is a create-only review (`TokenReview`, `SubjectAccessReview`, ...): the
    /// groups `authentication.k8s.io` and `authorization.k8s.io` hold nothing else.
    pub fn is_review(&self) -> bool {
        matches!(
            self.group.as_str(),
            "authentication.k8s.io" | "authorization.k8s.io"
        )
    }

    /// Whether `version` is served.
    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.to_owned(),
        versions: vec![version.to_owned()],
        storage_version: version.to_owned(),
        plural: plural.to_owned(),
        singular: kind.to_lowercase(),
        kind: kind.to_owned(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_owned()).collect(),
        categories: Vec::new(),
        status_subresource: status,
        schemas: BTreeMap::new(),
        columns: BTreeMap::new(),
        custom: false,
    }
}

/// The built-in kinds an installation of knmstate writes besides the core ones: workloads,
/// RBAC, NetworkPolicies, disruption budgets and admission policies. Stored and served like any
/// other kind (no controller acts on them: the box's stand-in kubelet does for the workloads).
fn installation_kinds() -> Vec<ResourceType> {
    let mut daemon_sets = builtin("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], true);
    daemon_sets.categories = vec!["all".into()];
    let mut deployments = builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        true,
    );
    deployments.categories = vec!["all".into()];
    let rbac = "rbac.authorization.k8s.io";
    let adm = "admissionregistration.k8s.io";
    vec![
        daemon_sets,
        deployments,
        builtin("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
        builtin(rbac, "v1", "clusterroles", "ClusterRole", false, &[], false),
        builtin(
            rbac,
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
        ),
        builtin(rbac, "v1", "roles", "Role", true, &[], false),
        builtin(rbac, "v1", "rolebindings", "RoleBinding", true, &[], false),
        builtin(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"],
            false,
        ),
        builtin(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            &["pdb"],
            true,
        ),
        builtin(
            adm,
            "v1",
            "validatingadmissionpolicies",
            "ValidatingAdmissionPolicy",
            false,
            &[],
            true,
        ),
        builtin(
            adm,
            "v1",
            "validatingadmissionpolicybindings",
            "ValidatingAdmissionPolicyBinding",
            false,
            &[],
            false,
        ),
    ]
}

/// The review kinds: create-only questions about who a token is and what a user may do.
fn review_kinds() -> Vec<ResourceType> {
    let authn = "authentication.k8s.io";
    let authz = "authorization.k8s.io";
    [
        (authn, "tokenreviews", "TokenReview", false),
        (authn, "selfsubjectreviews", "SelfSubjectReview", false),
        (authz, "subjectaccessreviews", "SubjectAccessReview", false),
        (
            authz,
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            false,
        ),
        (
            authz,
            "localsubjectaccessreviews",
            "LocalSubjectAccessReview",
            true,
        ),
    ]
    .into_iter()
    .map(|(group, plural, kind, namespaced)| {
        builtin(group, "v1", plural, kind, namespaced, &[], false)
    })
    .collect()
}

/// The built-in kinds.
pub fn builtins() -> Vec<ResourceType> {
    let mut pods = builtin("", "v1", "pods", "Pod", true, &["po"], true);
    pods.categories = vec!["all".into()];
    let mut services = builtin("", "v1", "services", "Service", true, &["svc"], true);
    services.categories = vec!["all".into()];
    let mut all = installation_kinds();
    all.extend(review_kinds());
    all.extend(vec![
        builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true),
        builtin("", "v1", "nodes", "Node", false, &["no"], true),
        pods,
        builtin("", "v1", "events", "Event", true, &["ev"], false),
        builtin("", "v1", "secrets", "Secret", true, &[], false),
        builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
        services,
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[],
            false,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            &[],
            false,
        ),
    ]);
    all
}

/// The strings of a JSON array (none when it is not one).
pub fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the kind a CustomResourceDefinition defines, checking the parts the stand-in relies on.
pub fn from_crd(crd: &Value) -> ApiResult<ResourceType> {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &crd["spec"];
    let bad = |m: &str| {
        ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            name,
            &[("spec".into(), m.to_owned())],
        )
    };
    let group = spec["group"]
        .as_str()
        .ok_or_else(|| bad("spec.group: Required value"))?;
    let names = &spec["names"];
    let plural = names["plural"]
        .as_str()
        .ok_or_else(|| bad("spec.names.plural: Required value"))?;
    let kind = names["kind"]
        .as_str()
        .ok_or_else(|| bad("spec.names.kind: Required value"))?;
    if name != format!("{plural}.{group}") {
        return Err(bad(&format!(
            "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        )));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => {
            return Err(bad(
                "spec.scope: Unsupported value: must be Namespaced or Cluster",
            ));
        }
    };
    let vers = spec["versions"].as_array().cloned().unwrap_or_default();
    if vers.is_empty() {
        return Err(bad("spec.versions: Required value"));
    }
    let storage: Vec<&Value> = vers
        .iter()
        .filter(|v| v["storage"] == json!(true))
        .collect();
    if storage.len() != 1 {
        return Err(bad(
            "spec.versions: Invalid value: must have exactly one version marked as storage version",
        ));
    }
    let storage_version = storage[0]["name"].as_str().unwrap_or_default().to_owned();
    let mut versions = Vec::new();
    let mut schemas = BTreeMap::new();
    let mut columns = BTreeMap::new();
    let mut status_subresource = false;
    for v in &vers {
        let vname = v["name"].as_str().unwrap_or_default().to_owned();
        if v["served"] == json!(true) {
            versions.push(vname.clone());
        }
        if let Some(s) = v.pointer("/schema/openAPIV3Schema") {
            schemas.insert(vname.clone(), s.clone());
        }
        if v.pointer("/subresources/status").is_some() {
            status_subresource = true;
        }
        let cols = v["additionalPrinterColumns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: c["name"].as_str().unwrap_or_default().to_owned(),
                        type_: c["type"].as_str().unwrap_or("string").to_owned(),
                        format: c["format"].as_str().unwrap_or_default().to_owned(),
                        description: c["description"].as_str().unwrap_or_default().to_owned(),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        json_path: c["jsonPath"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        columns.insert(vname, cols);
    }
    let list_kind = names["listKind"]
        .as_str()
        .map_or_else(|| format!("{kind}List"), str::to_owned);
    Ok(ResourceType {
        group: group.to_owned(),
        versions,
        storage_version,
        plural: plural.to_owned(),
        singular: names["singular"]
            .as_str()
            .map_or_else(|| kind.to_lowercase(), str::to_owned),
        kind: kind.to_owned(),
        list_kind,
        namespaced,
        short_names: strs(&names["shortNames"]),
        categories: strs(&names["categories"]),
        status_subresource,
        schemas,
        columns,
        custom: true,
    })
}

/// The kinds being served, keyed by `(group, plural)`.
#[derive(Debug, Clone)]
pub struct Registry {
    types: BTreeMap<(String, String), ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        let types = builtins()
            .into_iter()
            .map(|t| ((t.group.clone(), t.plural.clone()), t))
            .collect();
        Self { types }
    }
}

impl Registry {
    /// Looks a kind up by group and plural.
    pub fn get(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.types.get(&(group.to_owned(), plural.to_owned()))
    }

    /// Looks a kind up by group and kind name.
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .values()
            .find(|t| t.group == group && t.kind == kind)
    }

    /// Adds or replaces a custom kind.
    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert((t.group.clone(), t.plural.clone()), t);
    }

    /// Removes a custom kind.
    pub fn remove(&mut self, group: &str, plural: &str) {
        self.types.remove(&(group.to_owned(), plural.to_owned()));
    }

    /// All kinds.
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }
}
