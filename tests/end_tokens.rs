//! End tokens: every end-of-text/end-of-turn token the model has stops a column, `--stop` texts
//! stop it too, `--ignore-eos` goes on, and a special token that appears in the text is kept as
//! a marker, never dropped. A pair's text settings come from both endpoints: end tokens,
//! context and chat template.

use lerpscope::engine::tokens::{plain, without_specials, SPECIAL_END, SPECIAL_START};
use lerpscope::engine::{
    DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams, StopReason,
};
use lerpscope::shapes::{write_tiny_pair, Arch};
use std::path::Path;
use std::sync::atomic::AtomicBool;

fn greedy(n: usize, ignore_eos: bool) -> GenerationParams {
    GenerationParams {
        max_tokens: n,
        sampling: SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..Default::default()
        },
        ignore_eos,
        token_info: false,
    }
}

fn load(a: &Path, b: &Path) -> Engine {
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    Engine::load(&a.display().to_string(), &b.display().to_string(), &opts).unwrap()
}

/// Make `id` a special token of both endpoints' tokenizers, and an end token of their
/// generation_config.json (as chat models list several).
fn make_end_token(dirs: [&Path; 2], id: u32) {
    for d in dirs {
        let p = d.join("tokenizer.json");
        let mut t: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let content = t["model"]["vocab"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, v)| v.as_u64() == Some(id as u64))
            .map(|(k, _)| k.clone())
            .unwrap();
        t["added_tokens"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
            "id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}));
        std::fs::write(&p, t.to_string()).unwrap();
        std::fs::write(
            d.join("generation_config.json"),
            format!(r#"{{"eos_token_id": [0, {id}]}}"#),
        )
        .unwrap();
    }
}

#[test]
fn every_end_token_stops_and_ignored_ones_show_as_markers() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let never = AtomicBool::new(false);
    // The token greedy decoding produces third: made an end token below.
    let e = load(&a, &b);
    let free = e
        .generate("The movie", &greedy(6, true), &never, &mut |_| {})
        .unwrap();
    let t = free.token_ids[2];
    drop(e);
    make_end_token([&a, &b], t);
    let e = load(&a, &b);
    assert!(e.end_tokens().contains(&t) && e.end_tokens().contains(&0));
    let stopped = e
        .generate("The movie", &greedy(6, false), &never, &mut |_| {})
        .unwrap();
    assert_eq!(stopped.stop, StopReason::Eos);
    assert_eq!(stopped.token_ids, free.token_ids[..2]);
    // Told to go on, the end token is in the text as a marker, and in the ids.
    let mut streamed = String::new();
    let on = e
        .generate("The movie", &greedy(6, true), &never, &mut |p| {
            streamed.push_str(p)
        })
        .unwrap();
    assert_eq!(on.token_ids, free.token_ids);
    assert!(
        on.text.contains(SPECIAL_START) && on.text.contains(SPECIAL_END),
        "{:?}",
        on.text
    );
    assert_eq!(streamed, on.text);
    assert!(!without_specials(&on.text).contains(SPECIAL_START));
    assert!(plain(&on.text).len() < on.text.len());
    // A stop text is found in the plain text, where it runs across an end token's edge.
    let end = on.text.find(SPECIAL_END).unwrap();
    let last = on.text[..end].chars().next_back().unwrap();
    let next = on.text[end + SPECIAL_END.len_utf8()..]
        .chars()
        .next()
        .expect("text after the end token");
    let mut e = e;
    e.set_stop_texts(vec![format!("{last}{next}")]);
    let stopped = e
        .generate("The movie", &greedy(6, true), &never, &mut |_| {})
        .unwrap();
    assert_eq!(stopped.stop, StopReason::StopText, "{:?}", on.text);
    assert!(stopped.token_ids.len() < on.token_ids.len());
}

#[test]
fn a_stop_text_stops_the_column() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Gpt2).unwrap();
    let mut e = load(&a, &b);
    let never = AtomicBool::new(false);
    let free = e
        .generate("The movie", &greedy(16, true), &never, &mut |_| {})
        .unwrap();
    // Stop at a piece of text the free run wrote mid-way.
    let stop: String = free
        .text
        .chars()
        .skip(free.text.chars().count() / 2)
        .take(3)
        .collect();
    e.set_stop_texts(vec![stop.clone()]);
    let g = e
        .generate("The movie", &greedy(16, true), &never, &mut |_| {})
        .unwrap();
    assert_eq!(g.stop, StopReason::StopText, "{stop:?} in {:?}", free.text);
    assert!(g.text.contains(&stop) && g.token_ids.len() < free.token_ids.len());
    // An empty stop text is in every text: it is left out rather than stopping at once.
    e.set_stop_texts(vec![String::new()]);
    let g = e
        .generate("The movie", &greedy(16, true), &never, &mut |_| {})
        .unwrap();
    assert_eq!(g.token_ids, free.token_ids);
}

/// A pair of full models ends a text as either endpoint would, and runs within the shorter
/// context of the two, whichever endpoint is A.
#[test]
fn either_endpoints_end_tokens_and_the_shorter_context_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    std::fs::write(b.join("generation_config.json"), r#"{"eos_token_id": 71}"#).unwrap();
    let p = b.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let context = c["max_position_embeddings"].as_u64().unwrap() as usize;
    c["max_position_embeddings"] = (context / 2).into();
    std::fs::write(&p, c.to_string()).unwrap();
    for (x, y) in [(&a, &b), (&b, &a)] {
        let e = load(x, y);
        assert!(e.end_tokens().contains(&71), "{:?}", e.end_tokens());
        let at = |n: usize| {
            e.scrub(
                &vec![5; n],
                6,
                &[lerpscope::engine::Alpha::new(0.5).unwrap()],
            )
        };
        at(context / 2 - 1).unwrap();
        let refused = at(context / 2).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("1 to {}", context / 2 - 1)),
            "{refused}"
        );
    }
}

/// The chat template is read from chat_template.jinja (which transformers writes, and prefers
/// to tokenizer_config.json's), and a pair takes the first endpoint's that has one, A or B.
#[test]
fn a_chat_template_of_its_own_file_or_of_either_endpoint_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    std::fs::write(
        b.join("tokenizer_config.json"),
        r#"{"chat_template": "[{{ messages[0]['content'] }}]"}"#,
    )
    .unwrap();
    std::fs::write(
        b.join("chat_template.jinja"),
        "the {{ messages[0]['content'] }} sat",
    )
    .unwrap();
    for (x, y) in [(&a, &b), (&b, &a)] {
        let e = load(x, y);
        assert!(e.has_chat_template());
        assert_eq!(
            e.encode("cat").unwrap(),
            e.encode_text("the cat sat").unwrap()
        );
    }
    // Without the file, tokenizer_config.json's template.
    std::fs::remove_file(b.join("chat_template.jinja")).unwrap();
    let e = load(&a, &b);
    assert_eq!(e.encode("cat").unwrap(), e.encode_text("[cat]").unwrap());
    // Under --allow-tokenizer-mismatch B's template would speak B's tokens: A's alone.
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        allow_tokenizer_mismatch: true,
        ..Default::default()
    };
    let e = Engine::load(&a.display().to_string(), &b.display().to_string(), &opts).unwrap();
    assert!(!e.has_chat_template());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
}

/// A tokenizer saved beside an adapter (training scripts save one) must agree with the
/// base's: one that splits text otherwise would feed the adapter other ids than it was trained
/// on. A template saved there is its endpoint's: A's own, then the base's, then B's.
#[test]
fn an_adapters_own_tokenizer_is_held_to_the_base_and_its_template_used() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let tmp = tempfile::tempdir().unwrap();
    for (base, adapter, tokenizer) in [
        (
            "adapters/base-llama-tied",
            "adapters/llama-plain",
            "adapters/base-llama-tied",
        ),
        // A GGUF base kept quantized: its rebuilt tokenizer against the one it was made from.
        ("quantized/base-q4_1.gguf", "quantized/lora", "tiny-llama-a"),
    ] {
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
        let plain = adapter.ends_with("plain");
        match plain {
            true => {
                copy_dir(&fixtures.join(format!("{adapter}-a")), &a);
                copy_dir(&fixtures.join(format!("{adapter}-b")), &b);
            }
            false => copy_dir(&fixtures.join(adapter), &b),
        }
        let (a_spec, b_spec) = (
            match plain {
                true => a.display().to_string(),
                false => "base".to_string(),
            },
            b.display().to_string(),
        );
        let opts = LoadOptions {
            device: DeviceChoice::Cpu,
            base: Some(fixtures.join(base).display().to_string()),
            ..Default::default()
        };
        let load = |opts: &LoadOptions| Engine::load(&a_spec, &b_spec, opts);
        let own = b.join("tokenizer.json");
        std::fs::copy(fixtures.join(tokenizer).join("tokenizer.json"), &own).unwrap();
        assert!(!load(&opts).unwrap().has_chat_template(), "{base}");
        // B's template is used where the base has none, and recorded for exports.
        let template = "the {{ messages[0]['content'] }} sat";
        std::fs::write(b.join("chat_template.jinja"), template).unwrap();
        let e = load(&opts).unwrap();
        assert_eq!(
            e.encode("cat").unwrap(),
            e.encode_text("the cat sat").unwrap(),
            "{base}"
        );
        assert_eq!(
            e.origin.beyond_model.chat_template.as_deref(),
            Some(template)
        );
        if plain {
            // A's own comes first.
            std::fs::write(
                a.join("tokenizer_config.json"),
                r#"{"chat_template": "[{{ messages[0]['content'] }}]"}"#,
            )
            .unwrap();
            let e = load(&opts).unwrap();
            assert_eq!(e.encode("cat").unwrap(), e.encode_text("[cat]").unwrap());
        }
        // A tokenizer that lowercases: refused, naming it; under --allow-tokenizer-mismatch
        // the base's tokenizer and template alone.
        let mut t: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&own).unwrap()).unwrap();
        t["normalizer"] = serde_json::json!({"type": "Lowercase"});
        std::fs::write(&own, t.to_string()).unwrap();
        let err = load(&opts).err().expect("refused").to_string();
        assert!(
            err.contains("tokenizers differ") && err.contains(&own.display().to_string()),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let e = load(&LoadOptions {
            allow_tokenizer_mismatch: true,
            ..opts.clone()
        })
        .unwrap();
        assert!(!e.has_chat_template(), "{base}");
    }
}

/// A template that cannot be read (a tokenizer_config.json that is not JSON) is refused by
/// name; with --no-chat-template no template is read at all.
#[test]
fn an_unreadable_template_is_refused_unless_templates_are_off() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let config = a.join("tokenizer_config.json");
    std::fs::write(&config, r#"{"chat_template": "{{ x }}",}"#).unwrap();
    let (sa, sb) = (a.display().to_string(), b.display().to_string());
    let cpu = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let err = Engine::load(&sa, &sb, &cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains(&config.display().to_string()), "{err}");
    let off = LoadOptions {
        chat_template: false,
        ..cpu
    };
    assert!(!Engine::load(&sa, &sb, &off).unwrap().has_chat_template());
}
