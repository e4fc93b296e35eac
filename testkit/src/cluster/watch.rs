//! A watch on a policy's enactments that records the condition sequences each node went
//! through.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::DynamicObject;

use super::{E2e, POLICY_LABEL, active_condition, is_true};

/// What a watch on a policy's enactments saw: per node, the sequence of active conditions
/// (`Type/Reason`, consecutive repeats folded), and the most enactments ever seen `True` at
/// once per condition type.
#[derive(Debug, Default, Clone)]
pub struct EnactmentLog {
    /// Node → active condition sequence.
    pub sequences: BTreeMap<String, Vec<String>>,
    /// Condition type → most enactments with it `True` at the same time.
    pub peak: BTreeMap<String, usize>,
    current: BTreeMap<String, DynamicObject>,
}

impl EnactmentLog {
    fn observe(&mut self, e: DynamicObject) {
        let node = e
            .labels()
            .get("nmstate.io/node")
            .cloned()
            .unwrap_or_else(|| e.name_any());
        let active =
            active_condition(&e).map_or_else(|| "None".into(), |(t, r, _)| format!("{t}/{r}"));
        let seq = self.sequences.entry(node.clone()).or_default();
        if seq.last() != Some(&active) {
            seq.push(active);
        }
        self.current.insert(node, e);
        self.count();
    }

    fn forget(&mut self, e: &DynamicObject) {
        let node = e
            .labels()
            .get("nmstate.io/node")
            .cloned()
            .unwrap_or_else(|| e.name_any());
        self.current.remove(&node);
    }

    fn count(&mut self) {
        for t in ["Progressing", "Failing", "Available", "Pending", "Aborted"] {
            let n = self.current.values().filter(|e| is_true(e, t)).count();
            let peak = self.peak.entry(t.to_owned()).or_default();
            *peak = (*peak).max(n);
        }
    }

    /// The sequence of condition types only (reasons dropped, repeats folded).
    pub fn types(&self, node: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.sequences.get(node).into_iter().flatten() {
            let t = s.split('/').next().unwrap_or_default().to_owned();
            if out.last() != Some(&t) {
                out.push(t);
            }
        }
        out
    }
}

/// A running watch on a policy's enactments; see [`EnactmentLog`].
pub struct EnactmentWatch {
    log: std::sync::Arc<std::sync::Mutex<EnactmentLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl EnactmentWatch {
    /// Start watching the enactments of `policy` (start before creating the policy).
    pub fn start(e2e: &E2e, policy: &str) -> Self {
        use kube::runtime::watcher::Event;
        let log = std::sync::Arc::new(std::sync::Mutex::new(EnactmentLog::default()));
        let task = spawn_watch(
            e2e,
            &format!("{POLICY_LABEL}={policy}"),
            log.clone(),
            |l, ev| match ev {
                Event::Apply(e) | Event::InitApply(e) => l.observe(e),
                Event::Delete(e) => l.forget(&e),
                Event::Init | Event::InitDone => {}
            },
        );
        Self { log, task }
    }

    /// What was seen so far.
    pub fn snapshot(&self) -> EnactmentLog {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stop watching and return what was seen.
    pub fn stop(self) -> EnactmentLog {
        self.task.abort();
        self.snapshot()
    }
}

/// A running watch on the enactments of one node that records the order in which policies'
/// enactments there first went `Progressing` (in the API's event order).
pub struct ProgressOrder {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressOrder {
    /// Start watching the enactments of `node`.
    pub fn start(e2e: &E2e, node: &str) -> Self {
        use kube::runtime::watcher::Event;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = spawn_watch(
            e2e,
            &format!("nmstate.io/node={node}"),
            seen.clone(),
            |l: &mut Vec<String>, ev| {
                if let Event::Apply(e) | Event::InitApply(e) = ev {
                    let policy = e.labels().get(POLICY_LABEL).cloned().unwrap_or_default();
                    if is_true(&e, "Progressing") && !l.contains(&policy) {
                        l.push(policy);
                    }
                }
            },
        );
        Self { seen, task }
    }

    /// Stop watching and return the policies in the order they first went `Progressing`.
    pub fn stop(self) -> Vec<String> {
        self.task.abort();
        self.seen.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Watch the enactments with label selector `labels` in a task, folding each event into `sink`.
fn spawn_watch<T: Send + 'static>(
    e2e: &E2e,
    labels: &str,
    sink: std::sync::Arc<std::sync::Mutex<T>>,
    on_event: impl Fn(&mut T, kube::runtime::watcher::Event<DynamicObject>) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let stream = watcher(e2e.nnce.clone(), watcher::Config::default().labels(labels));
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            let Ok(mut state) = sink.lock() else { return };
            on_event(&mut state, ev);
        }
    })
}
