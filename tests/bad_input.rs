//! Every way a pair can be wrong gets one clear line naming the file and the tensor.

use lerpscope::engine::{DeviceChoice, Engine, LoadOptions};
use lerpscope::one_line;
use lerpscope::shapes::{random_weights, write_safetensors, write_tiny_pair, Arch};
use std::path::{Path, PathBuf};

struct Pair {
    _tmp: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
}

fn pair(arch: Arch) -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, arch).unwrap();
    Pair { _tmp: tmp, a, b }
}

fn load(a: &Path, b: &Path, allow_tok: bool) -> Result<Engine, String> {
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        dtype: None,
        allow_tokenizer_mismatch: allow_tok,
        ..Default::default()
    };
    Engine::load(&a.display().to_string(), &b.display().to_string(), &opts)
        .map_err(|e| one_line(&e))
}

fn err(a: &Path, b: &Path) -> String {
    match load(a, b, false) {
        Ok(_) => panic!("loading {} + {} should fail", a.display(), b.display()),
        Err(e) => {
            assert!(!e.contains('\n'), "error is not one line: {e}");
            e
        }
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} should mention {p:?}");
    }
}

/// Rewrite the JSON file at `path` through `edit`.
fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// Rewrite B's weights through `edit` (names, shapes and values as f32).
fn rewrite_b(
    p: &Pair,
    dtype: safetensors::Dtype,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
) {
    let c = lerpscope::engine::Checkpoint::open(
        lerpscope::engine::source::resolve(&p.b.display().to_string()).unwrap(),
    )
    .unwrap();
    let mut tensors: Vec<_> = c
        .weights
        .tensors
        .iter()
        .map(|(n, m)| (n.clone(), m.shape.clone(), c.weights.read_f32(n).unwrap()))
        .collect();
    drop(c);
    edit(&mut tensors);
    write_safetensors(&p.b.join("model.safetensors"), &tensors, dtype).unwrap();
}

/// A config that counts fewer layers than the weights hold would run a truncated model.
#[test]
fn layers_past_the_configs_count_are_refused() {
    for arch in [Arch::Llama, Arch::Gpt2] {
        let p = pair(arch);
        let key = match arch {
            Arch::Gpt2 => "n_layer",
            _ => "num_hidden_layers",
        };
        for dir in [&p.a, &p.b] {
            edit_json(&dir.join("config.json"), |v| v[key] = 1.into());
        }
        let e = err(&p.a, &p.b);
        assert_has(
            &e,
            &["model.safetensors", "of layer 1", "config.json", "1 layers"],
        );
    }
}

#[test]
fn a_good_pair_loads() {
    let p = pair(Arch::Llama);
    load(&p.a, &p.b, false).unwrap();
}

#[test]
fn different_architectures() {
    let l = pair(Arch::Llama);
    let g = pair(Arch::Gpt2);
    let e = err(&l.a, &g.b);
    assert_has(
        &e,
        &[
            "architectures differ",
            "LlamaForCausalLM",
            "GPT2LMHeadModel",
            "config.json",
        ],
    );
}

#[test]
fn shape_changing_config_field() {
    let p = pair(Arch::Llama);
    let path = p.b.join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["intermediate_size"] = 96.into();
    std::fs::write(&path, v.to_string()).unwrap();
    let e = err(&p.a, &p.b);
    assert_has(
        &e,
        &["intermediate_size", "64", "96", &path.display().to_string()],
    );
}

/// Fields that change what the forward pass computes are held together too: the model is
/// built from A's config, so B's RoPE or norm settings would be dropped without a word. A
/// value written as f64 in one file and as a GGUF's f32 in the other is the same value.
#[test]
fn config_fields_of_the_forward_pass_must_agree() {
    for (field, value, says) in [
        ("rope_theta", serde_json::json!(20000.0), "rope_theta"),
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "linear", "factor": 2.0}),
            "rope_scaling",
        ),
        ("rms_norm_eps", serde_json::json!(1e-3), "rms_norm_eps"),
        (
            "num_hidden_layers",
            serde_json::json!(1),
            "num_hidden_layers",
        ),
    ] {
        let p = pair(Arch::Llama);
        let path = p.b.join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v[field] = value;
        std::fs::write(&path, v.to_string()).unwrap();
        let e = err(&p.a, &p.b);
        assert_has(
            &e,
            &[
                &format!("config field {says} differs"),
                &path.display().to_string(),
            ],
        );
    }
    let p = pair(Arch::Llama);
    let path = p.b.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let eps = v["rms_norm_eps"].as_f64().unwrap_or(1e-5);
    v["rms_norm_eps"] = ((eps as f32) as f64).into();
    std::fs::write(&path, v.to_string()).unwrap();
    load(&p.a, &p.b, false).unwrap();
}

/// Under dynamic NTK scaling the context length decides where the rotation changes, so it must
/// agree too; otherwise it need not (the pair runs within the shorter).
#[test]
fn the_context_length_must_agree_under_dynamic_rope() {
    let p = pair(Arch::Llama);
    edit_json(&p.b.join("config.json"), |v| {
        v["max_position_embeddings"] = 64.into()
    });
    load(&p.a, &p.b, false).unwrap();
    for dir in [&p.a, &p.b] {
        edit_json(&dir.join("config.json"), |v| {
            v["rope_scaling"] = serde_json::json!({"rope_type": "dynamic", "factor": 2.0})
        });
    }
    let e = err(&p.a, &p.b);
    assert_has(
        &e,
        &[
            "config field max_position_embeddings differs",
            &p.b.join("config.json").display().to_string(),
        ],
    );
}

/// Mistral with no sliding window runs Llama's block (llama.cpp writes it as `llama`), so it
/// blends with Llama, and gives what the Llama pair gives; with a window it does not.
#[test]
fn mistral_without_a_window_blends_with_llama() {
    let p = pair(Arch::Llama);
    let path = p.b.join("config.json");
    let llama = load(&p.a, &p.b, false).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["architectures"] = serde_json::json!(["MistralForCausalLM"]);
    v["model_type"] = "mistral".into();
    v["sliding_window"] = serde_json::Value::Null;
    std::fs::write(&path, v.to_string()).unwrap();
    let mut mixed = load(&p.a, &p.b, false).unwrap();
    let mut llama = llama;
    for e in [&mut mixed, &mut llama] {
        e.set_alpha(0.5).unwrap();
    }
    assert_eq!(
        mixed.logits(&[5, 6, 7]).unwrap(),
        llama.logits(&[5, 6, 7]).unwrap()
    );
    v["sliding_window"] = 4096.into();
    std::fs::write(&path, v.to_string()).unwrap();
    let e = err(&p.a, &p.b);
    assert_has(&e, &["architectures differ", "MistralForCausalLM"]);
    // Two Mistrals, one with a window: the window is what differs.
    let a_config = p.a.join("config.json");
    let mut w = v.clone();
    w["sliding_window"] = serde_json::Value::Null;
    std::fs::write(&a_config, w.to_string()).unwrap();
    let e = err(&p.a, &p.b);
    assert_has(&e, &["config field sliding_window differs", "4096"]);
}

/// A context too small to hold a token and its prediction is refused by name.
#[test]
fn a_context_of_no_room_is_refused() {
    for (arch, key) in [
        (Arch::Llama, "max_position_embeddings"),
        (Arch::Gpt2, "n_positions"),
    ] {
        let p = pair(arch);
        for dir in [&p.a, &p.b] {
            edit_json(&dir.join("config.json"), |v| v[key] = 1.into());
        }
        let e = err(&p.a, &p.b);
        assert_has(&e, &[key, "no room", "config.json"]);
    }
}

/// GPT-2 options the block here does not compute are refused by name, even for one model.
#[test]
fn gpt2_options_it_does_not_compute_are_refused() {
    for (field, value) in [
        ("activation_function", serde_json::json!("relu")),
        ("scale_attn_weights", serde_json::json!(false)),
        ("scale_attn_by_inverse_layer_idx", serde_json::json!(true)),
        ("activation_function", serde_json::json!(5)),
        ("scale_attn_weights", serde_json::json!(0)),
        ("tie_word_embeddings", serde_json::json!(false)),
    ] {
        let p = pair(Arch::Gpt2);
        let path = p.b.join("config.json");
        edit_json(&path, |v| v[field] = value);
        let e = err(&p.b, &p.b);
        assert_has(&e, &[field, "not supported", &path.display().to_string()]);
    }
    // The defaults, written out, are what it computes.
    let p = pair(Arch::Gpt2);
    edit_json(&p.b.join("config.json"), |v| {
        v["activation_function"] = "gelu_new".into();
        v["scale_attn_weights"] = true.into();
        v["scale_attn_by_inverse_layer_idx"] = false.into();
        v["tie_word_embeddings"] = true.into();
    });
    load(&p.a, &p.b, false).unwrap();
}

#[test]
fn tensor_missing_from_one_endpoint() {
    let p = pair(Arch::Llama);
    rewrite_b(&p, safetensors::Dtype::F32, |t| {
        t.retain(|(n, _, _)| n != "model.norm.weight")
    });
    let e = err(&p.a, &p.b);
    assert_has(&e, &["model.norm.weight", "missing", "model.safetensors"]);
    // And the other way round.
    let e = err(&p.b, &p.a);
    assert_has(&e, &["model.norm.weight", "missing"]);
}

#[test]
fn tensor_shape_mismatch() {
    let p = pair(Arch::Gpt2);
    rewrite_b(&p, safetensors::Dtype::F32, |t| {
        let x = t
            .iter_mut()
            .find(|(n, _, _)| n == "transformer.ln_f.bias")
            .unwrap();
        x.1 = vec![2, 16];
    });
    let e = err(&p.a, &p.b);
    assert_has(&e, &["transformer.ln_f.bias", "shape", "[32]", "[2, 16]"]);
}

/// Float tensors stored at different widths pair (each is read into the working dtype); a
/// weight stored as integers is named as such, against a float one or paired with itself.
#[test]
fn tensor_dtype_mismatch() {
    let p = pair(Arch::Llama);
    rewrite_b(&p, safetensors::Dtype::F16, |_| {});
    load(&p.a, &p.b, false).unwrap();
    rewrite_b(&p, safetensors::Dtype::I32, |_| {});
    let e = err(&p.a, &p.b);
    assert_has(&e, &["stored as I32", "F32", "model.safetensors"]);
    let e = err(&p.b, &p.b);
    assert_has(&e, &["stored as I32", "model.safetensors"]);
}

#[test]
fn non_finite_weights() {
    let p = pair(Arch::Llama);
    rewrite_b(&p, safetensors::Dtype::F32, |t| {
        let x = t
            .iter_mut()
            .find(|(n, _, _)| n == "model.layers.1.mlp.up_proj.weight")
            .unwrap();
        x.2[7] = f32::NAN;
    });
    let e = err(&p.a, &p.b);
    assert_has(
        &e,
        &[
            "model.layers.1.mlp.up_proj.weight",
            "non-finite",
            &p.b.join("model.safetensors").display().to_string(),
        ],
    );
}

#[test]
fn truncated_safetensors() {
    let p = pair(Arch::Llama);
    let path = p.b.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let e = err(&p.a, &p.b);
    assert_has(&e, &[&path.display().to_string(), "truncated"]);
}

#[test]
fn garbage_safetensors() {
    let p = pair(Arch::Llama);
    let path = p.b.join("model.safetensors");
    std::fs::write(&path, b"definitely not a safetensors file").unwrap();
    let e = err(&p.a, &p.b);
    assert_has(
        &e,
        &[&path.display().to_string(), "not a valid safetensors file"],
    );
}

#[test]
fn malformed_config() {
    let p = pair(Arch::Llama);
    let path = p.a.join("config.json");
    std::fs::write(&path, "{ \"hidden_size\": ").unwrap();
    let e = err(&p.a, &p.b);
    assert_has(&e, &[&path.display().to_string(), "malformed"]);
}

#[test]
fn unsupported_architecture() {
    let p = pair(Arch::Llama);
    let path = p.a.join("config.json");
    std::fs::write(&path, r#"{"architectures": ["BertForMaskedLM"]}"#).unwrap();
    let e = err(&p.a, &p.b);
    assert_has(
        &e,
        &[
            &path.display().to_string(),
            "BertForMaskedLM",
            "unsupported",
        ],
    );
}

#[test]
fn malformed_tokenizer() {
    let p = pair(Arch::Llama);
    let path = p.b.join("tokenizer.json");
    std::fs::write(&path, "{\"model\": 42}").unwrap();
    let e = err(&p.a, &p.b);
    assert_has(&e, &[&path.display().to_string(), "tokenizer"]);
}

#[test]
fn different_tokenizers_are_refused_unless_allowed() {
    let p = pair(Arch::Llama);
    let tok = p.b.join("tokenizer.json");
    lerpscope::shapes::write_tokenizer(&tok, 280).unwrap();
    let e = err(&p.a, &p.b);
    assert_has(
        &e,
        &[
            "tokenizers differ",
            "--allow-tokenizer-mismatch",
            &tok.display().to_string(),
        ],
    );
    load(&p.a, &p.b, true).unwrap();
}

/// One vocabulary is not one tokenizer: a normalizer, a pre-tokenizer setting, fewer merges
/// or a post-processor that adds BOS would feed B other ids than it was trained on.
#[test]
fn tokenizers_with_one_vocabulary_that_split_text_apart_are_refused() {
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 5] = [
        ("end of text not special", |t| {
            t["added_tokens"][0]["special"] = false.into()
        }),
        ("lowercase", |t| {
            t["normalizer"] = serde_json::json!({"type": "Lowercase"})
        }),
        ("prefix space", |t| {
            t["pre_tokenizer"]["add_prefix_space"] = true.into()
        }),
        ("merges cut", |t| {
            let m = t["model"]["merges"].as_array_mut().unwrap();
            m.truncate(5);
        }),
        ("BOS added", |t| {
            t["post_processor"] = serde_json::json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>",
                    "ids": [0], "tokens": ["<|endoftext|>"]}}
            })
        }),
    ];
    for (what, edit) in edits {
        let p = pair(Arch::Llama);
        let tok = p.b.join("tokenizer.json");
        edit_json(&tok, edit);
        let e = match load(&p.a, &p.b, false) {
            Ok(_) => panic!("{what}: B's tokenizer was taken for A's"),
            Err(e) => e,
        };
        let how = if what == "end of text not special" {
            "is special in"
        } else {
            "split"
        };
        assert_has(
            &e,
            &[
                "tokenizers differ",
                how,
                &tok.display().to_string(),
                "--allow-tokenizer-mismatch",
            ],
        );
        load(&p.a, &p.b, true).unwrap();
    }
    // A token special in B only is refused whichever endpoint is A, naming the right file.
    let p = pair(Arch::Llama);
    let tok = p.b.join("tokenizer.json");
    edit_json(&tok, |t| {
        let (word, id) = {
            let vocab = t["model"]["vocab"].as_object().unwrap();
            let (w, id) = vocab
                .iter()
                .find(|(w, _)| w.len() > 3 && !w.starts_with('<'))
                .unwrap();
            (w.clone(), id.as_u64().unwrap())
        };
        t["added_tokens"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
            "id": id, "content": word, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}));
    });
    for (x, y) in [(&p.a, &p.b), (&p.b, &p.a)] {
        let e = err(x, y);
        let a_tok = p.a.join("tokenizer.json").display().to_string();
        assert!(
            e.contains(&format!(
                "is special in {} but not in {a_tok}",
                tok.display()
            )),
            "{e}"
        );
    }
}

#[test]
fn missing_files_and_directories() {
    let p = pair(Arch::Llama);
    let e = err(&p.a, &p.a.join("nope"));
    assert_has(&e, &["nope", "neither an existing directory nor a Hub id"]);
    std::fs::remove_file(p.b.join("tokenizer.json")).unwrap();
    let e = err(&p.a, &p.b);
    assert_has(&e, &["missing tokenizer.json", &p.b.display().to_string()]);
    // --tokenizer stands in for it (an older model ships tokenizer.model alone).
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        tokenizer: Some(p.a.join("tokenizer.json")),
        ..Default::default()
    };
    Engine::load(
        &p.a.display().to_string(),
        &p.b.display().to_string(),
        &opts,
    )
    .unwrap();
    std::fs::remove_file(p.a.join("model.safetensors")).unwrap();
    let e = err(&p.a, &p.a);
    assert_has(&e, &["no model.safetensors"]);
}

#[test]
fn weights_that_do_not_fit_the_config() {
    let p = pair(Arch::Llama);
    // Same names and shapes in both endpoints, but not what config.json describes.
    let params = vec![("model.embed_tokens.weight".to_string(), vec![10, 4])];
    for dir in [&p.a, &p.b] {
        write_safetensors(
            &dir.join("model.safetensors"),
            &random_weights(&params, 1, 0.1),
            safetensors::Dtype::F32,
        )
        .unwrap();
    }
    let e = err(&p.a, &p.b);
    assert_has(&e, &["config.json", "cannot build the model"]);
}

/// Alphas are typed where clap reads them: a bad value is refused there, naming the flag,
/// and every command gets `Alpha`s (lists, grids, a range) rather than text to parse again.
#[test]
fn absurd_alphas_are_refused_by_the_cli_parser() {
    use clap::Parser;
    use lerpscope::cli::{Cli, Command};
    let refused = |args: &[&str]| -> String {
        let mut all = vec!["lerpscope"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap_err().to_string()
    };
    for (s, part) in [
        ("0,1e9", "absurd"),
        ("0,nan", "finite"),
        ("0,inf", "finite"),
        ("0,x", "not a number"),
        ("", "at least one"),
    ] {
        for cmd in ["generate", "score", "perplexity"] {
            let e = refused(&[cmd, "--alphas", s]);
            assert_has(&e, &["--alphas", part]);
        }
    }
    assert_has(
        &refused(&["sweep", "--out", "x", "--alphas", "1:0:0.1"]),
        &["--alphas", "STOP ≥ START"],
    );
    assert_has(
        &refused(&["export", "--alpha", "1e9"]),
        &["--alpha", "absurd"],
    );
    assert_has(
        &refused(&["tui", "--range", "2:1"]),
        &["--range", "LOW below HIGH"],
    );
    let Some(Command::Generate(g)) =
        Cli::try_parse_from(["lerpscope", "generate", "--alphas=-0.5, 0,1.5"])
            .unwrap()
            .command
    else {
        panic!("a generate command")
    };
    let values: Vec<f64> = g.alphas.unwrap().0.into_iter().map(|a| a.value()).collect();
    assert_eq!(values, vec![-0.5, 0.0, 1.5]);
}

#[test]
fn non_finite_alpha_is_refused_by_the_engine() {
    let p = pair(Arch::Llama);
    let mut e = load(&p.a, &p.b, false).unwrap();
    let msg = e.set_alpha(f64::NAN).unwrap_err().to_string();
    assert_has(&msg, &["finite"]);
    // Extrapolation far out is allowed; the engine stays usable.
    e.set_alpha(-40.0).unwrap();
    e.set_alpha(0.5).unwrap();
}

#[test]
fn a_pair_too_large_for_the_gpu_gets_the_memory_needed_and_free() {
    let gib = 1u64 << 30;
    let err = lerpscope::engine::memory_fit(10 * gib, 2 * gib, 24 * gib).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("needs 32.00 GiB"), "{msg}");
    assert!(
        msg.contains("3 × 10.00 GiB") && msg.contains("2.00 GiB"),
        "{msg}"
    );
    assert!(msg.contains("24.00 GiB free"), "{msg}");
    assert!(lerpscope::engine::memory_fit(10 * gib, 2 * gib, 33 * gib).is_ok());
}

/// A safetensors file whose one tensor claims `elems` f32 values, written sparse: the header is
/// real and consistent, the data is holes, so the file costs nothing on disk.
fn sparse_safetensors(path: &Path, name: &str, shape: [u64; 2]) {
    use std::io::Write;
    let bytes = shape[0] * shape[1] * 4;
    let header = serde_json::json!({
        name: {"dtype": "F32", "shape": shape, "data_offsets": [0, bytes]}
    })
    .to_string();
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.set_len(8 + header.len() as u64 + bytes).unwrap();
}

#[test]
fn a_pair_too_large_for_ram_is_refused_before_loading_with_the_numbers() {
    let p = pair(Arch::Llama);
    // 2.5 × 10¹⁰ parameters per endpoint: 100 GB each, far beyond this machine's RAM.
    for dir in [&p.a, &p.b] {
        sparse_safetensors(
            &dir.join("model.safetensors"),
            "model.embed_tokens.weight",
            [250_000, 100_000],
        );
    }
    let t = std::time::Instant::now();
    let e = err(&p.a, &p.b);
    assert_has(
        &e,
        &[
            "--device cpu",
            "the pair needs",
            "GiB",
            "the system has",
            "free",
        ],
    );
    // Refused from the headers alone: nothing was read or allocated.
    assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
}

/// A value left out of a list ("0,,1" for "0,0.5,1") is refused, not skipped; a trailing
/// comma is taken. `--betas` without a plane says so first, whatever its count.
#[test]
fn a_list_with_a_value_left_out_and_betas_without_a_plane() {
    use lerpscope::cli::alpha_list;
    let e = alpha_list("0,,1").unwrap_err();
    assert!(e.contains("0,,1: an empty value between commas"), "{e}");
    assert_eq!(alpha_list("0,1,").unwrap().0.len(), 2);
    assert_eq!(alpha_list(" 0 , 1").unwrap().0.len(), 2);
    let p = pair(Arch::Llama);
    let text = p.a.with_file_name("text.txt");
    std::fs::write(&text, "The food was good").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args(["perplexity", "--a", p.a.to_str().unwrap(), "--b"])
        .args([
            p.b.to_str().unwrap(),
            "--betas",
            "0,1",
            "--file",
            text.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("needs --c"), "{err}");
}

/// A `--tokenizer` that is not there is named as given: the message used to split the path
/// into a folder "missing" a file and ask for the very flag that was passed.
#[test]
fn a_tokenizer_flag_naming_no_file_is_refused_as_given() {
    let p = pair(Arch::Llama);
    for (t, want) in [
        (p.a.join("nope.json"), "no such file"),
        (p.a.clone(), "a folder, not a file"),
    ] {
        let opts = LoadOptions {
            device: DeviceChoice::Cpu,
            tokenizer: Some(t.clone()),
            ..Default::default()
        };
        let Err(e) = Engine::load(p.a.to_str().unwrap(), p.b.to_str().unwrap(), &opts) else {
            panic!("{}: loaded", t.display());
        };
        let e = one_line(&e);
        assert_eq!(e, format!("--tokenizer {}: {want}", t.display()));
    }
}
