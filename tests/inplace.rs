//! The in-place blend, held to a model freshly built from weights blended by the plain
//! reference, for both architectures.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lerpscope::engine::kernels::blend_reference;
use lerpscope::engine::source;
use lerpscope::engine::Buffer;
use lerpscope::engine::Checkpoint;
use lerpscope::engine::Model;
use lerpscope::engine::ModelConfig;
use lerpscope::engine::{
    DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams, Standalone,
};
use lerpscope::shapes::{write_tiny_pair, Arch};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

const PROMPT_IDS: [u32; 6] = [5, 17, 42, 8, 99, 3];

fn cpu(dtype: Option<DType>) -> LoadOptions {
    LoadOptions {
        device: DeviceChoice::Cpu,
        dtype,
        allow_tokenizer_mismatch: false,
        ..Default::default()
    }
}

fn pair(arch: Arch) -> (tempfile::TempDir, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, arch).unwrap();
    let s = |p: &Path| p.display().to_string();
    (tmp, s(&a), s(&b))
}

/// Logits of a model built from scratch on weights blended tensor by tensor by the reference.
fn reference_logits(a: &str, b: &str, alpha: f32) -> Vec<f32> {
    let ca = Checkpoint::open(source::resolve(a).unwrap()).unwrap();
    let cb = Checkpoint::open(source::resolve(b).unwrap()).unwrap();
    let mut tensors = HashMap::new();
    for (name, meta) in &ca.weights.tensors {
        let (va, vb) = (
            ca.weights.read_f32(name).unwrap(),
            cb.weights.read_f32(name).unwrap(),
        );
        let mut w = vec![0f32; va.len()];
        blend_reference(&mut w, &va, &vb, alpha);
        let t = Tensor::from_vec(w, meta.shape.as_slice(), &Device::Cpu).unwrap();
        tensors.insert(name.clone(), t);
    }
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = Model::load(&ca.config, vb).unwrap();
    let mut cache = model.new_cache(PROMPT_IDS.len());
    model
        .forward(&PROMPT_IDS, &mut cache)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn inplace_matches_fresh(arch: Arch) {
    let (_tmp, a, b) = pair(arch);
    let mut engine = Engine::load(&a, &b, &cpu(None)).unwrap();
    for alpha in [-0.5, 0.0, 0.3, 1.0, 1.7] {
        engine.set_alpha(alpha).unwrap();
        let got = engine.logits(&PROMPT_IDS).unwrap();
        let want = reference_logits(&a, &b, alpha as f32);
        let d = max_diff(&got, &want);
        assert!(d <= 1e-5, "{arch:?} α={alpha}: max |Δlogit| {d}");
    }
    engine.set_alpha(0.0).unwrap();
    assert_eq!(
        bits(engine.weights().full().unwrap().buffer(Buffer::Working)),
        bits(engine.weights().full().unwrap().buffer(Buffer::A))
    );
    engine.set_alpha(1.0).unwrap();
    assert_eq!(
        bits(engine.weights().full().unwrap().buffer(Buffer::Working)),
        bits(engine.weights().full().unwrap().buffer(Buffer::B))
    );
}

#[test]
fn llama_inplace_blend_matches_a_freshly_built_model() {
    inplace_matches_fresh(Arch::Llama);
}

#[test]
fn gpt2_inplace_blend_matches_a_freshly_built_model() {
    inplace_matches_fresh(Arch::Gpt2);
}

#[test]
fn endpoints_equal_the_models_loaded_alone() {
    for arch in [Arch::Llama, Arch::Gpt2] {
        let (_tmp, a, b) = pair(arch);
        let mut engine = Engine::load(&a, &b, &cpu(None)).unwrap();
        let params = GenerationParams {
            max_tokens: 20,
            sampling: SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
            ignore_eos: false,
            token_info: false,
        };
        let never = AtomicBool::new(false);
        for (alpha, path) in [(0.0, &a), (1.0, &b)] {
            engine.set_alpha(alpha).unwrap();
            let alone = Standalone::load(path, DType::F32, &Device::Cpu).unwrap();
            let mut cache = alone.model.new_cache(PROMPT_IDS.len());
            let want: Vec<f32> = alone
                .model
                .forward(&PROMPT_IDS, &mut cache)
                .unwrap()
                .to_vec1()
                .unwrap();
            let got = engine.logits(&PROMPT_IDS).unwrap();
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{arch:?} α={alpha}: logits differ from the model loaded alone"
            );
            let g1 = engine
                .generate("The movie", &params, &never, &mut |_| {})
                .unwrap();
            let g2 = alone
                .generator()
                .run("The movie", &params, &never, &mut |_| {})
                .unwrap();
            assert_eq!(g1.token_ids, g2.token_ids);
            assert_eq!(g1.text, g2.text);
        }
    }
}

#[test]
fn no_drift_after_a_thousand_moves() {
    let (_tmp, a, b) = pair(Arch::Llama);
    let mut moved = Engine::load(&a, &b, &cpu(None)).unwrap();
    let mut state = 12345u64;
    for _ in 0..1000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let alpha = (state >> 11) as f64 / (1u64 << 53) as f64 * 6.0 - 3.0;
        moved.set_alpha(alpha).unwrap();
    }
    moved.set_alpha(0.3).unwrap();
    let mut fresh = Engine::load(&a, &b, &cpu(None)).unwrap();
    fresh.set_alpha(0.3).unwrap();
    assert_eq!(
        bits(moved.weights().full().unwrap().buffer(Buffer::Working)),
        bits(fresh.weights().full().unwrap().buffer(Buffer::Working))
    );
}

#[test]
fn half_precision_endpoints_are_exact_and_blends_close() {
    let (_tmp, a, b) = pair(Arch::Llama);
    for dtype in [DType::F16, DType::BF16] {
        let mut engine = Engine::load(&a, &b, &cpu(Some(dtype))).unwrap();
        assert_eq!(
            engine
                .weights()
                .full()
                .unwrap()
                .buffer(Buffer::Working)
                .dtype(),
            dtype
        );
        engine.set_alpha(1.0).unwrap();
        let w = engine.weights().full().unwrap();
        assert_eq!(bits(w.buffer(Buffer::Working)), bits(w.buffer(Buffer::B)));
        engine.set_alpha(0.0).unwrap();
        let w = engine.weights().full().unwrap();
        assert_eq!(bits(w.buffer(Buffer::Working)), bits(w.buffer(Buffer::A)));
        engine.set_alpha(0.5).unwrap();
        let got = engine.logits(&PROMPT_IDS).unwrap();
        let want = reference_logits(&a, &b, 0.5);
        let scale = want.iter().map(|x| x.abs()).fold(0.0, f32::max);
        let d = max_diff(&got, &want);
        assert!(d <= 0.05 * scale.max(1.0), "{dtype:?}: max |Δlogit| {d}");
    }
}

#[test]
fn sharded_checkpoint_loads_like_a_single_file() {
    let (tmp, a, b) = pair(Arch::Llama);
    // Split B into two shards with an index, as large checkpoints come.
    let sharded = tmp.path().join("b-sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(Path::new(&b).join(f), sharded.join(f)).unwrap();
    }
    let cb = Checkpoint::open(source::resolve(&b).unwrap()).unwrap();
    let names: Vec<String> = cb.weights.tensors.keys().cloned().collect();
    let (first, second) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (i, part) in [first, second].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let tensors: Vec<_> = part
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    cb.weights.tensors[n].shape.clone(),
                    cb.weights.read_f32(n).unwrap(),
                )
            })
            .collect();
        lerpscope::shapes::write_safetensors(
            &sharded.join(&file),
            &tensors,
            safetensors::Dtype::F32,
        )
        .unwrap();
        for n in part.iter() {
            map.insert(n.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let mut one = Engine::load(&a, &b, &cpu(None)).unwrap();
    let mut two = Engine::load(&a, &sharded.display().to_string(), &cpu(None)).unwrap();
    one.set_alpha(0.7).unwrap();
    two.set_alpha(0.7).unwrap();
    assert_eq!(
        one.logits(&PROMPT_IDS).unwrap(),
        two.logits(&PROMPT_IDS).unwrap()
    );
    let cfg = ModelConfig::load(&sharded.join("config.json")).unwrap();
    assert_eq!(cfg.architecture(), "LlamaForCausalLM");
}

#[test]
fn fast_and_differentiable_kernels_agree() {
    use lerpscope::engine::Kernels;
    for arch in [Arch::Llama, Arch::Gpt2] {
        let (_tmp, a, _b) = pair(arch);
        let files = source::resolve(&a).unwrap();
        let config = ModelConfig::load(&files.config).unwrap();
        let load = |k| {
            let vb = unsafe {
                VarBuilder::from_mmaped_safetensors(&files.weights, DType::F32, &Device::Cpu)
                    .unwrap()
            };
            Model::load_with(&config, vb, k).unwrap()
        };
        let ids = Tensor::new(&PROMPT_IDS, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let fast = load(Kernels::Fast).forward_all(&ids).unwrap();
        let slow = load(Kernels::Differentiable).forward_all(&ids).unwrap();
        let d = (fast - slow)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-4, "{arch:?}: fast and slow kernels differ by {d}");
    }
}

#[test]
fn cached_decoding_matches_a_full_forward() {
    let (_tmp, a, b) = pair(Arch::Gpt2);
    let engine = Engine::load(&a, &b, &cpu(None)).unwrap();
    let mut g = engine.generator();
    g.eos = &[];
    let params = GenerationParams {
        max_tokens: 8,
        sampling: SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..Default::default()
        },
        ignore_eos: false,
        token_info: false,
    };
    let out = g
        .run("The food", &params, &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    // Each greedy token must be the argmax of a from-scratch forward over the prefix.
    let mut ids = engine.encode("The food").unwrap();
    for &t in &out.token_ids {
        let logits = engine.logits(&ids).unwrap();
        assert_eq!(lerpscope::engine::argmax(&logits), t);
        ids.push(t);
    }
}
