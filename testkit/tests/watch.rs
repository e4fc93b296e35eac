//! Watch semantics: resourceVersion, bookmarks, timeouts, 410 Gone, initial events, selectors.

mod common;

use std::time::Duration;

use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use knmstate_testkit::apiserver::{ApiServer, Config};
use knmstate_testkit::poll::eventually;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};

const CM: &str = "/api/v1/namespaces/default/configmaps";

/// Reads newline-delimited watch events until `n` arrived, the stream ends, or `timeout`.
struct Lines {
    body: kube::client::Body,
    buf: Vec<u8>,
    ended: bool,
}

impl Lines {
    async fn open(client: &kube::Client, query: &str) -> Self {
        let req = http::Request::get(format!("{CM}?watch=true&{query}"))
            .body(Vec::new())
            .unwrap();
        let resp = client.send(req.map(Into::into)).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        Self {
            body: resp.into_body(),
            buf: Vec::new(),
            ended: false,
        }
    }

    async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return None,
                Ok(None) => self.ended = true,
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
                Ok(Some(Err(e))) => panic!("watch body: {e}"),
            }
        }
    }

    /// The next event that is not a bookmark.
    async fn next_event(&mut self) -> Value {
        loop {
            let ev = self.next(Duration::from_secs(5)).await.expect("an event");
            if ev["type"] != "BOOKMARK" {
                return ev;
            }
        }
    }
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    let mut v = json!({"metadata": {"name": name}, "data": {"k": "v"}});
    v["metadata"]["labels"] = labels;
    serde_json::from_value(v).unwrap()
}

async fn start(window: usize) -> (ApiServer, kube::Client, Api<ConfigMap>) {
    let server = ApiServer::start(Config {
        event_window: window,
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await
    .unwrap();
    let client = server.client().unwrap();
    let api = Api::namespaced(client.clone(), "default");
    (server, client, api)
}

#[tokio::test]
async fn events_after_a_resource_version_in_order() {
    let (server, client, api) = start(1000).await;
    let a = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let rv = a.resource_version().unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    let mut w = Lines::open(&client, &format!("resourceVersion={rv}")).await;
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let mut types: Vec<(String, String)> = Vec::new();
    for _ in 0..3 {
        let e = w.next_event().await;
        types.push((
            e["type"].as_str().unwrap().to_owned(),
            e["object"]["metadata"]["name"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        types,
        [
            ("MODIFIED".into(), "a".into()),
            ("ADDED".into(), "b".into()),
            ("DELETED".into(), "a".into())
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bookmarks_and_timeout() {
    let (server, client, api) = start(1000).await;
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let rv = server.store().resource_version();
    let started = tokio::time::Instant::now();
    let mut w = Lines::open(
        &client,
        &format!("resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=1"),
    )
    .await;
    let ev = w.next(Duration::from_secs(3)).await.expect("a bookmark");
    assert_eq!(ev["type"], "BOOKMARK");
    assert_eq!(
        ev["object"]["metadata"]["resourceVersion"],
        json!(rv.to_string())
    );
    while w.next(Duration::from_secs(3)).await.is_some() {}
    assert!(w.ended, "the server ends the watch at timeoutSeconds");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn expired_resource_version_is_gone() {
    let (server, client, api) = start(3).await;
    for i in 0..6 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut w = Lines::open(&client, "resourceVersion=2").await;
    let ev = w
        .next(Duration::from_secs(3))
        .await
        .expect("an error event");
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    assert!(w.next(Duration::from_secs(3)).await.is_none());
    // A recent version still works.
    let rv = server.store().resource_version() - 1;
    let mut w = Lines::open(&client, &format!("resourceVersion={rv}")).await;
    assert_eq!(w.next_event().await["object"]["metadata"]["name"], "c5");
    server.shutdown().await;
}

#[tokio::test]
async fn initial_events_end_with_a_bookmark() {
    let (server, client, api) = start(1000).await;
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    let mut w = Lines::open(
        &client,
        "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
    )
    .await;
    assert_eq!(
        w.next(Duration::from_secs(3)).await.unwrap()["type"],
        "ADDED"
    );
    assert_eq!(
        w.next(Duration::from_secs(3)).await.unwrap()["type"],
        "ADDED"
    );
    let bm = w.next(Duration::from_secs(3)).await.unwrap();
    assert_eq!(bm["type"], "BOOKMARK");
    assert_eq!(
        bm["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn label_selector_transitions() {
    let (server, client, api) = start(1000).await;
    api.create(&PostParams::default(), &cm("a", json!({"app": "web"})))
        .await
        .unwrap();
    let rv = server.store().resource_version();
    let mut w = Lines::open(
        &client,
        &format!("resourceVersion={rv}&labelSelector=app%3Dweb"),
    )
    .await;
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &cm("b", json!({"app": "db"})))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    let e1 = w.next_event().await;
    let e2 = w.next_event().await;
    assert_eq!(
        (
            e1["type"].as_str(),
            e1["object"]["metadata"]["name"].as_str()
        ),
        (Some("DELETED"), Some("a"))
    );
    assert_eq!(
        (
            e2["type"].as_str(),
            e2["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("a"))
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher_converges() {
    let (server, _client, api) = start(1000).await;
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let (reader, writer) = reflector::store::<ConfigMap>();
    let cfg = watcher::Config::default().streaming_lists();
    let task = tokio::spawn(
        reflector(writer, watcher(api.clone(), cfg))
            .applied_objects()
            .for_each(|_| async {}),
    );
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    eventually(
        "two objects in the store",
        Duration::from_secs(10),
        || async { reader.state().len() == 2 },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: store has {} objects", reader.state().len()));
    task.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_watcher_converges() {
    let (server, client, api) = start(1000).await;
    api.create(&PostParams::default(), &cm("a", json!({"x": "1"})))
        .await
        .unwrap();
    let meta = api.get_metadata("a").await.unwrap();
    assert_eq!(meta.labels().get("x").map(String::as_str), Some("1"));
    let (reader, writer) = reflector::store();
    let meta_api: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(client.clone(), "default");
    let stream = watcher(meta_api, watcher::Config::default());
    let task = tokio::spawn(
        reflector(writer, stream)
            .applied_objects()
            .for_each(|_| async {}),
    );
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    eventually(
        "two objects in the store",
        Duration::from_secs(10),
        || async { reader.state().len() == 2 },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: store has {} objects", reader.state().len()));
    task.abort();
    server.shutdown().await;
}
