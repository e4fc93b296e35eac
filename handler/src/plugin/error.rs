//! What can go wrong in the plugin, each named for the action that failed.

use std::path::PathBuf;

/// A failure of a plugin command (findings of `validate` are not errors: they are its output).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A file could not be read.
    #[error("failed to read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not YAML.
    #[error("failed to parse {path} as YAML: {message}")]
    ParseYaml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with the line and column).
        message: String,
    },
    /// The policy to plan could not be found.
    #[error("failed to find the policy: {0}")]
    FindPolicy(String),
    /// An object could not be read as its kind.
    #[error("failed to read {what}: {message}")]
    DecodeObject {
        /// Which object.
        what: String,
        /// Why.
        message: String,
    },
    /// No client could be built from the kubeconfig.
    #[error("failed to connect to the cluster")]
    Connect(#[source] kube::Error),
    /// A read from the API server failed.
    #[error("failed to read {what} from the cluster")]
    ReadCluster {
        /// What was read.
        what: &'static str,
        /// The cause.
        source: kube::Error,
    },
    /// The nodes of a policy could not be chosen.
    #[error("failed to select the nodes: {0}")]
    SelectNodes(String),
    /// `--selector` is not a list of `key=value`.
    #[error("failed to parse the selector {0:?}: expected key=value[,key=value…]")]
    ParseSelector(String),
    /// The CRDs could not be generated or compiled for schema validation.
    #[error("failed to load the CRD schemas: {0}")]
    LoadSchemas(String),
    /// A watched rollout did not settle in time.
    #[error("failed to see the rollout settle within {0} s")]
    WatchTimedOut(f64),
    /// The output could not be encoded.
    #[error("failed to encode the output: {0}")]
    EncodeOutput(String),
}

impl PluginError {
    /// Stable category for messages and scripts.
    pub fn category(&self) -> &'static str {
        match self {
            Self::ReadFile { .. } => "read-file",
            Self::ParseYaml { .. } => "parse-yaml",
            Self::FindPolicy(_) => "find-policy",
            Self::DecodeObject { .. } => "decode-object",
            Self::Connect(_) => "connect",
            Self::ReadCluster { .. } => "read-cluster",
            Self::SelectNodes(_) => "select-nodes",
            Self::ParseSelector(_) => "parse-selector",
            Self::LoadSchemas(_) => "load-schemas",
            Self::WatchTimedOut(_) => "watch-timed-out",
            Self::EncodeOutput(_) => "encode-output",
        }
    }
}
