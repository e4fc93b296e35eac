//! The NMState status: what is still rolling out, and the conditions written with
//! server-side apply (field manager `knmstate-operator`, forced, as upstream) when their
//! meaning changes.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::names::field_manager;
use knmstate_api::shared::NMStateStatus;
use knmstate_api::v1::{NMState, NMStateSpec};
use knmstate_deploy::rollout::{Verdict, conditions, daemon_set_pending, deployment_pending};
use knmstate_deploy::{Installation, Object};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

use super::error::OperatorError;

/// One line per DaemonSet or Deployment of `installation` that is not rolled out, read from
/// the API (their status is the kubelets' and the workload controllers' to write).
pub async fn pending(
    client: &Client,
    installation: &Installation,
) -> Result<Vec<String>, OperatorError> {
    let mut out = Vec::new();
    for o in &installation.objects {
        let ns = o.namespace().unwrap_or_default();
        let read = |source| OperatorError::ReadWorkload {
            object: o.describe(),
            source,
        };
        let line = match o {
            Object::DaemonSet(_) => {
                let api: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
                daemon_set_pending(&api.get(&o.name_any()).await.map_err(read)?)
            }
            Object::Deployment(_) => {
                let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
                deployment_pending(&api.get(&o.name_any()).await.map_err(read)?)
            }
            _ => None,
        };
        out.extend(line);
    }
    Ok(out)
}

/// Move the resource's conditions to `verdict`; written only when their meaning changes.
pub async fn write(client: &Client, cr: &NMState, verdict: &Verdict) -> Result<(), OperatorError> {
    let current = cr.status.clone().unwrap_or_default().conditions;
    let next = conditions(&current, verdict, &Time(Timestamp::now()));
    if next.same_meaning(&current) {
        return Ok(());
    }
    let name = cr.name_any();
    // Identity and status: on the status subresource the (empty) spec is not applied.
    let mut body = NMState::new(&name, NMStateSpec::default());
    body.status = Some(NMStateStatus { conditions: next });
    let api: Api<NMState> = Api::all(client.clone());
    let params = PatchParams::apply(field_manager::OPERATOR).force();
    match api.patch_status(&name, &params, &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(OperatorError::WriteStatus { name, source }),
    }
}
