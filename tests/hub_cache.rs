//! Hub ids resolve through a local cache laid out as huggingface_hub lays it out:
//! models--org--name/{refs/REV, snapshots/COMMIT/FILES}. Offline, so nothing is downloaded.
//! (Its own test binary: it sets process-wide environment variables.)

use lerpscope::engine::{DeviceChoice, Engine, LoadOptions};
use lerpscope::fixtures::{write_tiny_pair, Arch};
use std::path::Path;

fn put_in_cache(cache: &Path, repo: &str, revision: &str, commit: &str, model: &Path) {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snap = root.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs").join(revision), commit).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(model.join(f), snap.join(f)).unwrap();
    }
}

#[test]
fn hub_ids_resolve_through_the_cache_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Gpt2).unwrap();
    let cache = tmp.path().join("hub");
    put_in_cache(&cache, "lerp/neg", "main", "0123abcd", &a);
    put_in_cache(&cache, "lerp/pos", "v1", "4567ef01", &b);
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let engine = Engine::load("lerp/neg", "lerp/pos@v1", &opts).unwrap();
    assert_eq!(engine.info.a, "lerp/neg");
    assert_eq!(engine.info.b, "lerp/pos@v1");
    assert_eq!(engine.info.architecture, "GPT2LMHeadModel");

    // A model that is not cached, offline: one line saying where we looked and what to do.
    let e = Engine::load("lerp/neg", "lerp/absent", &opts)
        .err()
        .unwrap();
    let msg = lerpscope::one_line(&e);
    assert!(msg.contains("lerp/absent"), "{msg}");
    assert!(msg.contains(&cache.display().to_string()), "{msg}");
    assert!(msg.contains("HF_HUB_OFFLINE"), "{msg}");
    assert!(
        msg.contains("huggingface-cli download lerp/absent"),
        "{msg}"
    );
    // A revision that is not cached either.
    let e = Engine::load("lerp/neg@v9", "lerp/pos", &opts)
        .err()
        .unwrap();
    assert!(lerpscope::one_line(&e).contains("lerp/neg@v9"));
}
