//! The stand-in as knmstate's own tests start it: with the `nmstate.io` CRDs installed.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use knmstate_api::crd::CrdError;
use kube::Api;
use kube::api::PostParams;

use super::{ApiServer, Config, StartError};

/// What can go wrong starting a stand-in with the nmstate CRDs.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The stand-in did not start.
    #[error("failed to start the API stand-in")]
    Start(#[source] StartError),
    /// The CRDs could not be generated.
    #[error("failed to generate the nmstate CRDs")]
    Generate(#[source] CrdError),
    /// A client or a CRD write failed.
    #[error("failed to install the nmstate CRDs")]
    Install(#[source] kube::Error),
}

impl SetupError {
    /// Stable name of the failure class.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Start(e) => e.category(),
            Self::Generate(_) => "generate-crds-failed",
            Self::Install(_) => "install-crds-failed",
        }
    }
}

/// Start a stand-in with `config` and install every `nmstate.io` CRD; the server and a client.
pub async fn start_with_crds(config: Config) -> Result<(ApiServer, kube::Client), SetupError> {
    let server = ApiServer::start(config).await.map_err(SetupError::Start)?;
    let client = server.client().map_err(SetupError::Install)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in knmstate_api::crd::all().map_err(SetupError::Generate)? {
        crds.create(&PostParams::default(), &crd)
            .await
            .map_err(SetupError::Install)?;
    }
    Ok((server, client))
}

#[cfg(test)]
mod tests {
    use super::*;
    use knmstate_api::v1::NodeNetworkConfigurationPolicy;

    #[tokio::test]
    async fn policies_are_served_once_started() {
        let (server, client) = start_with_crds(Config::default()).await.unwrap();
        let policies: Api<NodeNetworkConfigurationPolicy> = Api::all(client);
        assert!(
            policies
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
        server.shutdown().await;
    }
}
