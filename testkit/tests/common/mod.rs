//! Shared helpers of the stand-in's tests: a generic `Widget` custom resource and server setup.

#![allow(dead_code)]

pub mod steps;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use knmstate_testkit::apiserver::{ApiServer, Config};
use knmstate_testkit::poll::eventually;
use kube::api::{Api, PostParams};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A test kind with a status subresource, conditions and printer columns.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wd",
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.status==\"True\")].type"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct WidgetSpec {
    /// How big.
    pub size: i64,
    /// Optional colour, defaulted by the schema to "blue".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "blue"))]
    pub color: Option<String>,
}

/// Widget status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    /// Conditions, a list keyed by type (for server-side apply).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<WidgetCondition>,
    /// Last generation handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A condition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct WidgetCondition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A server with default settings on 127.0.0.1, port 0.
pub async fn server() -> ApiServer {
    ApiServer::start(Config::default())
        .await
        .expect("start the stand-in")
}

/// Installs the Widget CRD and waits until it is served.
pub async fn install_widget_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .expect("create CRD");
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    eventually("widgets served", Duration::from_millis(2500), || async {
        widgets.list(&Default::default()).await.is_ok()
    })
    .await
    .expect("the Widget CRD is served");
}

/// A Widget object.
pub fn widget(name: &str, size: i64) -> Widget {
    Widget::new(name, WidgetSpec { size, color: None })
}
