//! The decoder families against transformers' own classes: tiny random pairs of Mistral,
//! Qwen2, Qwen3, Gemma 2, Gemma 3 and Phi-3 made and run by tests/fixtures/make_families.py
//! (sliding windows shorter than prompt plus generation, biases, q/k norms, (1 + w) sandwich
//! norms, soft-capping, a query scalar, per-layer-type RoPE, fused projections), whose logits
//! and greedy tokens at α ∈ {0, 0.3, 1, 1.5} on torch-blended state dicts are in
//! tests/fixtures/families/expected.json (every greedy step's top-2 margin ≥ 1e-3). Held in
//! the re-blended path and the batched one (every α a row of one batch), and in bf16 against
//! the same model's own f32 run. The families beyond those (long-context RoPEs, NoPE layers,
//! Granite, Gemma 1, OLMo 2 and 3, EXAONE 4.0, Phi-2, GPT-NeoX, StableLM) the same way, from
//! tests/fixtures/make_variant_families.py and families/variants.json.

use candle_core::DType;
use lerpscope::engine::{
    Alpha, DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams,
};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn expected() -> Value {
    read_json("families/expected.json")
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Where a pair's endpoints are: the safetensors folders of families/, or the GGUF files of
/// gguf/ (tests/fixtures/make_gguf_families.py).
#[derive(Clone, Copy)]
enum Form {
    Folders,
    Gguf,
}

fn load_form(family: &str, dtype: DType, form: Form) -> Engine {
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        dtype: Some(dtype),
        ..Default::default()
    };
    let path = |side: &str| match form {
        Form::Folders => fixture(&format!("families/{family}-{side}")),
        Form::Gguf => fixture(&format!("gguf/{family}-{side}.gguf")),
    };
    Engine::load(&path("a"), &path("b"), &opts).unwrap_or_else(|e| panic!("{family}: {e}"))
}

fn load(family: &str, dtype: DType) -> Engine {
    load_form(family, dtype, Form::Folders)
}

fn greedy_params(n: usize) -> GenerationParams {
    GenerationParams {
        max_tokens: n,
        sampling: SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..Default::default()
        },
        // transformers ran without an end-of-text stop.
        ignore_eos: true,
        token_info: false,
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logits over the whole vocabulary");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// One family: every α re-blended, and all of them as rows of one batch.
fn check(family: &str, class: &str) {
    check_form(family, class, Form::Folders, &expected());
}

fn check_form(family: &str, class: &str, form: Form, exp: &Value) {
    let mut engine = load_form(family, DType::F32, form);
    assert_eq!(engine.info.architecture, class);
    let new_tokens = exp["new_tokens"].as_u64().unwrap() as usize;
    let runs = exp["families"][family].as_object().unwrap();
    let alphas: Vec<Alpha> = runs.keys().map(|a| a.parse().unwrap()).collect();
    let params = greedy_params(new_tokens);
    for p in 0..exp["prompts"].as_array().unwrap().len() {
        let run = |alpha: &str| &runs[alpha][p];
        let ids: Vec<u32> =
            serde_json::from_value(run(runs.keys().next().unwrap())["prompt_ids"].clone()).unwrap();
        // Re-blended, α by α.
        for (alpha, a) in runs.keys().zip(&alphas) {
            engine.set_alpha(*a).unwrap();
            let want: Vec<f32> = serde_json::from_value(run(alpha)["logits"].clone()).unwrap();
            let d = max_diff(&engine.logits(&ids).unwrap(), &want);
            assert!(
                d < 1e-4,
                "{family} α={alpha} prompt {p}: max |Δlogit| = {d}"
            );
            let greedy: Vec<u32> = serde_json::from_value(run(alpha)["greedy"].clone()).unwrap();
            let g = engine
                .generate_steps(&ids, &[], None, &params, &|_| false, &mut |_, _| {})
                .unwrap();
            assert_eq!(
                g[0].token_ids, greedy,
                "{family} α={alpha} prompt {p}: greedy"
            );
        }
        // Batched: every α a row.
        let rows = engine.logits_columns(&ids, &alphas).unwrap();
        let gens = engine
            .generate_steps(
                &ids,
                &[],
                Some(&alphas),
                &params,
                &|_| false,
                &mut |_, _| {},
            )
            .unwrap();
        for ((alpha, row), g) in runs.keys().zip(&rows).zip(&gens) {
            let want: Vec<f32> = serde_json::from_value(run(alpha)["logits"].clone()).unwrap();
            let d = max_diff(row, &want);
            assert!(
                d < 1e-4,
                "{family} batched α={alpha} prompt {p}: max |Δlogit| = {d}"
            );
            let greedy: Vec<u32> = serde_json::from_value(run(alpha)["greedy"].clone()).unwrap();
            assert_eq!(
                g.token_ids, greedy,
                "{family} batched α={alpha} prompt {p}: greedy"
            );
        }
    }
}

#[test]
fn mistral_matches_transformers_past_its_sliding_window() {
    check("mistral", "MistralForCausalLM");
}

#[test]
fn qwen2_matches_transformers_with_biases_and_windows() {
    check("qwen2", "Qwen2ForCausalLM");
}

#[test]
fn qwen3_matches_transformers_with_qk_norms() {
    check("qwen3", "Qwen3ForCausalLM");
}

#[test]
fn gemma2_matches_transformers_with_soft_capping() {
    check("gemma2", "Gemma2ForCausalLM");
}

#[test]
fn gemma3_matches_transformers_with_two_ropes() {
    check("gemma3", "Gemma3ForCausalLM");
}

#[test]
fn phi3_matches_transformers_with_fused_projections() {
    check("phi3", "Phi3ForCausalLM");
}

/// LongRoPE with partial rotary (Phi-4-mini's form, in Phi-3.5's config layout): prompts that
/// start past the pre-training context and prompts that cross it while decoding
/// (tests/fixtures/make_variant_families.py).
#[test]
fn phi3_matches_transformers_with_longrope_and_partial_rotary() {
    check_form(
        "phi3-longrope",
        "Phi3ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// YaRN, as Qwen2.5's long-context setting gives it.
#[test]
fn qwen2_matches_transformers_with_yarn() {
    check_form(
        "qwen2-yarn",
        "Qwen2ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// SmolLM3: its last layer applies no RoPE.
#[test]
fn smollm3_matches_transformers_with_nope_layers() {
    check_form(
        "smollm3",
        "SmolLM3ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// Granite: its four scalars, none of them 1.
#[test]
fn granite_matches_transformers_with_its_scalars() {
    check_form(
        "granite",
        "GraniteForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// Gemma 1: (1 + w) pre-norms only, scaled embeddings, GeGLU from the legacy "gelu".
#[test]
fn gemma_matches_transformers() {
    check_form(
        "gemma",
        "GemmaForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// OLMo 2: no pre-norms, the outputs of attention and the feed-forward normed before their
/// residual adds, q and k normed over the whole projection.
#[test]
fn olmo2_matches_transformers_with_post_norms() {
    check_form(
        "olmo2",
        "Olmo2ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// OLMo 3: OLMo 2's block, a window of 4 on three layers of four, YaRN on the full layer
/// only. Endpoint a's config has the RoPEs keyed by layer type, b's as flat keys.
#[test]
fn olmo3_matches_transformers_with_windows_and_yarn_on_full_layers() {
    check_form(
        "olmo3",
        "Olmo3ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// EXAONE 4.0 32B's form: post-norms, per-head q/k norms, a window of 4 on three layers of
/// four, no RoPE on the full layer, Llama 3's RoPE scaling.
#[test]
fn exaone4_matches_transformers_with_windows_and_nope_full_layers() {
    check_form(
        "exaone4",
        "Exaone4ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// EXAONE 4.0 1.2B's form: no window, so every layer rotates; a tied head.
#[test]
fn exaone4_without_a_window_rotates_every_layer() {
    check_form(
        "exaone4-dense",
        "Exaone4ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// Phi-2's block: one LayerNorm feeding attention and the feed-forward side by side, biases on
/// every projection and the head, an ungated gelu_new feed-forward, half of each head rotating.
/// Endpoint b's config is the flat form microsoft/phi-2 ships.
#[test]
fn phi_matches_transformers_with_parallel_layernorm_blocks() {
    check_form(
        "phi",
        "PhiForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// GPT-NeoX's (Pythia's) block: LayerNorms, attention and the feed-forward side by side each
/// from its own norm, q, k and v fused head by head, biases, exact GELU, half of each head
/// rotating. Endpoint b's config is Pythia's form (`rotary_pct`, `rotary_emb_base`).
#[test]
fn gpt_neox_matches_transformers_with_parallel_residuals() {
    check_form(
        "gptneox",
        "GPTNeoXForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// GPT-NeoX with `use_parallel_residual` false: the feed-forward after attention's residual.
#[test]
fn gpt_neox_matches_transformers_in_sequence() {
    check_form(
        "gptneox-sequential",
        "GPTNeoXForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// StableLM 2 1.6B's form: Llama's block with LayerNorms, biases on q, k and v, partial
/// rotary, grouped key/value heads.
#[test]
fn stablelm_matches_transformers_with_layer_norms() {
    check_form(
        "stablelm",
        "StableLmForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// StableLM with `use_parallel_residual`: one LayerNorm before attention and the gated
/// feed-forward side by side.
#[test]
fn stablelm_matches_transformers_with_parallel_residuals() {
    check_form(
        "stablelm-parallel",
        "StableLmForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// StarCoder2's block: Llama's order with LayerNorms, biases on q, k, v, o and on the ungated
/// GELU-tanh feed-forward (`c_fc`, `c_proj`), grouped key/value heads, a tied head,
/// `norm_epsilon`.
#[test]
fn starcoder2_matches_transformers_with_biases_everywhere() {
    check_form(
        "starcoder2",
        "Starcoder2ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// StarCoder2 with a window of 4 on every layer, shorter than prompt plus generation, and an
/// untied head.
#[test]
fn starcoder2_matches_transformers_with_a_sliding_window() {
    check_form(
        "starcoder2-window",
        "Starcoder2ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// GLM-4-0414's block: RMSNorms before and after attention and the feed-forward under its own
/// names, biases on q, k and v, gate and up fused, RoPE turning adjacent pairs of each head's
/// leading half. Endpoint b's config is the flat form GLM-4-9B-0414 ships.
#[test]
fn glm4_matches_transformers_with_interleaved_partial_rope() {
    check_form(
        "glm4",
        "Glm4ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// Cohere's block (Command R, Aya): one LayerNorm of gains only feeding attention and the gated
/// feed-forward side by side, RoPE turning adjacent pairs, logits times `logit_scale`, a tied
/// head. Endpoint b's config is the flat form Aya Expanse ships.
#[test]
fn cohere_matches_transformers_with_parallel_blocks_and_a_logit_scale() {
    check_form(
        "cohere",
        "CohereForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// Cohere 2's block (Command R7B): Cohere's, with a window of 4 on three layers of four and
/// RoPE on those only. Endpoint b's config is the form Command R7B ships
/// (`sliding_window_pattern`).
#[test]
fn cohere2_matches_transformers_with_windows_and_rope_on_them_only() {
    check_form(
        "cohere2",
        "Cohere2ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// ERNIE 4.5's block: Llama's with RoPE turning adjacent pairs, a tied head. Endpoint b's config
/// is the flat form ERNIE-4.5-0.3B ships.
#[test]
fn ernie4_5_matches_transformers_with_interleaved_rope() {
    check_form(
        "ernie4_5",
        "Ernie4_5ForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// Seed-OSS-36B's block: Llama's with biases on q, k and v and a head_dim of its own.
#[test]
fn seed_oss_matches_transformers_with_qkv_biases() {
    check_form(
        "seed_oss",
        "SeedOssForCausalLM",
        Form::Folders,
        &read_json("families/variants.json"),
    );
}

/// The same endpoints as llama.cpp's converter writes them (F32): Phi-3's LongRoPE as its
/// factor tensors, attention-factor key and a rope.dimension_count under the head's; Qwen2's
/// YaRN as its scaling keys; SmolLM3 as `smollm3` and Granite as `granite`, Q and K rows
/// interleaved, Granite's scalars as its keys; Gemma 1's norms plus one; OLMo 2 and 3 as
/// `olmo2`, OLMo 3's window and pattern and its YaRN keys as the converter writes them;
/// EXAONE 4.0's dense form as `exaone4`, its RoPE scaling as divisors without a context key;
/// Phi-2 as `phi2`, its LayerNorms' eps and rotated dimensions as keys, no RoPE base; GPT-NeoX
/// as `gptneox`, q, k and v regrouped by kind, both residual orders; StableLM as `stablelm`,
/// parallel where a block has no `ffn_norm`; StarCoder2 as `starcoder2`, its head tied by
/// leaving `output.weight` out; GLM-4 as `glm4`, Cohere as `command-r`, Cohere 2 as `cohere2`
/// (llama.cpp's fixed pattern), ERNIE 4.5 as `ernie4_5` and Seed-OSS as `seed_oss` (its norm
/// before the feed-forward named as the norm after attention), q and k as transformers stores
/// them.
#[test]
fn gguf_longrope_yarn_and_nope_match_transformers() {
    let exp = read_json("families/variants.json");
    check_form("phi3-longrope", "Phi3ForCausalLM", Form::Gguf, &exp);
    check_form("qwen2-yarn", "Qwen2ForCausalLM", Form::Gguf, &exp);
    check_form("smollm3", "SmolLM3ForCausalLM", Form::Gguf, &exp);
    check_form("granite", "GraniteForCausalLM", Form::Gguf, &exp);
    check_form("gemma", "GemmaForCausalLM", Form::Gguf, &exp);
    check_form("olmo2", "Olmo2ForCausalLM", Form::Gguf, &exp);
    check_form("olmo3", "Olmo3ForCausalLM", Form::Gguf, &exp);
    check_form("exaone4-dense", "Exaone4ForCausalLM", Form::Gguf, &exp);
    check_form("phi", "PhiForCausalLM", Form::Gguf, &exp);
    check_form("gptneox", "GPTNeoXForCausalLM", Form::Gguf, &exp);
    check_form("gptneox-sequential", "GPTNeoXForCausalLM", Form::Gguf, &exp);
    check_form("stablelm", "StableLmForCausalLM", Form::Gguf, &exp);
    check_form("stablelm-parallel", "StableLmForCausalLM", Form::Gguf, &exp);
    check_form("starcoder2", "Starcoder2ForCausalLM", Form::Gguf, &exp);
    check_form("glm4", "Glm4ForCausalLM", Form::Gguf, &exp);
    check_form("cohere", "CohereForCausalLM", Form::Gguf, &exp);
    check_form("cohere2", "Cohere2ForCausalLM", Form::Gguf, &exp);
    check_form("ernie4_5", "Ernie4_5ForCausalLM", Form::Gguf, &exp);
    check_form("seed_oss", "SeedOssForCausalLM", Form::Gguf, &exp);
}

/// GGUF pairs written by llama.cpp's `gguf` package (Gemma 3's norms stored plus one, Phi-3's
/// projections fused, Llama 3.1's RoPE scaling as rope_freqs.weight, Q8_0/F16/Q4_0 matrices)
/// compute what transformers computes on the weights they dequantise to.
#[test]
fn gguf_family_pairs_match_transformers_on_their_dequantised_weights() {
    let exp = read_json("gguf/families.json");
    let families = exp["families"].as_object().unwrap();
    let classes = [
        ("qwen2", "Qwen2ForCausalLM"),
        ("qwen3", "Qwen3ForCausalLM"),
        ("gemma3", "Gemma3ForCausalLM"),
        ("phi3", "Phi3ForCausalLM"),
        ("llama3-rope", "LlamaForCausalLM"),
    ];
    assert_eq!(families.len(), classes.len(), "a class for every GGUF pair");
    for (family, class) in classes {
        check_form(family, class, Form::Gguf, &exp);
    }
}

#[test]
fn every_family_pair_is_checked() {
    let exp = expected();
    let families: Vec<&String> = exp["families"].as_object().unwrap().keys().collect();
    assert_eq!(families.len(), 6, "{families:?}: add a test for each pair");
    let variants = read_json("families/variants.json");
    let variants: Vec<&String> = variants["families"].as_object().unwrap().keys().collect();
    assert_eq!(variants.len(), 21, "{variants:?}: add a test for each pair");
}

/// In bf16 each family's logits are its own f32 run's within the half-precision tolerance of
/// tests/half.rs, 64·2⁻⁸·(1 + max|logit|), and its greedy tokens equal the f32 run's up to the
/// first step whose f32 margin is within twice the two runs' distance.
#[test]
fn every_family_in_bf16_writes_what_it_writes_in_f32() {
    let (exp, variants) = (expected(), read_json("families/variants.json"));
    let n = exp["new_tokens"].as_u64().unwrap() as usize;
    let mut compared = 0;
    let families = exp["families"]
        .as_object()
        .unwrap()
        .keys()
        .map(|f| (f, &exp));
    let variants = variants["families"]
        .as_object()
        .unwrap()
        .keys()
        .map(|f| (f, &variants));
    for (family, exp) in families.chain(variants) {
        let (mut full, mut half) = (load(family, DType::F32), load(family, DType::BF16));
        let ids: Vec<u32> =
            serde_json::from_value(exp["families"][family]["0.3"][0]["prompt_ids"].clone())
                .unwrap();
        for a in [0.3, 1.0] {
            full.set_alpha(a).unwrap();
            half.set_alpha(a).unwrap();
            let (f, h) = (full.logits(&ids).unwrap(), half.logits(&ids).unwrap());
            let tol = 64.0 * 2f32.powi(-8) * (1.0 + f.iter().fold(0f32, |m, x| m.max(x.abs())));
            let d = max_diff(&f, &h);
            assert!(
                d <= tol,
                "{family} α={a}: bf16 logits {d} from f32 (> {tol})"
            );
            let params = greedy_params(n);
            let greedy = |e: &Engine| {
                e.generate_steps(&ids, &[], None, &params, &|_| false, &mut |_, _| {})
                    .unwrap()
                    .remove(0)
                    .token_ids
            };
            let (want, got) = (greedy(&full), greedy(&half));
            let mut context = ids.clone();
            for (i, (&w, &g)) in want.iter().zip(&got).enumerate() {
                let lf = full.logits(&context).unwrap();
                let apart = max_diff(&lf, &half.logits(&context).unwrap());
                if margin(&lf) <= 2.0 * apart {
                    break;
                }
                assert_eq!(w, g, "{family} bf16 α={a}: step {i}");
                context.push(w);
                compared += 1;
            }
        }
    }
    assert!(compared >= 40, "only {compared} greedy steps compared");
}

/// Top-1 minus top-2.
fn margin(logits: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &l in logits {
        if l > a {
            (a, b) = (l, a);
        } else if l > b {
            b = l;
        }
    }
    a - b
}

/// PEFT adapter pairs on tiny Qwen2, Gemma 3 and Phi-3 bases (Phi-3's on its fused qkv_proj
/// and gate_up_proj) give the goldens of θ(α) = M_A + α·(M_B − M_A), M_X PEFT's
/// merge_and_unload of the base with X: merged per α, and factored (base plus both
/// adapters' low-rank products, every α a row of one batch).
#[test]
fn adapter_pairs_on_the_families_match_peft() {
    check_adapter_pairs(&expected(), 3);
}

/// The same for PEFT adapter pairs on Phi-2's, OLMo 2's, EXAONE 4.0's, GPT-NeoX's,
/// StarCoder2's, GLM-4's, Cohere's, Cohere 2's (its RoPE-less layers), ERNIE 4.5's and
/// Seed-OSS's blocks, each on its family's module names (`dense`, `fc1`, `fc2`;
/// `all-linear`; GPT-NeoX's `query_key_value` fused head by head; `c_fc`, `c_proj`; GLM-4's
/// fused `gate_up_proj`), from make_variant_families.py.
#[test]
fn adapter_pairs_on_the_variant_families_match_peft() {
    check_adapter_pairs(&read_json("families/variants.json"), 10);
}

fn check_adapter_pairs(exp: &Value, count: usize) {
    let new_tokens = exp["new_tokens"].as_u64().unwrap() as usize;
    let params = greedy_params(new_tokens);
    let pairs = exp["adapters"].as_object().unwrap();
    assert_eq!(pairs.len(), count, "{:?}", pairs.keys());
    for (family, runs) in pairs {
        let opts = LoadOptions {
            device: DeviceChoice::Cpu,
            dtype: Some(DType::F32),
            ..Default::default()
        };
        let mut engine = Engine::load(
            &fixture(&format!("families/{family}-lora-a")),
            &fixture(&format!("families/{family}-lora-b")),
            &opts,
        )
        .unwrap();
        assert!(engine.is_adapter_pair());
        let runs = runs.as_object().unwrap();
        let alphas: Vec<Alpha> = runs.keys().map(|a| a.parse().unwrap()).collect();
        for p in 0..2 {
            let run = |alpha: &str| &runs[alpha][p];
            let ids: Vec<u32> = serde_json::from_value(run("0.0")["prompt_ids"].clone()).unwrap();
            for (alpha, a) in runs.keys().zip(&alphas) {
                engine.set_alpha(*a).unwrap();
                let want: Vec<f32> = serde_json::from_value(run(alpha)["logits"].clone()).unwrap();
                let d = max_diff(&engine.logits(&ids).unwrap(), &want);
                assert!(
                    d < 1e-4,
                    "{family} LoRA merged α={alpha}: max |Δlogit| = {d}"
                );
                let greedy: Vec<u32> =
                    serde_json::from_value(run(alpha)["greedy"].clone()).unwrap();
                let g = engine
                    .generate_steps(&ids, &[], None, &params, &|_| false, &mut |_, _| {})
                    .unwrap();
                assert_eq!(g[0].token_ids, greedy, "{family} LoRA merged α={alpha}");
            }
            let rows = engine.logits_columns(&ids, &alphas).unwrap();
            let gens = engine
                .generate_steps(
                    &ids,
                    &[],
                    Some(&alphas),
                    &params,
                    &|_| false,
                    &mut |_, _| {},
                )
                .unwrap();
            for ((alpha, row), g) in runs.keys().zip(&rows).zip(&gens) {
                let want: Vec<f32> = serde_json::from_value(run(alpha)["logits"].clone()).unwrap();
                let d = max_diff(row, &want);
                assert!(
                    d < 1e-4,
                    "{family} LoRA factored α={alpha}: max |Δlogit| = {d}"
                );
                let greedy: Vec<u32> =
                    serde_json::from_value(run(alpha)["greedy"].clone()).unwrap();
                assert_eq!(g.token_ids, greedy, "{family} LoRA factored α={alpha}");
            }
        }
    }
}

/// What an export from a GGUF writes as config.json (each family's unit writes its own keys)
/// reads back as the config it was written from: for every family's fixture and bench shape.
#[test]
fn each_familys_config_json_reads_back_as_itself() {
    use lerpscope::engine::{config_json, ModelConfig};
    let mut configs: Vec<(String, ModelConfig)> = Vec::new();
    let rope = read_json("families/variants.json");
    let families = expected()["families"].as_object().unwrap().clone();
    for family in families
        .keys()
        .chain(rope["families"].as_object().unwrap().keys())
    {
        let path = PathBuf::from(fixture(&format!("families/{family}-a"))).join("config.json");
        configs.push((family.clone(), ModelConfig::load(&path).unwrap()));
    }
    for shape in lerpscope::shapes::Shape::ALL {
        configs.push((shape.name().into(), shape.config()));
    }
    // An absent head_dim means hidden / heads; the written config names it.
    let explicit = |mut c: ModelConfig| {
        if let ModelConfig::Decoder(d) = &mut c {
            d.head_dim = Some(d.head_dim());
        }
        c
    };
    for (name, c) in configs {
        let json = config_json(&c).unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = ModelConfig::parse(&json.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(explicit(back), explicit(c), "{name}: {json}");
    }
}
