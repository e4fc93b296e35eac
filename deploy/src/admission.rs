//! Admission: the mutating and validating webhook configurations and the
//! ValidatingAdmissionPolicy with its binding. Their rules are written once, in
//! `config/webhook/` and `config/admission/`; the renderer reads them at compile time and sets
//! the namespace, the name prefix and the CA bundle.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1 as adm;
use serde::de::DeserializeOwned;

use crate::meta::{self, name};
use crate::object::Object;
use crate::{InstallSettings, RenderError};

const MUTATING: &str = include_str!("../../config/webhook/mutating.yaml");
const VALIDATING: &str = include_str!("../../config/webhook/validating.yaml");
const POLICY: &str = include_str!("../../config/admission/validating-admission-policy.yaml");

fn parse<T: DeserializeOwned>(file: &'static str, text: &str) -> Result<Vec<T>, RenderError> {
    serde_saphyr::from_multiple(text).map_err(|e| RenderError::Source {
        file,
        message: e.to_string(),
    })
}

fn one<T: DeserializeOwned>(file: &'static str, text: &str) -> Result<T, RenderError> {
    parse::<T>(file, text)?
        .into_iter()
        .next()
        .ok_or_else(|| RenderError::Source {
            file,
            message: "no document".into(),
        })
}

/// Point a webhook's client at the Service in `namespace` and trust `ca`.
fn client(config: &mut adm::WebhookClientConfig, s: &InstallSettings) {
    if let Some(svc) = config.service.as_mut() {
        svc.namespace.clone_from(&s.namespace);
        name::WEBHOOK.clone_into(&mut svc.name);
    }
    config.ca_bundle = s
        .webhook_ca_bundle
        .as_ref()
        .map(|pem| ByteString(pem.as_bytes().to_vec()));
}

/// The two webhook configurations and the admission policy with its binding.
pub fn objects(s: &InstallSettings) -> Result<Vec<Object>, RenderError> {
    let mut mutating: adm::MutatingWebhookConfiguration =
        one("config/webhook/mutating.yaml", MUTATING)?;
    mutating.metadata = meta::meta(&s.prefixed(name::MUTATING), None, None);
    for w in mutating.webhooks.iter_mut().flatten() {
        client(&mut w.client_config, s);
    }
    let mut validating: adm::ValidatingWebhookConfiguration =
        one("config/webhook/validating.yaml", VALIDATING)?;
    validating.metadata = meta::meta(&s.prefixed(name::VALIDATING), None, None);
    for w in validating.webhooks.iter_mut().flatten() {
        client(&mut w.client_config, s);
    }
    let docs: Vec<serde_json::Value> =
        parse("config/admission/validating-admission-policy.yaml", POLICY)?;
    let mut out: Vec<Object> = vec![mutating.into(), validating.into()];
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let typed = |e: serde_json::Error| RenderError::Source {
            file: "config/admission/validating-admission-policy.yaml",
            message: e.to_string(),
        };
        match doc["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => {
                let mut p: adm::ValidatingAdmissionPolicy =
                    serde_json::from_value(doc).map_err(typed)?;
                let n = s.prefixed(p.metadata.name.as_deref().unwrap_or_default());
                p.metadata = meta::meta(&n, None, None);
                out.push(p.into());
            }
            Some("ValidatingAdmissionPolicyBinding") => {
                let mut b: adm::ValidatingAdmissionPolicyBinding =
                    serde_json::from_value(doc).map_err(typed)?;
                let n = s.prefixed(b.metadata.name.as_deref().unwrap_or_default());
                b.metadata = meta::meta(&n, None, None);
                b.spec.policy_name = s.prefixed(&b.spec.policy_name);
                out.push(b.into());
            }
            other => {
                return Err(RenderError::Source {
                    file: "config/admission/validating-admission-policy.yaml",
                    message: format!("unexpected kind {other:?}"),
                });
            }
        }
    }
    Ok(out)
}
