//! Where an endpoint's files come from: a local Hugging Face model directory, or a Hub id
//! (`org/name[@revision]`) resolved through the hf-hub cache; either may hold a full model or a
//! PEFT adapter.

use crate::error::{bail, err, Context, Result};
use crate::formats::adapter::AdapterFiles;
use crate::formats::files::shard_names;
pub use crate::formats::files::ModelFiles;
use std::path::{Path, PathBuf};

/// One side of a pair, as named on the command line.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A whole model.
    Model(ModelFiles),
    /// A PEFT adapter, applied to a base.
    Adapter(AdapterFiles),
    /// The literal `base`: the base model itself (no adapter).
    Base,
}

/// The word that names the base itself as an endpoint (a folder of that name is `./base`).
pub const BASE: &str = "base";

/// SHA-256 of a source's files, in order, as one digest (hex).
pub fn sha256(files: &[PathBuf]) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    if files.is_empty() {
        return Ok(String::new());
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut file =
            std::fs::File::open(f).with_context(|| format!("{}: cannot read", f.display()))?;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("{}: cannot read", f.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A `.gguf` path that is not there is named as a missing file (not looked up as a Hub id).
fn missing_gguf(spec: &str) -> Result<()> {
    if spec.to_ascii_lowercase().ends_with(".gguf") && !Path::new(spec).exists() {
        bail!(NotFound, "{spec}: no such file");
    }
    Ok(())
}

/// Resolve `spec` to a full model, an adapter, or the base.
pub fn resolve_endpoint(spec: &str) -> Result<Endpoint> {
    if spec == BASE {
        return Ok(Endpoint::Base);
    }
    let path = Path::new(spec);
    if path.exists() {
        if is_adapter_dir(path) {
            return local_adapter(path, spec).map(Endpoint::Adapter);
        }
        return local(path, spec).map(Endpoint::Model);
    }
    missing_gguf(spec)?;
    match HubId::parse(spec) {
        Some(id) => {
            let repo = HubRepo::open(&id);
            // Whether the adapter's files are all in the cache already (asked before any fetch).
            let cached_whole = ["adapter_config.json", "adapter_model.safetensors"]
                .iter()
                .all(|f| repo.cached_file(f).is_some());
            // A model cached whole is not asked about an adapter it does not have.
            let adapter = repo.cached_file("adapter_config.json").or_else(|| {
                match repo.cached_file("config.json") {
                    Some(_) => None,
                    None => repo.fetch("adapter_config.json"),
                }
            });
            if let Some(config) = adapter {
                let weights = repo.fetch("adapter_model.safetensors").ok_or_else(|| {
                    if repo.fetch("adapter_model.bin").is_some() {
                        bin_only(&repo.label)
                    } else {
                        repo.missing("adapter_model.safetensors")
                    }
                })?;
                // A tokenizer and template saved beside the adapter are read from there (the
                // base's must agree with it): fetched along with a download, as a model's are.
                if !cached_whole {
                    for optional in [
                        "tokenizer.json",
                        "tokenizer_config.json",
                        crate::generate::chat::TEMPLATE_FILE,
                    ] {
                        let _ = repo.fetch(optional);
                    }
                }
                let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
                return Ok(Endpoint::Adapter(AdapterFiles {
                    label: repo.label.clone(),
                    dir,
                    config,
                    weights,
                }));
            }
            repo.files().map(Endpoint::Model)
        }
        None => bail!(
            NotFound,
            "model '{spec}' is neither an existing directory nor a Hub id of the form org/name[@revision]"
        ),
    }
}

pub(crate) fn is_adapter_dir(dir: &Path) -> bool {
    dir.join("adapter_config.json").is_file()
}

fn bin_only(label: &str) -> crate::Error {
    err!(
        Unsupported,
        "adapter '{label}' has only adapter_model.bin (a pickle); lerpscope reads adapter_model.safetensors: re-save it with PEFT's save_pretrained (safe_serialization=True)"
    )
}

/// A PEFT adapter in a local directory.
pub fn local_adapter(dir: &Path, label: &str) -> Result<AdapterFiles> {
    let config = dir.join("adapter_config.json");
    let weights = dir.join("adapter_model.safetensors");
    if !weights.is_file() {
        if dir.join("adapter_model.bin").is_file() {
            return Err(bin_only(label));
        }
        bail!(
            NotFound,
            "{}: missing adapter_model.safetensors beside adapter_config.json",
            dir.display()
        );
    }
    Ok(AdapterFiles {
        label: label.to_string(),
        dir: dir.to_path_buf(),
        config,
        weights,
    })
}

/// Resolve `spec` to a model's files. An existing path is a local directory; anything else
/// that looks like `org/name[@revision]` is a Hub id.
pub fn resolve(spec: &str) -> Result<ModelFiles> {
    let path = Path::new(spec);
    if path.exists() {
        return local(path, spec);
    }
    missing_gguf(spec)?;
    match HubId::parse(spec) {
        Some(id) => hub(&id),
        None => bail!(
            NotFound,
            "model '{spec}' is neither an existing directory nor a Hub id of the form org/name[@revision]"
        ),
    }
}

/// A model in a local directory laid out as on the Hub, or one GGUF file (its own config and
/// tokenizer).
pub fn local(dir: &Path, label: &str) -> Result<ModelFiles> {
    if dir.is_file() && crate::formats::gguf::is_gguf(dir) {
        return Ok(ModelFiles {
            label: label.to_string(),
            config: dir.to_path_buf(),
            tokenizer: dir.to_path_buf(),
            weights: vec![dir.to_path_buf()],
        });
    }
    if !dir.is_dir() {
        bail!(
            NotFound,
            "{}: not a directory (expected a Hugging Face model directory with config.json, *.safetensors and tokenizer.json, or a .gguf file)",
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
    // An adapter's weights without their config read as a model missing its own.
    if !dir.join("config.json").is_file() && dir.join("adapter_model.safetensors").is_file() {
        bail!(
            NotFound,
            "{}: holds adapter_model.safetensors but no adapter_config.json",
            dir.display()
        );
    }
    let config = need("config.json")?;
    // Where the folder has none, --tokenizer stands in; without it, reading it says so.
    let tokenizer = dir.join("tokenizer.json");
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
        // huggingface_hub's validate_repo_id: word characters, '-' and '.', not at either
        // end, and no "--" or "..". So `./model` and `../base` are paths, never ids.
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !s.starts_with(['-', '.'])
                && !s.ends_with(['-', '.'])
                && !s.contains("--")
                && !s.contains("..")
                && !s.ends_with(".git")
                && s.len() <= 96
        };
        // `dir/model.gguf` is a file's path, not a repository.
        let file = name.to_ascii_lowercase().ends_with(".gguf");
        (parts.next().is_none() && ok(org) && ok(name) && !file).then(|| HubId {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }
}

/// The hub cache directory, as huggingface_hub finds it: HF_HUB_CACHE (or the older
/// HUGGINGFACE_HUB_CACHE), else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
/// ~/.cache/huggingface/hub; a leading `~` and `$VAR`s expanded, as it expands them.
pub fn hub_cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var(k).ok();
    if let Some(p) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(expand_path(&p));
    }
    hf_home().join("hub")
}

/// HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
fn hf_home() -> PathBuf {
    let var = |k: &str| std::env::var(k).ok();
    PathBuf::from(match var("HF_HOME") {
        Some(p) => expand_path(&p),
        None => {
            let cache = var("XDG_CACHE_HOME").unwrap_or_else(|| expand_path("~/.cache"));
            format!("{}/huggingface", expand_path(&cache))
        }
    })
}

/// Python's `expandvars(expanduser(p))`: `~` at the start is HOME and `~user` that user's
/// home, `$NAME` and `${NAME}` are that variable where it is set (left as written where not).
fn expand_path(p: &str) -> String {
    let p = match p.strip_prefix('~') {
        Some(rest) => {
            let (user, rest) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let home = match user {
                "" => std::env::var("HOME").ok().or_else(|| Some("/tmp".into())),
                user => home_of(
                    user,
                    &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
                ),
            };
            home.map_or_else(
                || p.to_string(),
                |h| format!("{}{rest}", h.trim_end_matches('/')),
            )
        }
        None => p.to_string(),
    };
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = p.as_str();
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after.find(|c: char| !word(c)).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        match std::env::var(name) {
            Ok(v) if !name.is_empty() => out.push_str(&v),
            _ => out.push_str(&rest[at..at + 1 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// A user's home folder from the text of /etc/passwd (`name:pw:uid:gid:gecos:home:shell`);
/// None for a user it does not list, whose `~user` Python leaves as written.
fn home_of(user: &str, passwd: &str) -> Option<String> {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[0] == user)
        .map(|f| f[5].to_string())
}

/// HF_HUB_OFFLINE, else TRANSFORMERS_OFFLINE, as huggingface_hub reads them (the first one
/// set and not empty decides: HF_HUB_OFFLINE=0 is online whatever the other says).
fn offline() -> bool {
    ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
}

/// The Hub token as huggingface_hub finds it: HF_TOKEN (or the older
/// HUGGING_FACE_HUB_TOKEN), else the file HF_TOKEN_PATH names, else HF_HOME's `token`
/// (where `hf auth login` writes it).
fn hub_token() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(t) = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN")) {
        return Some(t.trim().to_string());
    }
    let path = match var("HF_TOKEN_PATH") {
        Some(p) => PathBuf::from(expand_path(&p)),
        None => hf_home().join("token"),
    };
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The Hub's address: HF_ENDPOINT (a mirror), else huggingface.co.
fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| "https://huggingface.co".into())
}

/// How long the Hub may take to answer before lerpscope gives up on it: hf-hub's client
/// has no read timeout, so a network that accepts a connection and never answers would
/// hang a load with no word.
const HUB_ANSWER: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a download came to nothing: something to say (the Hub stopped sending, or refused
/// access), or nothing beyond the file being missing.
enum Stalled {
    Yes(String),
    No,
}

/// What a refused download says: access (401, 403) is worth a word; a missing file is not.
fn refusal(e: &hf_hub::api::sync::ApiError) -> Stalled {
    use hf_hub::api::sync::ApiError;
    match e {
        ApiError::RequestError(e) => match **e {
            ureq::Error::Status(code @ (401 | 403), _) => Stalled::Yes(format!(
                "was refused (HTTP {code}: a gated or private repository needs a token with access: HF_TOKEN, or `hf auth login`)"
            )),
            _ => Stalled::No,
        },
        _ => Stalled::No,
    }
}

/// How long a download may go without a byte before it is given up.
const DOWNLOAD_SILENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// `name` of `repo` downloaded into the cache, on a thread of its own watched for progress:
/// hf-hub's client has no read timeout, so a transfer that stops sending would block for
/// ever. Given up (the thread left to its socket) after [`DOWNLOAD_SILENCE`] without a byte;
/// the error says why.
fn download(
    api: &hf_hub::api::sync::Api,
    repo: &hf_hub::Repo,
    name: &str,
) -> std::result::Result<PathBuf, Stalled> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    /// Milliseconds from the start to the last sign of life.
    struct Beat(Arc<AtomicU64>, std::time::Instant);
    impl hf_hub::api::Progress for Beat {
        fn init(&mut self, _: usize, _: &str) {
            self.0
                .store(self.1.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        fn update(&mut self, _: usize) {
            self.0
                .store(self.1.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        fn finish(&mut self) {}
    }
    let start = std::time::Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let beat = Beat(last.clone(), start);
    let (tx, rx) = std::sync::mpsc::channel();
    let (api, repo, file) = (api.clone(), repo.clone(), name.to_string());
    std::thread::spawn(move || {
        let _ = tx.send(api.repo(repo).download_with_progress(&file, beat));
    });
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(500)) {
            Ok(done) => return done.map_err(|e| refusal(&e)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(Stalled::No),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let quiet = start.elapsed().as_millis() as u64 - last.load(Ordering::Relaxed);
                if quiet > DOWNLOAD_SILENCE.as_millis() as u64 {
                    return Err(Stalled::Yes(format!(
                        "stopped: no byte in {} s (HF_HUB_OFFLINE=1 skips the Hub)",
                        DOWNLOAD_SILENCE.as_secs()
                    )));
                }
            }
        }
    }
}

/// Whether the Hub answers at all (any HTTP status counts), asked once before the first
/// download with timeouts of its own; the reason where it does not.
fn hub_answers(url: &str) -> std::result::Result<(), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(HUB_ANSWER)
        .timeout_read(HUB_ANSWER)
        .try_proxy_from_env(true)
        .build();
    match agent.head(url).call() {
        Ok(_) | Err(ureq::Error::Status(..)) => Ok(()),
        Err(ureq::Error::Transport(t)) => Err(t.to_string()),
    }
}

/// A Hub repository: its cache, and (unless HF_HUB_OFFLINE) the Hub to download missing files
/// into the cache.
struct HubRepo {
    label: String,
    cache_dir: PathBuf,
    cached: hf_hub::CacheRepo,
    /// A revision given as a full commit hash: its snapshot folder. huggingface_hub writes no
    /// `refs/<hash>` when it downloads by hash, and hf-hub's cache looks a revision up there.
    snapshot: Option<PathBuf>,
    /// The Hub client and the repository to ask it for (None offline).
    api: Option<(hf_hub::api::sync::Api, hf_hub::Repo)>,
    /// Whether the Hub answered (asked before the first download), or why not.
    reachable: std::cell::OnceCell<std::result::Result<(), String>>,
    /// Why the last download was given up, where it stalled or was refused.
    stalled: std::cell::RefCell<Option<String>>,
    how_to_get: String,
    /// The repository's folder in the cache and the revision asked for.
    folder: PathBuf,
    revision: String,
}

impl HubRepo {
    fn open(id: &HubId) -> Self {
        Self::open_as(id, !offline())
    }

    /// The repository in the cache alone (`online` false), or with the Hub behind it.
    fn open_as(id: &HubId, online: bool) -> Self {
        use hf_hub::{Cache, Repo, RepoType};
        let cache_dir = hub_cache_dir();
        let repo = Repo::with_revision(id.repo.clone(), RepoType::Model, id.revision.clone());
        let cached = Cache::new(cache_dir.clone()).repo(repo.clone());
        let folder = cache_dir.join(repo.folder_name());
        let is_commit =
            id.revision.len() == 40 && id.revision.bytes().all(|b| b.is_ascii_hexdigit());
        let snapshot = is_commit.then(|| {
            cache_dir
                .join(repo.folder_name())
                .join("snapshots")
                .join(&id.revision)
        });
        let label = if id.revision == "main" {
            id.repo.clone()
        } else {
            format!("{}@{}", id.repo, id.revision)
        };
        let how_to_get = format!(
            "download it with `huggingface-cli download {} --revision {}` (or `hf download`), or pass a local model directory",
            id.repo, id.revision
        );
        let api = if !online {
            None
        } else {
            hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(cache_dir.clone()))
                .with_progress(false)
                .with_endpoint(endpoint())
                .with_token(hub_token())
                .build()
                .ok()
                .map(|api| (api, repo))
        };
        Self {
            label,
            cache_dir,
            cached,
            snapshot,
            api,
            reachable: std::cell::OnceCell::new(),
            stalled: std::cell::RefCell::new(None),
            how_to_get,
            folder,
            revision: id.revision.clone(),
        }
    }

    /// The commit the revision names in the cache: itself where it is a full hash, else
    /// what refs/<revision> holds.
    fn commit(&self) -> Option<String> {
        match &self.snapshot {
            Some(_) => Some(self.revision.clone()),
            None => std::fs::read_to_string(self.folder.join("refs").join(&self.revision))
                .ok()
                .map(|c| c.trim().to_string()),
        }
    }

    /// Whether huggingface_hub recorded `name` as absent from the repository at this commit
    /// (`.no_exist/<commit>/<name>`): no download can bring it.
    fn recorded_absent(&self, name: &str) -> bool {
        self.commit()
            .is_some_and(|c| self.folder.join(".no_exist").join(c).join(name).exists())
    }

    fn fetch(&self, name: &str) -> Option<PathBuf> {
        self.cached_file(name).or_else(|| {
            // After one stalled or refused download the Hub is not asked again.
            if self.stalled.borrow().is_some() {
                return None;
            }
            let (api, repo) = self.api.as_ref()?;
            let url = api.repo(repo.clone()).url(name);
            self.reachable
                .get_or_init(|| hub_answers(&url))
                .as_ref()
                .ok()?;
            match download(api, repo, name) {
                Ok(path) => Some(path),
                Err(Stalled::Yes(why)) => {
                    self.stalled.replace(Some(why));
                    None
                }
                // Not there, or refused: the caller says what is missing.
                Err(Stalled::No) => None,
            }
        })
    }

    /// `name` where the cache already holds it, with no request.
    fn cached_file(&self, name: &str) -> Option<PathBuf> {
        self.cached.get(name).or_else(|| {
            let path = self.snapshot.as_ref()?.join(name);
            path.exists().then_some(path)
        })
    }

    fn missing(&self, name: &str) -> crate::Error {
        if self.recorded_absent(name) {
            return err!(
                NotFound,
                "model '{}': the repository has no {name} at this revision (the Hugging Face cache at {} records it absent)",
                self.label,
                self.cache_dir.display()
            );
        }
        err!(
            NotFound,
            "model '{}': {name} is not in the Hugging Face cache at {}{}; {}",
            self.label,
            self.cache_dir.display(),
            match (offline(), self.reachable.get()) {
                (true, _) => " (offline: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)".into(),
                (false, Some(Err(why))) => format!(
                    " and the Hub at {} did not answer ({why}; HF_HUB_OFFLINE=1 skips it)",
                    endpoint()
                ),
                (false, _) => match self.stalled.borrow().as_ref() {
                    Some(why) => format!(" and its download {why}"),
                    None => " and could not be downloaded".to_string(),
                },
            },
            self.how_to_get
        )
    }

    /// A full model's files.
    fn files(&self) -> Result<ModelFiles> {
        // Whether any file of the model had to be downloaded (this time, or by a run cut
        // short before it fetched the optional files).
        let downloading = std::cell::Cell::new(false);
        let fetch = |name: &str| {
            self.cached_file(name)
                .or_else(|| {
                    downloading.set(true);
                    self.fetch(name)
                })
                .ok_or_else(|| self.missing(name))
        };
        let config = fetch("config.json")?;
        // A repository without a tokenizer.json (an older one with tokenizer.model alone)
        // loads with --tokenizer; without it, reading the path says it is missing.
        let tokenizer = match fetch("tokenizer.json") {
            Err(_) if self.recorded_absent("tokenizer.json") => {
                config.with_file_name("tokenizer.json")
            }
            other => other?,
        };
        let (single, index) = ("model.safetensors", "model.safetensors.index.json");
        let cached_index = self.cached_file(index);
        let weights = if let Some(single) = self.cached_file(single) {
            vec![single]
        } else if let Some(index) = cached_index.or_else(|| {
            downloading.set(true);
            self.fetch(single)
                .is_none()
                .then(|| self.fetch(index))
                .flatten()
        }) {
            shard_names(&index)?
                .iter()
                .map(|f| fetch(f))
                .collect::<Result<_>>()?
        } else if let Some(single) = self.cached_file(single) {
            vec![single]
        } else {
            return Err(self.missing(single));
        };
        // Read from beside tokenizer.json where a snapshot has them: the chat template, the
        // end tokens, the special tokens' names. Fetched along with a download of the model;
        // a model cached whole loads with no request (a repository may lack any of them).
        if downloading.get() {
            for optional in [
                "tokenizer_config.json",
                crate::generate::chat::TEMPLATE_FILE,
                "generation_config.json",
                "special_tokens_map.json",
            ] {
                let _ = self.fetch(optional);
            }
        }
        Ok(ModelFiles {
            label: self.label.clone(),
            config,
            tokenizer,
            weights,
        })
    }
}

/// Resolve a Hub id: the cache first, then (unless HF_HUB_OFFLINE) a download into the cache.
pub fn hub(id: &HubId) -> Result<ModelFiles> {
    HubRepo::open(id).files()
}

/// A Hub id's files where the cache holds them whole, with no request.
pub fn cached(id: &HubId) -> Result<ModelFiles> {
    HubRepo::open_as(id, false).files()
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
        assert_eq!(HubId::parse("models/SmolLM2.Q4_1.gguf"), None);
        let e = resolve_endpoint("models/SmolLM2.Q4_1.gguf").err().unwrap();
        assert_eq!(e.to_string(), "models/SmolLM2.Q4_1.gguf: no such file");
        assert_eq!(HubId::parse("a/b/c"), None);
        assert_eq!(HubId::parse("org/name@"), None);
        assert_eq!(HubId::parse("org/na me"), None);
        // huggingface_hub's validate_repo_id: paths, `.git` and over 96 characters are not ids.
        for spec in [
            "./model",
            "../base",
            "org/name.git",
            "org/-name",
            "org/a--b",
        ] {
            assert_eq!(HubId::parse(spec), None, "{spec}");
        }
        assert_eq!(HubId::parse(&format!("org/{}", "n".repeat(97))), None);
        assert!(HubId::parse(&format!("org/{}", "n".repeat(96))).is_some());
    }

    #[test]
    fn a_users_home_is_read_from_the_password_file() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n#comment\nann:x:1000:1000:Ann,,,:/home/ann:/bin/sh\nbad\n";
        assert_eq!(home_of("ann", passwd).as_deref(), Some("/home/ann"));
        assert_eq!(home_of("root", passwd).as_deref(), Some("/root"));
        assert_eq!(home_of("an", passwd), None);
        assert_eq!(home_of("bob", passwd), None);
        // A user the system does not know stays as written, as Python's expanduser leaves it.
        assert_eq!(expand_path("~nobody-here-xyz/hub"), "~nobody-here-xyz/hub");
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        if let Some(root) = home_of("root", &passwd) {
            assert_eq!(expand_path("~root/hub"), format!("{root}/hub"));
            assert_eq!(expand_path("~root"), root);
        }
    }
}
