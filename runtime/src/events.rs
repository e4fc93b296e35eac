//! The Kubernetes event recorder, named for the binary that reports.

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

/// A recorder whose events say they come from `controller` (the binary's field manager, e.g.
/// `knmstate-handler`), from `instance` when one is given (e.g. `<node>.nmstate-handler` or the
/// controller replica's identity).
pub fn recorder(client: Client, controller: &str, instance: Option<String>) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: controller.to_owned(),
            instance,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Bytes;
    use axum::http::StatusCode;
    use axum::routing::post;
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::{Event, EventType};
    use std::sync::{Arc, Mutex};

    /// The events the fake API server received, as JSON.
    type Received = Arc<Mutex<Vec<serde_json::Value>>>;

    /// A client whose API server is an in-process router accepting event creations.
    fn client(received: Received) -> Client {
        let api = Router::new().route(
            "/apis/events.k8s.io/v1/namespaces/{namespace}/events",
            post(move |body: Bytes| async move {
                let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                received.lock().unwrap().push(event);
                (StatusCode::CREATED, body)
            }),
        );
        Client::new(api, "default")
    }

    #[tokio::test]
    async fn events_carry_the_reporter_name_and_instance() {
        let received = Received::default();
        let recorder = recorder(
            client(received.clone()),
            "knmstate-handler",
            Some("node-1.nmstate-handler".to_owned()),
        );
        let node = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Node".to_owned()),
            name: Some("node-1".to_owned()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Normal,
            reason: "ConfigurationApplied".to_owned(),
            note: Some("applied".to_owned()),
            action: "Apply".to_owned(),
            secondary: None,
        };
        recorder.publish(&event, &node).await.unwrap();

        let received = received.lock().unwrap();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0]["reportingController"], "knmstate-handler");
        assert_eq!(received[0]["reportingInstance"], "node-1.nmstate-handler");
        assert_eq!(received[0]["regarding"]["name"], "node-1");
        assert_eq!(received[0]["reason"], "ConfigurationApplied");
    }
}
