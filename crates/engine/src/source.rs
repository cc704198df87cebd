//! Where an endpoint's files come from: a local Hugging Face model directory, or a Hub id
//! (`org/name[@revision]`) resolved through the hf-hub cache.

use crate::error::{bail, err, Context, Result};
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

/// Resolve `spec` to a model's files. An existing path is a local directory; anything else
/// that looks like `org/name[@revision]` is a Hub id.
pub fn resolve(spec: &str) -> Result<ModelFiles> {
    let path = Path::new(spec);
    if path.exists() {
        return local(path, spec);
    }
    match HubId::parse(spec) {
        Some(id) => hub(&id),
        None => bail!(
            NotFound,
            "model '{spec}' is neither an existing directory nor a Hub id of the form org/name[@revision]"
        ),
    }
}

/// A model in a local directory laid out as on the Hub.
pub fn local(dir: &Path, label: &str) -> Result<ModelFiles> {
    if !dir.is_dir() {
        bail!(
            NotFound,
            "{}: not a directory (expected a Hugging Face model directory with config.json, *.safetensors and tokenizer.json)",
            dir.display()
        );
    }
    let need = |name: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            bail!(NotFound, "{}: missing {name}", dir.display())
        }
    };
    let config = need("config.json")?;
    let tokenizer = need("tokenizer.json")?;
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let weights = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        shard_names(&index)?
            .into_iter()
            .map(|f| {
                let p = dir.join(&f);
                if p.is_file() {
                    Ok(p)
                } else {
                    bail!(
                        NotFound,
                        "{}: lists shard {f}, which is missing",
                        index.display()
                    )
                }
            })
            .collect::<Result<_>>()?
    } else {
        bail!(
            NotFound,
            "{}: no model.safetensors or model.safetensors.index.json (only safetensors weights are supported)",
            dir.display()
        )
    };
    Ok(ModelFiles {
        label: label.to_string(),
        config,
        tokenizer,
        weights,
    })
}

/// The distinct shard file names of a safetensors index, sorted.
fn shard_names(index: &Path) -> Result<Vec<String>> {
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

/// `org/name[@revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    pub repo: String,
    pub revision: String,
}

impl HubId {
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, revision) = match spec.split_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, rev),
            Some(_) => return None,
            None => (spec, "main"),
        };
        let mut parts = repo.split('/');
        let (org, name) = (parts.next()?, parts.next()?);
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        (parts.next().is_none() && ok(org) && ok(name)).then(|| HubId {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }
}

/// The hub cache directory, as huggingface_hub finds it: HF_HUB_CACHE, else HF_HOME/hub,
/// else ~/.cache/huggingface/hub.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/huggingface/hub")
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// Resolve a Hub id: the cache first, then (unless HF_HUB_OFFLINE) a download into the cache.
pub fn hub(id: &HubId) -> Result<ModelFiles> {
    use hf_hub::{Cache, Repo, RepoType};
    let cache_dir = hub_cache_dir();
    let repo = Repo::with_revision(id.repo.clone(), RepoType::Model, id.revision.clone());
    let cached = Cache::new(cache_dir.clone()).repo(repo.clone());
    let label = if id.revision == "main" {
        id.repo.clone()
    } else {
        format!("{}@{}", id.repo, id.revision)
    };
    let how_to_get = format!(
        "download it with `huggingface-cli download {} --revision {}` (or `hf download`), or pass a local model directory",
        id.repo, id.revision
    );
    let api = if offline() {
        None
    } else {
        hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(cache_dir.clone()))
            .with_progress(false)
            .build()
            .ok()
            .map(|api| api.repo(repo))
    };
    let fetch = |name: &str| -> Option<PathBuf> {
        cached
            .get(name)
            .or_else(|| api.as_ref().and_then(|r| r.get(name).ok()))
    };
    let missing = |name: &str| {
        err!(
            NotFound,
            "model '{label}': {name} is not in the Hugging Face cache at {}{}; {how_to_get}",
            cache_dir.display(),
            if offline() {
                " (HF_HUB_OFFLINE is set)"
            } else {
                " and could not be downloaded"
            }
        )
    };
    let config = fetch("config.json").ok_or_else(|| missing("config.json"))?;
    let tokenizer = fetch("tokenizer.json").ok_or_else(|| missing("tokenizer.json"))?;
    let weights = if let Some(single) = fetch("model.safetensors") {
        vec![single]
    } else if let Some(index) = fetch("model.safetensors.index.json") {
        shard_names(&index)?
            .iter()
            .map(|f| fetch(f).ok_or_else(|| missing(f)))
            .collect::<Result<_>>()?
    } else {
        return Err(missing("model.safetensors"));
    };
    Ok(ModelFiles {
        label,
        config,
        tokenizer,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_parse() {
        assert_eq!(
            HubId::parse("openai-community/gpt2"),
            Some(HubId {
                repo: "openai-community/gpt2".into(),
                revision: "main".into()
            })
        );
        assert_eq!(
            HubId::parse("org/name@v1.0").unwrap().revision,
            "v1.0".to_string()
        );
        assert_eq!(HubId::parse("gpt2"), None);
        assert_eq!(HubId::parse("a/b/c"), None);
        assert_eq!(HubId::parse("org/name@"), None);
        assert_eq!(HubId::parse("org/na me"), None);
    }
}
