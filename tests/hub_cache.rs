//! Hub ids resolve through a local cache laid out as huggingface_hub lays it out:
//! models--org--name/{refs/REV, snapshots/COMMIT/FILES}. Offline, so nothing is downloaded.
//! (Its own test binary: it sets process-wide environment variables.)

use lerpscope::engine::{DeviceChoice, Engine, LoadOptions};
use lerpscope::shapes::{write_tiny_pair, Arch};
use std::path::Path;

fn put_in_cache(cache: &Path, repo: &str, revision: &str, commit: &str, model: &Path) {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snap = root.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs").join(revision), commit).unwrap();
    for f in std::fs::read_dir(model).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, snap.join(f.file_name().unwrap())).unwrap();
    }
}

/// The fixture's two adapters cached as `{prefix}-neg` and `{prefix}-pos`, naming `base` as
/// their base, each at its revision (None: no `revision` key).
fn cache_adapters(
    cache: &Path,
    tmp: &Path,
    prefix: &str,
    base: &str,
    revisions: [Option<&str>; 2],
) {
    let fx = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adapters");
    for ((side, dir), revision) in [("neg", "llama-plain-a"), ("pos", "llama-plain-b")]
        .into_iter()
        .zip(revisions)
    {
        let repo = format!("{prefix}-{side}");
        let copy = tmp.join(repo.replace('/', "--"));
        std::fs::create_dir_all(&copy).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(fx.join(dir).join(f), copy.join(f)).unwrap();
        }
        let cfg = copy.join("adapter_config.json");
        let mut c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        c["base_model_name_or_path"] = base.into();
        if let Some(r) = revision {
            c["revision"] = r.into();
        }
        std::fs::write(&cfg, c.to_string()).unwrap();
        put_in_cache(cache, &repo, "main", "cdef", &copy);
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
    // A revision given as its full commit hash is read from its snapshot, with no ref naming
    // it (huggingface_hub writes none when it downloads by hash).
    let commit = "0123456789abcdef0123456789abcdef01234567";
    put_in_cache(&cache, "lerp/pinned", "main", commit, &b);
    std::fs::remove_file(cache.join("models--lerp--pinned/refs/main")).unwrap();
    let pinned = format!("lerp/pinned@{commit}");
    Engine::load("lerp/neg", &pinned, &opts).unwrap();

    // Adapters by Hub id, on a base by Hub id (named by the adapters, as PEFT writes it).
    let fx = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adapters");
    put_in_cache(
        &cache,
        "lerp/tiny-base",
        "main",
        "89ab",
        &fx.join("base-llama-tied"),
    );
    // One records main as its base's revision, the other none: the same base.
    cache_adapters(
        &cache,
        tmp.path(),
        "lerp/lora",
        "lerp/tiny-base",
        [Some("main"), None],
    );
    let adapters = Engine::load("lerp/lora-neg", "lerp/lora-pos", &opts).unwrap();
    assert!(adapters.is_adapter_pair());
    assert!(
        adapters
            .info
            .description
            .starts_with("base lerp/tiny-base + LoRA r4"),
        "{}",
        adapters.info.description
    );

    // PEFT's `revision` names the base's revision: the base is read at it, not at main.
    put_in_cache(
        &cache,
        "lerp/tiny-base-pinned",
        "v2",
        "9999",
        &fx.join("base-llama-tied"),
    );
    cache_adapters(
        &cache,
        tmp.path(),
        "lerp/lora-v2",
        "lerp/tiny-base-pinned",
        [Some("v2"), Some("v2")],
    );
    let pinned = Engine::load("lerp/lora-v2-neg", "lerp/lora-v2-pos", &opts).unwrap();
    assert!(
        pinned
            .info
            .description
            .starts_with("base lerp/tiny-base-pinned@v2 + LoRA r4"),
        "{}",
        pinned.info.description
    );

    // Adapters on different bases, named by a recipe at @main (labelled without it): the
    // message names each as the recipe's model, never as a flag.
    let recipe = LoadOptions {
        recipe: Some("merge.yaml".into()),
        ..opts.clone()
    };
    let e = Engine::load("lerp/lora-neg@main", "lerp/lora-v2-pos", &recipe)
        .err()
        .unwrap();
    let msg = lerpscope::one_line(&e);
    assert!(
        msg.contains("different bases")
            && msg.contains("merge.yaml: model lerp/lora-neg@main")
            && !msg.contains("--a"),
        "{msg}"
    );

    // An export never replaces a cached endpoint's snapshot, whose files are links into
    // blobs/ as huggingface_hub makes them.
    let root = cache.join("models--lerp--linked");
    let snap = root.join("snapshots/5555");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), "5555").unwrap();
    for (i, f) in std::fs::read_dir(&b).unwrap().enumerate() {
        let f = f.unwrap().path();
        let blob = root.join(format!("blobs/{i:040}"));
        std::fs::copy(&f, &blob).unwrap();
        std::os::unix::fs::symlink(&blob, snap.join(f.file_name().unwrap())).unwrap();
    }
    let mut linked = Engine::load("lerp/neg", "lerp/linked", &opts).unwrap();
    let shot = linked
        .snapshot(
            lerpscope::engine::Alpha::new(0.5).unwrap(),
            candle_core::DType::F32,
        )
        .unwrap();
    let before = std::fs::read(snap.join("model.safetensors")).unwrap();
    let e = lerpscope::engine::export::write(
        &shot,
        lerpscope::engine::export::Format::Hf,
        &snap,
        true,
        &|_, _| {},
    )
    .unwrap_err();
    let msg = lerpscope::one_line(&e);
    assert!(msg.contains("is read from there"), "{msg}");
    assert_eq!(
        std::fs::read(snap.join("model.safetensors")).unwrap(),
        before
    );

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

/// `lerpscope generate` on `a` and `b` with only `env` of the Hugging Face and proxy
/// variables set: its exit and its stderr.
fn generate_with(env: &[(&str, &std::ffi::OsStr)], a: &str, b: &str) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lerpscope"));
    cmd.args([
        "generate",
        "--a",
        a,
        "--b",
        b,
        "--alphas",
        "0",
        "--max-tokens",
        "1",
    ]);
    cmd.args(["--prompt", "hi"]);
    for k in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "XDG_CACHE_HOME",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_ENDPOINT",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The cache is where huggingface_hub looks for it (XDG_CACHE_HOME, the older
/// HUGGINGFACE_HUB_CACHE, `~` and `$VAR` expanded), TRANSFORMERS_OFFLINE is offline, a
/// relative path is never a Hub id, and a Hub that accepts the connection but never answers
/// gives one line instead of a hang.
#[test]
fn the_cache_and_the_hub_are_found_as_huggingface_hub_finds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Gpt2).unwrap();
    let xdg = tmp.path().join("xdg");
    let cache = xdg.join("huggingface/hub");
    put_in_cache(&cache, "lerp/neg", "main", "0123abcd", &a);
    let off: (&str, &std::ffi::OsStr) = ("HF_HUB_OFFLINE", "1".as_ref());
    let found = |env: &[(&str, &std::ffi::OsStr)]| {
        let (ok, err) = generate_with(env, "lerp/neg", "lerp/neg");
        assert!(ok, "{env:?}: {err}");
    };
    found(&[("XDG_CACHE_HOME", xdg.as_os_str()), off]);
    found(&[("HUGGINGFACE_HUB_CACHE", cache.as_os_str()), off]);
    found(&[
        ("HOME", tmp.path().as_os_str()),
        ("HF_HOME", "~/xdg/huggingface".as_ref()),
        off,
    ]);
    found(&[
        ("LERP_TEST_ROOT", tmp.path().as_os_str()),
        (
            "HF_HUB_CACHE",
            "${LERP_TEST_ROOT}/xdg/huggingface/hub".as_ref(),
        ),
        off,
    ]);
    let (ok, err) = generate_with(
        &[
            ("HF_HUB_CACHE", cache.as_os_str()),
            ("TRANSFORMERS_OFFLINE", "1".as_ref()),
        ],
        "lerp/neg",
        "lerp/absent",
    );
    assert!(
        !ok && err.contains("offline: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set"),
        "{err}"
    );
    // A repository recorded without a tokenizer.json (huggingface_hub's .no_exist marker):
    // no download is suggested, and --tokenizer stands in for it.
    let notok = tmp.path().join("notok");
    std::fs::create_dir(&notok).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(a.join(f), notok.join(f)).unwrap();
    }
    put_in_cache(&cache, "lerp/notok", "main", "77aa", &notok);
    let marker = cache.join("models--lerp--notok/.no_exist/77aa");
    std::fs::create_dir_all(&marker).unwrap();
    std::fs::write(marker.join("tokenizer.json"), "").unwrap();
    let (ok, err) = generate_with(
        &[("HF_HUB_CACHE", cache.as_os_str()), off],
        "lerp/neg",
        "lerp/notok",
    );
    assert!(
        !ok && err.contains("missing tokenizer.json") && !err.contains("download"),
        "{err}"
    );
    std::fs::remove_file(marker.join("tokenizer.json")).unwrap();
    std::fs::write(marker.join("model.safetensors"), "").unwrap();
    std::fs::remove_file(cache.join("models--lerp--notok/snapshots/77aa/model.safetensors"))
        .unwrap();
    std::fs::copy(
        a.join("tokenizer.json"),
        cache.join("models--lerp--notok/snapshots/77aa/tokenizer.json"),
    )
    .unwrap();
    let (ok, err) = generate_with(
        &[("HF_HUB_CACHE", cache.as_os_str()), off],
        "lerp/neg",
        "lerp/notok",
    );
    assert!(
        !ok && err.contains("the repository has no model.safetensors at this revision"),
        "{err}"
    );
    // `../absent` is a path that is not there, not a repository to download.
    let (ok, err) = generate_with(
        &[("HF_HUB_CACHE", cache.as_os_str()), off],
        "lerp/neg",
        "../absent",
    );
    assert!(!ok && !err.contains("Hugging Face cache"), "{err}");
    // A Hub that takes the connection and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let (ok, err) = generate_with(
        &[
            ("HF_HUB_CACHE", cache.as_os_str()),
            ("HF_ENDPOINT", endpoint.as_ref()),
        ],
        "lerp/neg",
        "lerp/absent",
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!("the Hub at {endpoint} did not answer"))
            && err.contains("HF_HUB_OFFLINE=1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A Hub that answers 404 and keeps each request's headers: the login token goes with the
    // requests from HF_HOME's `token`, the cache elsewhere; HF_HUB_OFFLINE=0 is online
    // whatever TRANSFORMERS_OFFLINE says.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            log.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&request));
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    // A Hub that answers the first question and then stops sending: the download is given
    // up after 30 s without a byte, in one line (it waited for ever).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stalling = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut held = Vec::new();
        let mut first = true;
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            // The first request (whether the Hub answers at all) is answered; no other is.
            if std::mem::take(&mut first) {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            } else {
                held.push(stream);
            }
        }
    });
    let (ok, err) = generate_with(
        &[
            ("HF_HUB_CACHE", cache.as_os_str()),
            ("HF_ENDPOINT", stalling.as_ref()),
        ],
        "lerp/neg",
        "lerp/absent",
    );
    assert!(
        !ok && err.contains("its download stopped: no byte in 30 s"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A gated repository (401): the line says access was refused, and how to give a token.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gated = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let _ = stream.read(&mut [0u8; 4096]);
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let (ok, err) = generate_with(
        &[
            ("HF_HUB_CACHE", cache.as_os_str()),
            ("HF_ENDPOINT", gated.as_ref()),
        ],
        "lerp/neg",
        "lerp/gated",
    );
    assert!(
        !ok && err.contains("its download was refused (HTTP 401") && err.contains("HF_TOKEN"),
        "{err}"
    );

    let home = tmp.path().join("hfhome");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("token"), "hf_test_token\n").unwrap();
    let (ok, err) = generate_with(
        &[
            ("HF_HUB_CACHE", cache.as_os_str()),
            ("HF_HOME", home.as_os_str()),
            ("HF_ENDPOINT", endpoint.as_ref()),
            ("HF_HUB_OFFLINE", "0".as_ref()),
            ("TRANSFORMERS_OFFLINE", "1".as_ref()),
        ],
        "lerp/neg",
        "lerp/absent",
    );
    assert!(!ok && err.contains("could not be downloaded"), "{err}");
    let seen = seen.lock().unwrap().to_ascii_lowercase();
    assert!(
        seen.contains("/lerp/absent/resolve/main/config.json")
            && seen.contains("authorization: bearer hf_test_token"),
        "{seen}"
    );
}
