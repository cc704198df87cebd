//! The files that make up one model, and the shards a safetensors index names.

use crate::error::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The files that make up one model, wherever they came from.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// How the user named it: a path or a Hub id. Shown in the UI and in errors.
    pub label: String,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    /// One file, or every shard listed by model.safetensors.index.json (in name order).
    pub weights: Vec<PathBuf>,
}

/// A name part no other writer uses at once, for a file written beside its final name: this
/// process's id and a count within it.
pub(crate) fn own_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// The distinct shard file names of a safetensors index, sorted.
pub(crate) fn shard_names(index: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index)
        .with_context(|| format!("{}: cannot read", index.display()))?;
    let idx: Index = serde_json::from_str(&text)
        .with_context(|| format!("{}: malformed safetensors index", index.display()))?;
    let mut files: Vec<String> = idx.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        bail!(Format, "{}: the weight map is empty", index.display());
    }
    Ok(files)
}
