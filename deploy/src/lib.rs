//! # knmstate-deploy
//!
//! The installation as data: [`render`] turns an `NMState` spec and [`InstallSettings`]
//! (namespace, image, name prefix, topology, CA bundle) into the typed Kubernetes objects of
//! one installation, in upstream's apply order. Pure: no client, no files, no clock. Two install
//! paths use it: the operator (`knmstate-controller operator`) applies it for the `NMState`
//! resource, and `deploygen` writes it with default settings as the kustomize tree
//! `config/default/` (plus the operator's own bundle, `config/operator/`).
//!
//! | module | role |
//! |---|---|
//! | [`settings`] | install settings and the NMState knobs with upstream's defaults |
//! | [`rbac`] | accounts, roles and bindings, every verb from a call site |
//! | [`handler`] | the handler DaemonSet |
//! | [`workloads`] | controller and webhook Deployments, PodDisruptionBudget, Services |
//! | [`admission`] | webhook configurations (CA bundle injected) and the admission policy |
//! | [`monitoring`] | ServiceMonitor and PrometheusRule types and objects |
//! | [`netpol`] | NetworkPolicies |
//! | [`topology`] | which nodes count for the webhook's replicas |
//! | [`operator`] | the operator's own bundle, its roles derived from the installation |
//! | [`rollout`] | the NMState conditions from the workloads' status |
//! | [`rotation`] | the webhook certificates' rotation rule from `selfSignConfiguration` |
//! | [`object`] | one typed object of any rendered kind; the ordered installation |
//!
//! Deliberate differences from upstream: the webhook configurations carry the CA bundle the
//! caller passes (the operator issues the certificate itself, no cert-manager Deployment);
//! `metricsConfiguration.bindAddress` is honoured (upstream ignores it); a node counts for the
//! webhook's topology when the webhook can be scheduled on it (see [`topology`]).
//!
//! ```
//! use knmstate_api::v1::NMStateSpec;
//! use knmstate_deploy::{InstallSettings, render};
//! let installation = render(&NMStateSpec::default(), &InstallSettings::default()).unwrap();
//! assert!(installation.contains("DaemonSet", "nmstate-handler"));
//! ```

pub mod admission;
pub mod handler;
pub mod meta;
pub mod monitoring;
pub mod netpol;
pub mod object;
pub mod operator;
mod pod;
pub mod rbac;
pub mod rollout;
pub mod rotation;
pub mod settings;
pub mod topology;
pub mod tree;
pub mod workloads;

pub use object::{Installation, Object};
pub use settings::{InstallSettings, Knobs};

/// What could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A manifest compiled into the renderer (`config/webhook/`, `config/admission/`) does not
    /// parse into its type.
    #[error("failed to read the embedded {file}: {message}")]
    Source {
        /// The file, relative to the repository.
        file: &'static str,
        /// What the parser reported.
        message: String,
    },
    /// The CRDs could not be generated.
    #[error("failed to generate the CRDs")]
    Crds {
        /// What the generator reported.
        #[from]
        source: knmstate_api::crd::CrdError,
    },
    /// An object could not be turned into JSON or YAML.
    #[error("failed to serialize {name}: {message}")]
    Serialize {
        /// The object.
        name: String,
        /// What the serializer reported.
        message: String,
    },
}

impl RenderError {
    /// A stable, kebab-case category (the operator's condition messages and metrics).
    pub fn category(&self) -> &'static str {
        match self {
            Self::Source { .. } => "read-embedded-manifest-failed",
            Self::Crds { .. } => "generate-crds-failed",
            Self::Serialize { .. } => "serialize-object-failed",
        }
    }
}

/// Every object of the installation `spec` describes, in apply order: CRDs, Namespace, RBAC,
/// NetworkPolicies, the handler, the controller, the webhook with its disruption budget,
/// Services and admission configuration, then monitoring.
pub fn render(
    spec: &knmstate_api::v1::NMStateSpec,
    s: &InstallSettings,
) -> Result<Installation, RenderError> {
    let knobs = Knobs::of(spec);
    let mut objects: Vec<Object> = knmstate_api::crd::all()?
        .into_iter()
        .map(|(_, crd)| crd.into())
        .collect();
    objects.push(meta::namespace(&s.namespace).into());
    objects.extend(rbac::objects(s));
    objects.extend(netpol::objects(&knobs, s).into_iter().map(Object::from));
    objects.push(handler::daemon_set(&knobs, s).into());
    objects.push(workloads::controller(&knobs, s).into());
    objects.push(workloads::webhook(&knobs, s).into());
    objects.push(workloads::webhook_pdb(s).into());
    objects.push(workloads::webhook_service(s).into());
    objects.push(workloads::monitor_service(&knobs, s).into());
    objects.extend(admission::objects(s)?);
    objects.push(monitoring::service_monitor(s).into());
    objects.push(monitoring::prometheus_rule(s).into());
    Ok(Installation { objects })
}
