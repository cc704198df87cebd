//! GGUF endpoints, against llama.cpp's own Python package and transformers:
//! tests/fixtures/make_gguf.py wrote tiny GGUFs (F32, F16, Q8_0, Q4_0, Q4_1, raw Q6_K) from the
//! tiny HF fixtures, each beside the tensors `gguf.quants.dequantize` gives back (in HF names and
//! layout) and transformers' logits on them.

use lerpscope::engine::{Checkpoint, TensorFiles};
use lerpscope::engine::{DeviceChoice, Engine, LoadOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn gguf(name: &str) -> PathBuf {
    fixtures().join("gguf").join(format!("{name}.gguf"))
}

fn cpu() -> LoadOptions {
    LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    }
}

const VARIANTS: &[&str] = &[
    "llama-f32",
    "llama-f16",
    "llama-q8_0",
    "llama-q4_0",
    "llama-q4_1",
    "llama-q6_k",
    "gpt2-f32",
    "gpt2-q8_0",
    // tests/fixtures/make_gguf_families.py
    "qwen2-a",
    "qwen3-a",
    "gemma3-a",
    "phi3-a",
    "llama3-rope-a",
];

#[test]
fn dequantised_tensors_equal_the_gguf_package_bit_for_bit() {
    for v in VARIANTS {
        let ck =
            Checkpoint::open(lerpscope::engine::source::local(&gguf(v), v).expect("a GGUF source"))
                .unwrap_or_else(|e| panic!("{v}: {e}"));
        let reference = fixtures()
            .join("gguf")
            .join(format!("{v}.reference.safetensors"));
        let want = TensorFiles::open(std::slice::from_ref(&reference)).unwrap();
        let names: Vec<&String> = want.tensors.keys().collect();
        let mut got_names: Vec<&String> = ck.weights.tensors.keys().collect();
        got_names.sort();
        assert_eq!(got_names, names, "{v}: the same tensors under HF names");
        for n in names {
            let (g, w) = (ck.weights.read_f32(n).unwrap(), want.read_f32(n).unwrap());
            assert_eq!(
                ck.weights.tensors[n].shape, want.tensors[n].shape,
                "{v} {n}"
            );
            let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(bits(&g) == bits(&w), "{v} {n}: dequantised values differ");
        }
    }
}

#[test]
fn gguf_endpoints_compute_like_transformers_on_the_same_weights() {
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("gguf/expected.json")).unwrap(),
    )
    .unwrap();
    let prompts: Vec<Vec<u32>> = serde_json::from_value(exp["prompt_ids"].clone()).unwrap();
    // The families' GGUFs have their goldens in gguf/families.json (tests/families.rs).
    for v in exp["variants"].as_object().unwrap().keys() {
        let v = v.as_str();
        let p = gguf(v).display().to_string();
        // The dequantised path: transformers ran on exactly these dequantised weights. (Kept
        // quantized, the activations are rounded to Q8 too; tests/quantized.rs holds that path
        // to llama.cpp.)
        let opts = LoadOptions {
            dequantize: true,
            ..cpu()
        };
        let e = Engine::load(&p, &p, &opts).unwrap_or_else(|e| panic!("{v}: {e}"));
        for (ids, want) in prompts.iter().zip(exp["variants"][v].as_array().unwrap()) {
            let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
            let got = e.logits(ids).unwrap();
            assert_eq!(got.len(), want.len());
            let d = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d <= 1e-4, "{v}: max |Δlogit| = {d}");
        }
    }
}

#[test]
fn the_tokenizer_rebuilt_from_metadata_encodes_like_the_original() {
    let original =
        lerpscope::engine::tokens::load_tokenizer(&fixtures().join("tiny-llama-a/tokenizer.json"))
            .unwrap();
    for v in ["llama-q4_1", "gpt2-q8_0"] {
        let rebuilt = lerpscope::engine::tokens::load_tokenizer(&gguf(v)).unwrap();
        for probe in [
            "The movie was great!",
            "  two spaces, digits 12345 and 3.14",
            "ünïcödé ✓ 日本 😀",
            "line one\nline two\t tab",
            "<|endoftext|>The end",
        ] {
            let (a, b) = (
                original.encode(probe, true).unwrap(),
                rebuilt.encode(probe, true).unwrap(),
            );
            assert_eq!(a.get_ids(), b.get_ids(), "{v}: {probe:?}");
            assert_eq!(
                original.decode(a.get_ids(), false).unwrap(),
                rebuilt.decode(b.get_ids(), false).unwrap()
            );
        }
    }
}

/// A GGUF endpoint blends with the safetensors model it came from as if it were that model.
#[test]
fn a_gguf_and_a_safetensors_endpoint_make_one_pair() {
    let (a_gguf, a_st, b_st) = (
        gguf("llama-f32").display().to_string(),
        fixtures().join("tiny-llama-a").display().to_string(),
        fixtures().join("tiny-llama-b").display().to_string(),
    );
    let mut mixed = Engine::load(&a_gguf, &b_st, &cpu()).unwrap();
    let mut plain = Engine::load(&a_st, &b_st, &cpu()).unwrap();
    let ids = [5u32, 17, 42, 8];
    for alpha in [0.0, 0.3, 1.0, 1.4] {
        mixed.set_alpha(alpha).unwrap();
        plain.set_alpha(alpha).unwrap();
        assert_eq!(
            mixed.logits(&ids).unwrap(),
            plain.logits(&ids).unwrap(),
            "α {alpha}"
        );
    }
}

fn load_err(path: &Path) -> String {
    let p = path.display().to_string();
    match Engine::load(&p, &p, &cpu()) {
        Ok(_) => panic!("{p} should be refused"),
        Err(e) => {
            let e = lerpscope::one_line(&e);
            assert!(!e.contains('\n'), "{e}");
            e
        }
    }
}

#[test]
fn bad_gguf_files_get_one_line_naming_the_file_and_what() {
    let has = |e: &str, parts: &[&str]| {
        for p in parts {
            assert!(e.contains(p), "{e:?} lacks {p:?}");
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(gguf("llama-q8_0")).unwrap();
    // Truncated anywhere: in the header, in the tensor data.
    for cut in [3, 20, 200, 2000, good.len() - 1] {
        let p = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &good[..cut]).unwrap();
        let e = load_err(&p);
        has(&e, &[&p.display().to_string()]);
        assert!(
            e.contains("truncated") || e.contains("GGUF"),
            "cut at {cut}: {e}"
        );
    }
    let p = dir.path().join("magic.gguf");
    let mut bad = good.clone();
    bad[..4].copy_from_slice(b"GGML");
    std::fs::write(&p, &bad).unwrap();
    has(&load_err(&p), &["magic.gguf", "not a GGUF file"]);
    has(
        &load_err(&gguf("bad-arch")),
        &["bad-arch.gguf", "general.architecture", "mamba"],
    );
    has(
        &load_err(&gguf("bad-type")),
        &[
            "bad-type.gguf",
            "token_embd.weight",
            "cannot dequantise",
            "IQ2_XXS",
        ],
    );
    has(
        &load_err(&gguf("no-tokenizer")),
        &["no-tokenizer.gguf", "tokenizer", "--tokenizer"],
    );
}

#[test]
fn a_tokenizer_json_stands_in_for_missing_metadata() {
    let p = gguf("no-tokenizer").display().to_string();
    let opts = LoadOptions {
        tokenizer: Some(fixtures().join("tiny-llama-a/tokenizer.json")),
        ..cpu()
    };
    let e = Engine::load(&p, &p, &opts).unwrap();
    let original =
        lerpscope::engine::tokens::load_tokenizer(&fixtures().join("tiny-llama-a/tokenizer.json"))
            .unwrap();
    assert_eq!(
        e.encode("The movie").unwrap(),
        original.encode("The movie", true).unwrap().get_ids()
    );
}

/// `file` with the metadata value after `key` replaced by `value` (same length) or, with
/// `rename`, the key itself renamed: byte surgery on a valid file, so one thing is wrong.
fn patched(file: &[u8], key: &str, edit: impl Fn(&mut [u8], usize)) -> Vec<u8> {
    let mut out = file.to_vec();
    let at = out
        .windows(key.len())
        .position(|w| w == key.as_bytes())
        .unwrap_or_else(|| panic!("no key {key}"));
    edit(&mut out, at);
    out
}

/// The families' GGUFs refused in one line naming the file and what is wrong: a key the
/// architecture needs, a RoPE scaling nothing implements, a fused tensor of the wrong shape,
/// LongRoPE's factors missing or not fitting the rotated dimensions, partial rotary outside
/// Phi-3, YaRN without a factor or with an attention factor other than llama.cpp's, an
/// architecture nothing reads (with the ones that are read).
#[test]
fn bad_family_ggufs_get_one_line_naming_the_key_or_tensor() {
    let has = |e: &str, parts: &[&str]| {
        for p in parts {
            assert!(e.contains(p), "{e:?} lacks {p:?}");
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: Vec<u8>| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let qwen2 = std::fs::read(gguf("qwen2-a")).unwrap();
    let gone = patched(&qwen2, "qwen2.block_count", |b, at| b[at + 16] = b'x');
    has(
        &load_err(&write("no-blocks.gguf", gone)),
        &["no-blocks.gguf", "qwen2.block_count", "missing"],
    );
    let gemma3 = std::fs::read(gguf("gemma3-a")).unwrap();
    // The key, then its type (u32 8: a string), its length (u64 6) and "linear".
    let yarn = patched(&gemma3, "gemma3.rope.scaling.type", |b, at| {
        let v = at + "gemma3.rope.scaling.type".len() + 4 + 8;
        b[v..v + 6].copy_from_slice(b"yarn_x");
    });
    has(
        &load_err(&write("yarn.gguf", yarn)),
        &["yarn.gguf", "gemma3.rope.scaling.type", "yarn_x", "linear"],
    );
    let phi3 = std::fs::read(gguf("phi3-a")).unwrap();
    // feed_forward_length 64 → 48: the fused gate|up rows no longer fit it.
    let ffn = patched(&phi3, "phi3.feed_forward_length", |b, at| {
        let v = at + "phi3.feed_forward_length".len() + 4;
        b[v..v + 4].copy_from_slice(&48u32.to_le_bytes());
    });
    has(
        &load_err(&write("ffn.gguf", ffn)),
        &["ffn.gguf", "blk.0.ffn_up.weight", "gate and up rows fused"],
    );
    // A tensor renamed in place (same length) to llama.cpp's longrope factors.
    let longrope = patched(&phi3, "blk.0.attn_output.weight", |b, at| {
        b[at..at + 24].copy_from_slice(b"rope_factors_long.weight");
    });
    has(
        &load_err(&write("longrope.gguf", longrope)),
        &[
            "longrope.gguf",
            "rope_factors_long.weight without rope_factors_short.weight",
        ],
    );
    // Phi-3's LongRoPE with 4 rotated dimensions: its lists of 3 factors no longer fit.
    let phi3_longrope = std::fs::read(gguf("phi3-longrope-a")).unwrap();
    let dims = patched(&phi3_longrope, "phi3.rope.dimension_count", |b, at| {
        let v = at + "phi3.rope.dimension_count".len() + 4;
        b[v..v + 4].copy_from_slice(&4u32.to_le_bytes());
    });
    has(
        &load_err(&write("dims.gguf", dims)),
        &[
            "dims.gguf",
            "rope_factors_long.weight must hold 2 positive factors (4 rotary dimensions), got 3",
        ],
    );
    // LongRoPE's lists where llama.cpp reads none (it refuses the file).
    let llama_f32 = std::fs::read(gguf("llama-f32")).unwrap();
    let stray = patched(&llama_f32, "blk.0.attn_output.weight", |b, at| {
        b[at..at + 24].copy_from_slice(b"rope_factors_long.weight");
    });
    has(
        &load_err(&write("stray.gguf", stray)),
        &[
            "stray.gguf",
            "rope_factors_long.weight",
            "not part of a llama model",
        ],
    );
    // Partial rotary where llama.cpp has none: `llama` rotates whole heads.
    let llama = std::fs::read(gguf("llama-f32")).unwrap();
    let partial = patched(&llama, "llama.rope.dimension_count", |b, at| {
        let v = at + "llama.rope.dimension_count".len() + 4;
        b[v..v + 4].copy_from_slice(&4u32.to_le_bytes());
    });
    has(
        &load_err(&write("partial.gguf", partial)),
        &[
            "partial.gguf",
            "llama.rope.dimension_count 4",
            "supported for glm4, gptneox, phi2, phi3 and stablelm only",
        ],
    );

    // YaRN without a factor to scale by.
    let qwen2_yarn = std::fs::read(gguf("qwen2-yarn-a")).unwrap();
    let zero = patched(&qwen2_yarn, "qwen2.rope.scaling.factor", |b, at| {
        let v = at + "qwen2.rope.scaling.factor".len() + 4;
        b[v..v + 4].copy_from_slice(&0f32.to_le_bytes());
    });
    has(
        &load_err(&write("zero.gguf", zero)),
        &[
            "zero.gguf",
            "YaRN needs a positive qwen2.rope.scaling.factor, got 0",
        ],
    );
    // OLMo 3's YaRN attention factor as llama.cpp's converter copies it (the default,
    // 1 + 0.1·ln 4) reads (tests/families.rs); any other is refused: llama.cpp would multiply
    // it into that default, transformers would take it alone.
    let olmo3 = std::fs::read(gguf("olmo3-a")).unwrap();
    let attn = patched(&olmo3, "olmo2.rope.scaling.attn_factor", |b, at| {
        let v = at + "olmo2.rope.scaling.attn_factor".len() + 4;
        b[v..v + 4].copy_from_slice(&1.5f32.to_le_bytes());
    });
    has(
        &load_err(&write("attn.gguf", attn)),
        &[
            "attn.gguf",
            "olmo2.rope.scaling.attn_factor 1.5 is not supported with YaRN",
            "only that default is read",
        ],
    );
    has(
        &load_err(&gguf("bad-arch")),
        &["mamba", "supported", "qwen2", "gemma3", "phi3", "gpt2"],
    );
}

/// Llama 3.1's RoPE scaling, stored by llama.cpp as per-frequency divisors, reads back as the
/// scaling it came from (Llama 3's parameters), so an export to Hugging Face can name it.
#[test]
fn rope_freqs_read_back_as_llama3_scaling() {
    let ck = Checkpoint::open(
        lerpscope::engine::source::local(&gguf("llama3-rope-a"), "x").expect("a GGUF source"),
    )
    .unwrap();
    let lerpscope::engine::ModelConfig::Decoder(c) = &ck.config else {
        panic!("a decoder");
    };
    assert!(c.rope_factors.is_none(), "{:?}", c.rope_factors);
    assert!(
        format!("{:?}", c.rope_scaling).contains("Llama3"),
        "{:?}",
        c.rope_scaling
    );
}

/// A GGUF's f32 settings read back as the decimals they were written from: the config an HF
/// export writes says `rms_norm_eps: 1e-05`, as the source folder does, not the f32's f64
/// expansion 9.999999747378752e-6.
#[test]
fn f32_settings_read_back_as_their_decimals() {
    let ck = Checkpoint::open(lerpscope::engine::source::local(&gguf("llama-f32"), "a").unwrap())
        .unwrap();
    let written = lerpscope::engine::config_json(&ck.config).unwrap();
    let folder: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tiny-llama-a/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written["rms_norm_eps"], folder["rms_norm_eps"]);
    assert_eq!(written["rms_norm_eps"].as_f64(), Some(1e-5));
}

/// A GGUF file holds its own end tokens: a generation_config.json in the folder it lies in
/// (another model's, downloaded beside it) is not read.
#[test]
fn a_gguf_ignores_a_generation_config_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("llama-f32.gguf");
    std::fs::copy(gguf("llama-f32"), &file).unwrap();
    let spec = file.display().to_string();
    let own = Engine::load(&spec, &spec, &cpu())
        .unwrap()
        .end_tokens()
        .to_vec();
    let other = (0..64u32).find(|i| !own.contains(i)).unwrap();
    std::fs::write(
        tmp.path().join("generation_config.json"),
        format!(r#"{{"eos_token_id": [{other}]}}"#),
    )
    .unwrap();
    let e = Engine::load(&spec, &spec, &cpu()).unwrap();
    assert_eq!(e.end_tokens(), &own[..]);
}

/// A prompt or text that writes the BOS out (a conversation pasted whole) gets no second one.
#[test]
fn a_bos_written_out_is_not_doubled() {
    // A tokenizer that puts its end-of-text token before every text, as a BOS.
    let (_tmp, a, b) = pair_whose_tokenizer_adds(serde_json::json!([
        {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
        {"Sequence": {"id": "A", "type_id": 0}}
    ]));
    let load = || Engine::load(&a.display().to_string(), &b.display().to_string(), &cpu());
    let mut e = load().unwrap();
    let plain = e.encode_text("The movie").unwrap();
    assert_eq!(e.encode_text("").unwrap(), vec![0], "a BOS is added");
    assert_eq!(e.encode_text("<|endoftext|>The movie").unwrap(), plain);
    assert_eq!(e.encode("<|endoftext|>The movie").unwrap(), plain);
    let scored = e
        .score_text_at("<|endoftext|>The movie", 0.5, None)
        .unwrap();
    assert_eq!(scored.token_ids, plain, "score");
    // A conversation pasted whole, in the template's format (its own opening tag), reaches
    // the model as the template renders the plain prompt: with the BOS the template writes,
    // whether the paste has it or not, and no second one.
    std::fs::write(
        a.join("chat_template.jinja"),
        "{{ bos_token }}[USER]{{ messages[0]['content'] }}[/USER]",
    )
    .unwrap();
    std::fs::write(
        a.join("tokenizer_config.json"),
        r#"{"bos_token": "<|endoftext|>"}"#,
    )
    .unwrap();
    let e = load().unwrap();
    let rendered = e.encode("hi").unwrap();
    assert_eq!(
        rendered,
        e.encode_text("<|endoftext|>[USER]hi[/USER]").unwrap()
    );
    for pasted in [
        "<|endoftext|>[USER]hi[/USER]",
        "[USER]hi[/USER]",
        "  [USER]hi[/USER]",
    ] {
        assert_eq!(e.encode(pasted).unwrap(), rendered, "{pasted:?}");
    }
    // A prompt that opens with the BOS text the template writes is raw model text (some
    // formats put a bare system prompt right after it): it goes as written, not wrapped as a
    // user turn with a second BOS inside it.
    assert_eq!(
        e.encode("<|endoftext|>hi").unwrap(),
        e.encode_text("<|endoftext|>hi").unwrap()
    );
    assert_ne!(e.encode("hi").unwrap(), e.encode_text("hi").unwrap());
}

/// A tokenizer that adds a BOS and an EOS: a text that writes its BOS out keeps one BOS, and
/// the EOS the tokenizer adds after it.
#[test]
fn a_bos_written_out_is_not_doubled_where_an_eos_is_added_too() {
    let (_tmp, a, b) = pair_whose_tokenizer_adds(serde_json::json!([
        {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
        {"Sequence": {"id": "A", "type_id": 0}},
        {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}
    ]));
    let mut e = Engine::load(&a.display().to_string(), &b.display().to_string(), &cpu()).unwrap();
    let plain = e.encode_text("The movie").unwrap();
    assert_eq!((plain[0], plain[plain.len() - 1]), (0, 0));
    assert_eq!(e.encode_text("<|endoftext|>The movie").unwrap(), plain);
    let scored = e
        .score_text_at("<|endoftext|>The movie", 0.5, None)
        .unwrap();
    assert_eq!(scored.token_ids, plain);
    assert_eq!(scored.offsets.len(), plain.len());
}

/// A tiny Llama pair whose tokenizers put the end-of-text token (id 0) around every text as
/// `single` says (a post-processor's template).
fn pair_whose_tokenizer_adds(single: serde_json::Value) -> (tempfile::TempDir, PathBuf, PathBuf) {
    use lerpscope::shapes::{write_tiny_pair, Arch};
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    for d in [&a, &b] {
        let p = d.join("tokenizer.json");
        let mut t: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        t["post_processor"] = serde_json::json!({
            "type": "TemplateProcessing",
            "single": single,
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>",
                "ids": [0], "tokens": ["<|endoftext|>"]}}
        });
        std::fs::write(&p, t.to_string()).unwrap();
    }
    (tmp, a, b)
}

/// A phi2 file whose q, k and v are one `attn_qkv` (as converted from the layout Phi-2 had
/// before transformers took it in; llama.cpp runs it) reads as the same endpoint with them
/// apart (phi-a.gguf): the same logits, bit for bit. A fused tensor of the wrong height is
/// refused by name.
#[test]
fn a_phi2_file_with_q_k_and_v_fused_reads_as_the_one_with_them_apart() {
    let load = |path: &Path| {
        let p = path.display().to_string();
        Engine::load(&p, &p, &cpu()).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let (fused, apart) = (load(&gguf("phi-fused-qkv")), load(&gguf("phi-a")));
    let ids = [5u32, 17, 42, 8, 99, 3];
    assert_eq!(fused.logits(&ids).unwrap(), apart.logits(&ids).unwrap());
    // One head fewer, as the metadata would have it.
    let bytes = std::fs::read(gguf("phi-fused-qkv")).unwrap();
    let short = patched(&bytes, "phi2.attention.head_count_kv", |b, at| {
        let v = at + "phi2.attention.head_count_kv".len() + 4;
        b[v..v + 4].copy_from_slice(&2u32.to_le_bytes());
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.gguf");
    std::fs::write(&path, short).unwrap();
    let e = load_err(&path);
    for part in [
        "short.gguf",
        "tensor blk.0.attn_qkv.bias has 96 rows",
        "32 + 2·16",
    ] {
        assert!(e.contains(part), "{e:?} should say {part:?}");
    }
}
