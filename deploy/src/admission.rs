//! Admission: the mutating and validating webhook configurations and the
//! `ValidatingAdmissionPolicies` with their bindings (the policy rules, and the node restriction
//! of handlers). Their rules are written once, in `config/webhook/` and `config/admission/`;
//! the renderer reads them at compile time and sets the namespace, the name prefix, the CA
//! bundle and the handler's identity.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1 as adm;
use serde::de::DeserializeOwned;

use crate::meta::{self, name};
use crate::object::Object;
use crate::{InstallSettings, RenderError};

const MUTATING: &str = include_str!("../../config/webhook/mutating.yaml");
const VALIDATING: &str = include_str!("../../config/webhook/validating.yaml");
const POLICY: &str = include_str!("../../config/admission/validating-admission-policy.yaml");
const NODE_RESTRICTION: &str = include_str!("../../config/admission/node-restriction.yaml");

/// The policies' sources: file name and text.
const POLICIES: [(&str, &str); 2] = [
    ("config/admission/validating-admission-policy.yaml", POLICY),
    ("config/admission/node-restriction.yaml", NODE_RESTRICTION),
];

/// The matchCondition the renderer points at the handler's ServiceAccount.
const HANDLER_IDENTITY: &str = "handler-identity";

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

/// The two webhook configurations and the admission policies with their bindings.
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
    let mut out: Vec<Object> = vec![mutating.into(), validating.into()];
    for (file, text) in POLICIES {
        let docs: Vec<serde_json::Value> = parse(file, text)?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            out.push(policy_object(file, doc, s)?);
        }
    }
    Ok(out)
}

/// A policy or binding of `file`, named with the prefix; a policy's `handler-identity`
/// condition names the handler's ServiceAccount in the install namespace.
fn policy_object(
    file: &'static str,
    doc: serde_json::Value,
    s: &InstallSettings,
) -> Result<Object, RenderError> {
    let typed = |e: serde_json::Error| RenderError::Source {
        file,
        message: e.to_string(),
    };
    match doc["kind"].as_str() {
        Some("ValidatingAdmissionPolicy") => {
            let mut p: adm::ValidatingAdmissionPolicy =
                serde_json::from_value(doc).map_err(typed)?;
            let n = s.prefixed(p.metadata.name.as_deref().unwrap_or_default());
            p.metadata = meta::meta(&n, None, None);
            let handler = format!(
                "system:serviceaccount:{}:{}",
                s.namespace,
                s.prefixed(name::HANDLER)
            );
            let spec = p
                .spec
                .as_mut()
                .and_then(|spec| spec.match_conditions.as_mut());
            for c in spec.into_iter().flatten() {
                if c.name == HANDLER_IDENTITY {
                    c.expression = format!("request.userInfo.username == '{handler}'");
                }
            }
            Ok(p.into())
        }
        Some("ValidatingAdmissionPolicyBinding") => {
            let mut b: adm::ValidatingAdmissionPolicyBinding =
                serde_json::from_value(doc).map_err(typed)?;
            let n = s.prefixed(b.metadata.name.as_deref().unwrap_or_default());
            b.metadata = meta::meta(&n, None, None);
            b.spec.policy_name = s.prefixed(&b.spec.policy_name);
            Ok(b.into())
        }
        other => Err(RenderError::Source {
            file,
            message: format!("unexpected kind {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_restriction_names_the_installed_handler() {
        let s = InstallSettings {
            namespace: "net".into(),
            prefix: "alt".into(),
            ..InstallSettings::default()
        };
        let restriction = objects(&s)
            .unwrap()
            .into_iter()
            .find_map(|o| match o {
                Object::ValidatingAdmissionPolicy(p)
                    if p.metadata.name.as_deref() == Some("alt-nmstate-node-restriction") =>
                {
                    Some(p)
                }
                _ => None,
            })
            .expect("the node restriction policy");
        let conditions = restriction.spec.unwrap().match_conditions.unwrap();
        let identity = conditions
            .iter()
            .find(|c| c.name == HANDLER_IDENTITY)
            .unwrap();
        assert_eq!(
            identity.expression,
            "request.userInfo.username == 'system:serviceaccount:net:alt-nmstate-handler'"
        );
    }
}
