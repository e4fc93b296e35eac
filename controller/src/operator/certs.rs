//! The webhook's own self-signed CA and serving certificate, rotated by
//! `selfSignConfiguration`. The CA (with its key, and the CA it replaced while that is still
//! valid) lives in Secret `nmstate-webhook-ca`, which only the operator reads; the serving
//! pair and the CA certificate in Secret `nmstate-webhook` (type `kubernetes.io/tls`), which
//! the webhook mounts and re-reads when it changes. Both are owned by the NMState resource.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use knmstate_api::names::field_manager;
use knmstate_deploy::meta::name;
use knmstate_deploy::rotation::Lifetime;
use knmstate_deploy::settings::Rotation;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;

use super::error::OperatorError;

/// Annotation: when the certificate in the Secret was issued (Unix seconds).
const ISSUED: &str = "nmstate.io/issued-at";
/// Annotation of the serving Secret: the CA it was signed by (the CA's issue time).
const SIGNED_BY: &str = "nmstate.io/ca-issued-at";
/// Annotation of the CA Secret: when the previous CA stops being valid (Unix seconds).
const PREVIOUS_UNTIL: &str = "nmstate.io/previous-ca-valid-until";

/// The outcome: the CA bundle to inject and when to look again.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM CA certificates the webhook configurations trust (current, and the previous one
    /// while it is valid).
    pub bundle: String,
    /// Time until the next rotation is due.
    pub due_in: Duration,
}

fn lifetime(rotate: &str, overlap: &str) -> Result<Lifetime, OperatorError> {
    Lifetime::parse(rotate, overlap).ok_or_else(|| OperatorError::ParseInterval {
        value: format!("{rotate}/{overlap}"),
    })
}

fn issue_err(what: &'static str) -> impl Fn(rcgen::Error) -> OperatorError {
    move |source| OperatorError::IssueCertificate { what, source }
}

fn validity(
    params: &mut CertificateParams,
    issued: i64,
    life: &Lifetime,
) -> Result<(), rcgen::Error> {
    let secs = i64::try_from(life.validity().as_secs()).unwrap_or(i64::MAX / 2);
    let at = |t: i64| OffsetDateTime::from_unix_timestamp(t).map_err(|_| rcgen::Error::Time);
    params.not_before = at(issued)?;
    params.not_after = at(issued.saturating_add(secs))?;
    Ok(())
}

/// The CA's parameters: also what an `Issuer` needs to sign with a stored CA key.
fn ca_params(namespace: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("nmstate-webhook-ca.{namespace}"),
    );
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

fn annotation(secret: &Secret, key: &str) -> Option<i64> {
    secret.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

fn secret(
    name: &str,
    namespace: &str,
    type_: &str,
    data: &[(&str, &str)],
    annotations: BTreeMap<String, String>,
    owner: &OwnerReference,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            annotations: Some(annotations),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        type_: Some(type_.to_owned()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

async fn store(api: &Api<Secret>, s: &Secret) -> Result<(), OperatorError> {
    let name = s.metadata.name.clone().unwrap_or_default();
    let params = PatchParams::apply(field_manager::OPERATOR).force();
    api.patch(&name, &params, &Patch::Apply(s))
        .await
        .map(|_| ())
        .map_err(|source| OperatorError::StoreCertificate { name, source })
}

async fn read(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, OperatorError> {
    api.get_opt(name)
        .await
        .map_err(|source| OperatorError::StoreCertificate {
            name: name.to_owned(),
            source,
        })
}

/// A stored CA: certificate, key and issue time, plus the bundle to trust.
struct Ca {
    cert: String,
    key: String,
    issued: i64,
    bundle: String,
}

/// Issue a new CA and store it; the replaced one (`old`) stays in the bundle until it expires.
async fn issue_ca(
    api: &Api<Secret>,
    namespace: &str,
    life: &Lifetime,
    owner: &OwnerReference,
    now: i64,
    old: Option<Ca>,
) -> Result<Ca, OperatorError> {
    let key = KeyPair::generate().map_err(issue_err("CA"))?;
    let mut params = ca_params(namespace);
    validity(&mut params, now, life).map_err(issue_err("CA"))?;
    let cert = params.self_signed(&key).map_err(issue_err("CA"))?.pem();
    let key = key.serialize_pem();
    let mut annotations = BTreeMap::from([(ISSUED.to_owned(), now.to_string())]);
    let mut data = vec![("ca.crt", cert.as_str()), ("ca.key", key.as_str())];
    let validity = i64::try_from(life.validity().as_secs()).unwrap_or(i64::MAX / 2);
    let previous = old
        .map(|o| (o.issued.saturating_add(validity), o.cert))
        .filter(|(until, _)| *until > now);
    if let Some((until, pem)) = &previous {
        annotations.insert(PREVIOUS_UNTIL.to_owned(), until.to_string());
        data.push(("previous-ca.crt", pem.as_str()));
    }
    let s = secret(
        name::WEBHOOK_CA,
        namespace,
        "Opaque",
        &data,
        annotations,
        owner,
    );
    store(api, &s).await?;
    tracing::info!(secret = name::WEBHOOK_CA, "issued a new webhook CA");
    let bundle = format!("{cert}{}", previous.map(|(_, pem)| pem).unwrap_or_default());
    Ok(Ca {
        cert,
        key,
        issued: now,
        bundle,
    })
}

/// The current CA, issuing a new one when there is none or it is due.
async fn ensure_ca(
    api: &Api<Secret>,
    namespace: &str,
    life: &Lifetime,
    owner: &OwnerReference,
    now: i64,
) -> Result<Ca, OperatorError> {
    let stored = read(api, name::WEBHOOK_CA).await?;
    let current = stored.as_ref().and_then(|s| {
        Some(Ca {
            cert: text(s, "ca.crt")?,
            key: text(s, "ca.key")?,
            issued: annotation(s, ISSUED)?,
            bundle: String::new(),
        })
    });
    match current {
        Some(mut ca) if !life.due_in(ca.issued, now).is_zero() => {
            let still_trusted = stored
                .as_ref()
                .and_then(|s| Some((text(s, "previous-ca.crt")?, annotation(s, PREVIOUS_UNTIL)?)))
                .filter(|(_, until)| *until > now)
                .map(|(pem, _)| pem)
                .unwrap_or_default();
            ca.bundle = format!("{}{still_trusted}", ca.cert);
            Ok(ca)
        }
        old => issue_ca(api, namespace, life, owner, now, old).await,
    }
}

/// Make sure the webhook has a valid CA and serving certificate for the Service in
/// `namespace`; issue or rotate them as `rotation` says.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    rotation: &Rotation,
    owner: &OwnerReference,
    now: i64,
) -> Result<Issued, OperatorError> {
    let ca_life = lifetime(&rotation.ca_rotate, &rotation.ca_overlap)?;
    let cert_life = lifetime(&rotation.cert_rotate, &rotation.cert_overlap)?;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let ca = ensure_ca(&api, namespace, &ca_life, owner, now).await?;
    let serving = read(&api, name::WEBHOOK).await?;
    let issued = serving.as_ref().and_then(|s| {
        (annotation(s, SIGNED_BY) == Some(ca.issued) && text(s, "tls.key").is_some())
            .then(|| annotation(s, ISSUED))
            .flatten()
    });
    let cert_issued = match issued {
        Some(t) if !cert_life.due_in(t, now).is_zero() => t,
        _ => {
            let service = name::WEBHOOK;
            let sans = vec![
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}.svc.cluster.local"),
                format!("{service}.{namespace}"),
            ];
            let err = issue_err("serving certificate");
            let mut params = CertificateParams::new(sans).map_err(&err)?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{service}.{namespace}.svc"));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            validity(&mut params, now, &cert_life).map_err(&err)?;
            let ca_key = KeyPair::from_pem(&ca.key).map_err(&err)?;
            let ca_issuer = Issuer::new(ca_params(namespace), ca_key);
            let key = KeyPair::generate().map_err(&err)?;
            let cert = params.signed_by(&key, &ca_issuer).map_err(&err)?;
            let annotations = BTreeMap::from([
                (ISSUED.to_owned(), now.to_string()),
                (SIGNED_BY.to_owned(), ca.issued.to_string()),
            ]);
            let key_pem = key.serialize_pem();
            let cert_pem = cert.pem();
            let data = [
                ("tls.crt", cert_pem.as_str()),
                ("tls.key", key_pem.as_str()),
                ("ca.crt", ca.bundle.as_str()),
            ];
            let s = secret(
                name::WEBHOOK,
                namespace,
                "kubernetes.io/tls",
                &data,
                annotations,
                owner,
            );
            store(&api, &s).await?;
            tracing::info!(
                secret = name::WEBHOOK,
                "issued a new webhook serving certificate"
            );
            now
        }
    };
    Ok(Issued {
        bundle: ca.bundle,
        due_in: ca_life
            .due_in(ca.issued, now)
            .min(cert_life.due_in(cert_issued, now)),
    })
}
