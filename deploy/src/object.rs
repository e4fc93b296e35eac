//! One rendered object of any kind the installation holds, and the installation itself: the
//! objects in the order they are applied.

use k8s_openapi::api::admissionregistration::v1 as adm;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::{ApiResource, DynamicObject};

use crate::RenderError;
use crate::monitoring::{PrometheusRule, ServiceMonitor};

macro_rules! objects {
    ($($variant:ident($ty:ty),)*) => {
        /// A rendered object, typed.
        #[derive(Debug, Clone)]
        #[allow(clippy::large_enum_variant)]
        pub enum Object {
            $(
                #[doc = concat!("A ", stringify!($variant), ".")]
                $variant($ty),
            )*
        }

        impl Object {
            /// The object's metadata.
            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Self::$variant(o) => o.meta(),)*
                }
            }

            /// The object's metadata, to change.
            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Self::$variant(o) => o.meta_mut(),)*
                }
            }

            /// Group, version, kind and plural of the object's type.
            pub fn api_resource(&self) -> ApiResource {
                match self {
                    $(Self::$variant(_) => ApiResource::erase::<$ty>(&()),)*
                }
            }

            /// The object as JSON.
            pub fn to_value(&self) -> Result<serde_json::Value, RenderError> {
                match self {
                    $(Self::$variant(o) => serde_json::to_value(o),)*
                }
                .map_err(|e| RenderError::Serialize { name: self.name_any(), message: e.to_string() })
            }

            fn as_any(&self) -> &dyn std::any::Any {
                match self {
                    $(Self::$variant(o) => o,)*
                }
            }

            /// The kind, e.g. `DaemonSet`.
            pub fn kind(&self) -> String {
                self.api_resource().kind
            }
        }

        $(
            impl From<$ty> for Object {
                fn from(o: $ty) -> Self {
                    Self::$variant(o)
                }
            }
        )*
    };
}

objects! {
    CustomResourceDefinition(CustomResourceDefinition),
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ClusterRole(rbac::ClusterRole),
    ClusterRoleBinding(rbac::ClusterRoleBinding),
    Role(rbac::Role),
    RoleBinding(rbac::RoleBinding),
    NetworkPolicy(NetworkPolicy),
    DaemonSet(DaemonSet),
    Deployment(Deployment),
    PodDisruptionBudget(PodDisruptionBudget),
    Service(Service),
    MutatingWebhookConfiguration(adm::MutatingWebhookConfiguration),
    ValidatingWebhookConfiguration(adm::ValidatingWebhookConfiguration),
    ValidatingAdmissionPolicy(adm::ValidatingAdmissionPolicy),
    ValidatingAdmissionPolicyBinding(adm::ValidatingAdmissionPolicyBinding),
    ServiceMonitor(ServiceMonitor),
    PrometheusRule(PrometheusRule),
}

impl Object {
    /// The object's name.
    pub fn name_any(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }

    /// The object's namespace (`None` for cluster-scoped objects).
    pub fn namespace(&self) -> Option<String> {
        self.meta().namespace.clone()
    }

    /// Whether the NMState resource owns it: everything but CRDs and the Namespace, which
    /// outlive an uninstall (upstream's rule: deleting the CR must not delete user data).
    pub fn owned_by_cr(&self) -> bool {
        !matches!(self, Self::CustomResourceDefinition(_) | Self::Namespace(_))
    }

    /// The object as a [`DynamicObject`] for server-side apply.
    pub fn to_dynamic(&self) -> Result<DynamicObject, RenderError> {
        serde_json::from_value(self.to_value()?).map_err(|e| RenderError::Serialize {
            name: self.name_any(),
            message: e.to_string(),
        })
    }

    /// `kind/namespace/name`, for logs and messages.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{}/{ns}/{}", self.kind(), self.name_any()),
            None => format!("{}/{}", self.kind(), self.name_any()),
        }
    }
}

/// Everything one installation consists of, in upstream's apply order: CRDs, Namespace, RBAC,
/// NetworkPolicies, then the workloads with their Services, admission and monitoring.
#[derive(Debug, Clone, Default)]
pub struct Installation {
    /// The objects, in apply order.
    pub objects: Vec<Object>,
}

impl Installation {
    /// The objects of one kind, e.g. `installation.of::<DaemonSet>()`.
    pub fn of<K>(&self) -> Vec<&K>
    where
        K: Resource<DynamicType = ()> + 'static,
    {
        self.objects
            .iter()
            .filter_map(|o| o.as_any().downcast_ref::<K>())
            .collect()
    }

    /// The object of kind `K` named `name`, if rendered.
    pub fn get<K>(&self, name: &str) -> Option<&K>
    where
        K: Resource<DynamicType = ()> + 'static,
    {
        self.of::<K>()
            .into_iter()
            .find(|o| o.meta().name.as_deref() == Some(name))
    }

    /// `kind/namespace/name` of every object, in apply order.
    pub fn names(&self) -> Vec<String> {
        self.objects.iter().map(Object::describe).collect()
    }

    /// Whether an object of `kind` named `name` is rendered.
    pub fn contains(&self, kind: &str, name: &str) -> bool {
        self.objects
            .iter()
            .any(|o| o.kind() == kind && o.name_any() == name)
    }
}
