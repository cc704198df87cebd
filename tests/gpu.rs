//! GPU checks (`cargo test --release --features cuda --test gpu`). Each test skips, saying so,
//! when no CUDA GPU can be opened, unless LERPSCOPE_REQUIRE_GPU is set.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};
use lerpscope::engine::kernels::{blend, blend_reference, blend_tensor, Element};
use lerpscope::engine::{DeviceChoice, Engine, LoadOptions};
use lerpscope::shapes::{write_tiny_pair, Arch};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The GPU, or None after saying so (a failure instead where LERPSCOPE_REQUIRE_GPU is set,
/// as scripts/gpu-check.sh sets it).
fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            let why = lerpscope::engine::candle_text(&e);
            lerpscope::shapes::skip(&format!("no CUDA GPU ({why})"), "LERPSCOPE_REQUIRE_GPU");
            None
        }
    }
}

/// Bit patterns as integers in a total order (negatives below positives), so the distance
/// between two values is their distance in ulps.
fn ordered(bits: u32, width: u32) -> i64 {
    let sign = 1u32 << (width - 1);
    if bits & sign != 0 {
        -((bits & !sign) as i64)
    } else {
        bits as i64
    }
}

trait Bits: Element + candle_core::WithDType {
    const WIDTH: u32;
    fn bits(self) -> u32;
}
impl Bits for f32 {
    const WIDTH: u32 = 32;
    fn bits(self) -> u32 {
        self.to_bits()
    }
}
impl Bits for f16 {
    const WIDTH: u32 = 16;
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
}
impl Bits for bf16 {
    const WIDTH: u32 = 16;
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
}

/// The GPU kernel must equal the CPU's bit for bit: same formula, same switch at α = 0.5, and
/// no fused multiply-add on either side.
fn kernel_matches_reference<T: Bits>(dev: &Device) {
    let mut rng = StdRng::seed_from_u64(9);
    for &len in &[1usize, 7, 8, 9, 4099, 1_000_003] {
        for &offset in &[0usize, 1, 3, 8] {
            let total = len + offset;
            let gen = |rng: &mut StdRng| -> Vec<T> {
                (0..total)
                    .map(|_| T::from_f32((rng.random::<f32>() - 0.5) * 8.0))
                    .collect()
            };
            let (a, b) = (gen(&mut rng), gen(&mut rng));
            let up = |v: &[T]| Tensor::from_slice(v, total, dev).unwrap();
            let (ta, tb) = (up(&a), up(&b));
            let tw = up(&vec![T::from_f32(0.0); total]);
            for &alpha in &[0.0f32, 1.0, 0.3, 0.5, 0.77, -0.6, 1.8] {
                let view = |t: &Tensor| t.narrow(0, offset, len).unwrap();
                blend_tensor(&view(&tw), &view(&ta), &view(&tb), alpha).unwrap();
                let got: Vec<T> = tw.to_vec1().unwrap();
                let mut want = vec![T::from_f32(0.0); len];
                blend_reference(&mut want, &a[offset..], &b[offset..], alpha);
                let mut fast = vec![T::from_f32(0.0); len];
                blend(&mut fast, &a[offset..], &b[offset..], alpha);
                let bits = |v: &[T]| v.iter().map(|x| x.bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&want), "CPU kernel against its reference");
                assert_eq!(got.len(), total);
                for (i, (g, w)) in got[offset..].iter().zip(&want).enumerate() {
                    let ulps = (ordered(g.bits(), T::WIDTH) - ordered(w.bits(), T::WIDTH)).abs();
                    assert!(
                        g.bits() == w.bits(),
                        "{:?} len {len} offset {offset} α {alpha} at {i}: GPU {:#x}, CPU {:#x} \
                         ({ulps} ulps)",
                        T::DTYPE,
                        g.bits(),
                        w.bits(),
                    );
                }
            }
        }
    }
}

#[test]
fn blend_kernel_matches_the_cpu_reference_in_every_dtype() {
    let Some(dev) = gpu() else { return };
    kernel_matches_reference::<f32>(&dev);
    kernel_matches_reference::<f16>(&dev);
    kernel_matches_reference::<bf16>(&dev);
}

/// The blend table's pass on CUDA (blend.cu's `table_pass`) writes the CPU pass's bits: every
/// row kind (copies, the line, slerp's pair, the plane, rows of four), slots of odd lengths
/// that span tiles and slots shorter than one vector.
fn table_matches_the_cpu<T: Bits>(dev: &Device) {
    use lerpscope::engine::kernels::table::{SlotMix, TableOp};
    use lerpscope::engine::kernels::FlatLayout;
    let lens = [70_001usize, 13, 9, 130_000, 3, 5000, 17, 1];
    let layout = FlatLayout::new(
        lens.iter()
            .enumerate()
            .map(|(i, &n)| (format!("t{i}"), vec![n])),
        T::DTYPE,
    );
    let table = [
        SlotMix::Line(0.3),
        SlotMix::A,
        SlotMix::Pair(0.25, -1.5),
        SlotMix::Plane(0.7, 0.5),
        SlotMix::B,
        SlotMix::Space(0.3, -0.4, 1.25),
        SlotMix::Line(0.8),
        SlotMix::Space(0.0, 0.0, 0.5),
    ];
    let n = layout.total;
    let mut rng = StdRng::seed_from_u64(11);
    let mut gen = || -> Vec<T> {
        (0..n)
            .map(|_| T::from_f32((rng.random::<f32>() - 0.5) * 8.0))
            .collect()
    };
    let ends = [gen(), gen(), gen(), gen()];
    let run = |device: &Device| -> Vec<T> {
        let [a, b, c, d] = ends
            .each_ref()
            .map(|v| Tensor::from_slice(v, n, device).unwrap());
        let w = Tensor::zeros(n, T::DTYPE, device).unwrap();
        let op = TableOp {
            layout: &layout,
            table: &table,
            extra: [Some(&c), Some(&d)],
        };
        w.inplace_op3(&a, &b, &op).unwrap();
        w.to_vec1().unwrap()
    };
    let (cpu, gpu) = (run(&Device::Cpu), run(dev));
    for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
        assert!(
            g.bits() == c.bits(),
            "{:?} element {i}: GPU {:#x}, CPU {:#x}",
            T::DTYPE,
            g.bits(),
            c.bits()
        );
    }
}

#[test]
fn the_table_pass_on_cuda_equals_the_cpu_bit_for_bit() {
    let Some(dev) = gpu() else { return };
    table_matches_the_cpu::<f32>(&dev);
    table_matches_the_cpu::<f16>(&dev);
    table_matches_the_cpu::<bf16>(&dev);
}

fn engines(arch: Arch) -> (tempfile::TempDir, Engine, Engine) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, arch).unwrap();
    let load = |device| {
        Engine::load(
            &a.display().to_string(),
            &b.display().to_string(),
            &LoadOptions {
                device,
                dtype: Some(DType::F32),
                allow_tokenizer_mismatch: false,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let cpu = load(DeviceChoice::Cpu);
    let gpu = load(DeviceChoice::Cuda(0));
    (tmp, cpu, gpu)
}

fn close(x: &[f32], y: &[f32], what: &str) {
    assert_eq!(x.len(), y.len(), "{what}: logits of different lengths");
    let d = x
        .iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(d <= 1e-3, "{what}: max |Δlogit| = {d}");
}

#[test]
fn tiny_models_on_cuda_match_the_cpu() {
    if gpu().is_none() {
        return;
    }
    let ids = [5u32, 17, 42, 8, 99, 3];
    for (arch, fused) in [
        (Arch::Llama, false),
        (Arch::Llama, true),
        (Arch::Gpt2, false),
    ] {
        let (_tmp, mut cpu, mut gpu) = engines(arch);
        gpu.set_fused(fused).unwrap();
        for alpha in [0.0, 0.3, 1.0, 1.5] {
            cpu.set_alpha(alpha).unwrap();
            gpu.set_alpha(alpha).unwrap();
            let (c, g) = (cpu.logits(&ids).unwrap(), gpu.logits(&ids).unwrap());
            close(&c, &g, &format!("{arch:?} α {alpha} (fused: {fused})"));
        }
        // The batched-columns mode on the GPU, against re-blending there.
        let alphas = [0.0, 0.4, 1.0];
        let rows = gpu.logits_columns(&ids, &alphas).unwrap();
        assert_eq!(rows.len(), alphas.len());
        for (alpha, row) in alphas.iter().zip(&rows) {
            gpu.set_alpha(*alpha).unwrap();
            close(
                row,
                &gpu.logits(&ids).unwrap(),
                &format!("{arch:?} batched α {alpha}"),
            );
        }
    }
}

#[test]
fn a_thousand_moves_leave_no_drift_on_cuda() {
    if gpu().is_none() {
        return;
    }
    let (_tmp, _cpu, mut moved) = engines(Arch::Llama);
    let (_tmp2, _cpu2, mut fresh) = engines(Arch::Llama);
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..1000 {
        moved.set_alpha(rng.random::<f64>() * 3.0 - 1.0).unwrap();
    }
    moved.set_alpha(0.3).unwrap();
    fresh.set_alpha(0.3).unwrap();
    let bits = |e: &Engine| -> Vec<u32> {
        use lerpscope::engine::Buffer;
        e.weights()
            .full()
            .unwrap()
            .buffer(Buffer::Working)
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    };
    assert_eq!(bits(&moved), bits(&fresh));
}

#[test]
fn a_pair_too_large_for_the_gpu_is_refused_with_the_numbers() {
    let Some(dev) = gpu() else { return };
    let (free, _) = lerpscope::engine::device_memory(&dev).unwrap();
    let err = lerpscope::engine::memory_fit(free / 2, 0, free).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("GiB") && msg.contains("free"), "{msg}");
}

/// tests/fixtures, or where LERPSCOPE_FIXTURES says (the GPU bundle carries a copy).
fn fixtures() -> std::path::PathBuf {
    std::env::var_os("LERPSCOPE_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
        })
}

fn adapter_engines(pair: &str, dtype: DType) -> (Engine, Engine) {
    let dir = fixtures().join("adapters");
    let (a, b) = (dir.join(format!("{pair}-a")), dir.join(format!("{pair}-b")));
    let load = |device| {
        Engine::load(
            &a.display().to_string(),
            &b.display().to_string(),
            &LoadOptions {
                device,
                dtype: Some(dtype),
                ..Default::default()
            },
        )
        .unwrap()
    };
    (load(DeviceChoice::Cpu), load(DeviceChoice::Cuda(0)))
}

/// Every decoder family's tiny pair (tests/fixtures/families: windows, biases, q/k norms,
/// soft-caps, two RoPEs, fused projections) on CUDA against the CPU, re-blended and batched.
#[test]
fn decoder_families_on_cuda_match_the_cpu() {
    if gpu().is_none() {
        return;
    }
    // Longer than the fixtures' windows of 4.
    let ids = [5u32, 17, 42, 8, 99, 3, 61, 7, 12, 40];
    for family in ["mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"] {
        let dir = fixtures().join("families");
        let (a, b) = (
            dir.join(format!("{family}-a")),
            dir.join(format!("{family}-b")),
        );
        let load = |device| {
            Engine::load(
                &a.display().to_string(),
                &b.display().to_string(),
                &LoadOptions {
                    device,
                    dtype: Some(DType::F32),
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{family}: {e}"))
        };
        let (mut cpu, mut gpu) = (load(DeviceChoice::Cpu), load(DeviceChoice::Cuda(0)));
        for alpha in [0.0, 0.3, 1.5] {
            cpu.set_alpha(alpha).unwrap();
            gpu.set_alpha(alpha).unwrap();
            let (c, g) = (cpu.logits(&ids).unwrap(), gpu.logits(&ids).unwrap());
            close(&c, &g, &format!("{family} α {alpha}"));
        }
        let alphas = [0.0, 0.4, 1.0];
        for (alpha, row) in alphas
            .iter()
            .zip(gpu.logits_columns(&ids, &alphas).unwrap())
        {
            cpu.set_alpha(*alpha).unwrap();
            close(
                &row,
                &cpu.logits(&ids).unwrap(),
                &format!("{family} batched α {alpha}"),
            );
        }
    }
}

/// The merged-adapter pass on the GPU writes the same bits as the CPU's, in every dtype: per
/// tensor (blend.cu's lowrank_merge, and the blend for replaced tensors) and in one launch
/// (merge_tiles, with the fused kernels on).
#[test]
fn adapter_merge_on_cuda_equals_the_cpu_bit_for_bit() {
    if gpu().is_none() {
        return;
    }
    for (dtype, one_launch) in [DType::F32, DType::F16, DType::BF16]
        .into_iter()
        .flat_map(|d| [(d, false), (d, true)])
    {
        for pair in ["llama-plain", "llama-saved", "gpt2"] {
            let (mut cpu, mut gpu) = adapter_engines(pair, dtype);
            gpu.set_fused(one_launch).unwrap();
            for alpha in [0.0, 0.3, 1.0, -0.5, 1.5] {
                cpu.set_alpha(alpha).unwrap();
                gpu.set_alpha(alpha).unwrap();
                let bits = |e: &Engine| -> Vec<u32> {
                    let w = e.weights().working().to_dtype(DType::F32).unwrap();
                    w.to_vec1::<f32>()
                        .unwrap()
                        .iter()
                        .map(|x| x.to_bits())
                        .collect()
                };
                assert!(
                    bits(&cpu) == bits(&gpu),
                    "{pair} {dtype:?} α {alpha} (one launch: {one_launch}): the merged weights differ"
                );
            }
        }
    }
}

/// Both adapter paths on the GPU give the CPU's logits.
#[test]
fn adapter_pairs_on_cuda_match_the_cpu() {
    if gpu().is_none() {
        return;
    }
    let ids = [5u32, 17, 42, 8, 99, 3];
    let pairs = ["llama-plain", "llama-embedding", "llama-saved", "gpt2"];
    for (pair, fused) in pairs.iter().flat_map(|p| [(p, false), (p, true)]) {
        let (mut cpu, mut gpu) = adapter_engines(pair, DType::F32);
        gpu.set_fused(fused).unwrap();
        let alphas = [0.0, 0.3, 1.0, 1.5];
        let rows = gpu.logits_columns(&ids, &alphas).unwrap();
        assert_eq!(rows.len(), alphas.len());
        for (alpha, row) in alphas.iter().zip(&rows) {
            cpu.set_alpha(*alpha).unwrap();
            gpu.set_alpha(*alpha).unwrap();
            let c = cpu.logits(&ids).unwrap();
            close(
                &c,
                &gpu.logits(&ids).unwrap(),
                &format!("{pair} merged α {alpha} (fused: {fused})"),
            );
            close(
                &c,
                row,
                &format!("{pair} factored α {alpha} (fused: {fused})"),
            );
        }
    }
}

/// A pair on the GPU in `dtype` and the same pair on the CPU in f32 (the reference): the
/// tiny Llama fixture (head dimension 8) or the demo shape (head dimension 32, vector loads).
fn llama_engines(demo_shape: bool, dtype: DType) -> (tempfile::TempDir, Engine, Engine) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = if demo_shape {
        lerpscope::shapes::Shape::Demo.pair_in(tmp.path()).unwrap()
    } else {
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        write_tiny_pair(&a, &b, Arch::Llama).unwrap();
        (a, b)
    };
    let load = |device, dtype| {
        Engine::load(
            &a.display().to_string(),
            &b.display().to_string(),
            &LoadOptions {
                device,
                dtype: Some(dtype),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let gpu = load(DeviceChoice::Cuda(0), dtype);
    let cpu = load(DeviceChoice::Cpu, DType::F32);
    (tmp, cpu, gpu)
}

fn max_diff(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len());
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Logits of `ids` (K rows of `t`, row-major) fed in `chunks` (prompt, then steps) through
/// `model`, the last position's of each chunk: what a generation sees step by step.
fn stepped_logits(
    model: &lerpscope::engine::Model,
    ids: &[u32],
    k: usize,
    chunks: &[usize],
    mix: Option<&lerpscope::engine::layers::Mix>,
) -> Vec<Vec<f32>> {
    let t = ids.len() / k;
    let mut cache = model.new_cache(t);
    let mut start = 0;
    chunks
        .iter()
        .map(|&n| {
            let part: Vec<u32> = (0..k)
                .flat_map(|row| ids[row * t + start..row * t + start + n].to_vec())
                .collect();
            start += n;
            model
                .forward_ids(&part, k, &mut cache, mix)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

/// The fused GPU pass against candle's ops on the same GPU weights, step by step: prompts of
/// one token, a few, and more than one pass holds (chunked), then single-token steps; one
/// sequence, and three at their own alphas (the batched columns). f32, so the two agree to
/// rounding.
#[test]
fn fused_pass_matches_candle_ops_step_by_step() {
    if gpu().is_none() {
        return;
    }
    for demo_shape in [false, true] {
        let (_tmp, _cpu, mut gpu) = llama_engines(demo_shape, DType::F32);
        gpu.set_fused(true).unwrap();
        assert_eq!(gpu.forward_path(), "fused", "the fused pass applies");
        gpu.set_alpha(0.3).unwrap();
        let vocab = gpu.config().vocab_size() as u32;
        let ids: Vec<u32> = (0..90u32).map(|i| (i * 37 + 11) % vocab).collect();
        let mix = gpu.mix(&[-0.5, 0.3, 1.2]).unwrap();
        for (k, chunks) in [
            (1, vec![1, 1, 1, 1]),
            (1, vec![5, 1, 1, 1]),
            (1, vec![70, 1, 1]),
            (3, vec![7, 1, 1, 1]),
            (3, vec![25, 1]),
        ] {
            let t: usize = chunks.iter().sum();
            let rows: Vec<u32> = (0..k).flat_map(|r| ids[r..r + t].to_vec()).collect();
            let run = |gpu: &Engine| {
                let g = if k > 1 {
                    gpu.pair_generator()
                } else {
                    gpu.generator()
                };
                stepped_logits(g.model, &rows, k, &chunks, (k > 1).then_some(&mix))
            };
            let fused = run(&gpu);
            gpu.set_fused(false).unwrap();
            let candle = run(&gpu);
            gpu.set_fused(true).unwrap();
            for (step, (f, c)) in fused.iter().zip(&candle).enumerate() {
                let d = max_diff(f, c);
                assert!(
                    d <= 1e-3,
                    "demo shape {demo_shape}, {k} row(s), chunks {chunks:?}, step {step}: max |Δlogit| {d}"
                );
            }
        }
    }
}

/// In half precision the fused pass keeps f32 activations: against the CPU's f32 logits it is
/// at least as close as candle's half-precision ops on the same weights.
#[test]
fn fused_pass_in_half_precision_is_as_close_to_f32_as_candle_ops() {
    if gpu().is_none() {
        return;
    }
    for dtype in [DType::BF16, DType::F16] {
        let (_tmp, mut cpu, mut gpu) = llama_engines(true, dtype);
        let ids: Vec<u32> = (0..24u32).map(|i| (i * 53 + 7) % 4096).collect();
        for alpha in [0.0, 0.6, 1.4] {
            cpu.set_alpha(alpha).unwrap();
            gpu.set_alpha(alpha).unwrap();
            let reference = cpu.logits(&ids).unwrap();
            gpu.set_fused(true).unwrap();
            let fused = gpu.logits(&ids).unwrap();
            gpu.set_fused(false).unwrap();
            let candle = gpu.logits(&ids).unwrap();
            let (df, dc) = (max_diff(&fused, &reference), max_diff(&candle, &reference));
            assert!(
                df <= 1.5 * dc + 1e-3,
                "{dtype:?} α {alpha}: fused {df} vs candle {dc} from the f32 logits"
            );
        }
    }
}

/// The factored adapter path (base plus both adapters' low-rank products per row) and the
/// merged one through the fused pass, against candle's ops.
#[test]
fn fused_pass_runs_adapter_pairs_like_candle_ops() {
    if gpu().is_none() {
        return;
    }
    let ids = [5u32, 17, 42, 8, 99, 3];
    for pair in ["llama-plain", "llama-embedding", "llama-saved"] {
        let (_cpu, mut gpu) = adapter_engines(pair, DType::F32);
        gpu.set_fused(true).unwrap();
        assert_eq!(gpu.forward_path(), "fused", "{pair}");
        let alphas = [0.0, 0.3, 1.0, 1.5];
        let fused = gpu.logits_columns(&ids, &alphas).unwrap();
        gpu.set_alpha(0.3).unwrap();
        let merged = gpu.logits(&ids).unwrap();
        gpu.set_fused(false).unwrap();
        gpu.set_alpha(0.3).unwrap();
        let candle = gpu.logits_columns(&ids, &alphas).unwrap();
        let candle_merged = gpu.logits(&ids).unwrap();
        for (alpha, (f, c)) in alphas.iter().zip(fused.iter().zip(&candle)) {
            let d = max_diff(f, c);
            assert!(d <= 1e-3, "{pair} factored α {alpha}: max |Δlogit| {d}");
        }
        let d = max_diff(&merged, &candle_merged);
        assert!(d <= 1e-3, "{pair} merged α 0.3: max |Δlogit| {d}");
    }
}

/// The device sampler picks what the host's sampler picks from the same logits and draws, row
/// by row and step by step (penalties carried on the device): greedy, top-k, top-p, ties, at a
/// vocabulary under its head and at SmolLM2's. It hands back exactly the rows its CPU twin
/// hands back (a nucleus wider than its head), and those the host picks and marks.
#[test]
fn the_device_sampler_picks_as_the_host() {
    use lerpscope::engine::device_sampling::{
        lm_like_logits, pick_as_the_kernel, DeviceSampler, Pick,
    };
    use lerpscope::engine::{Sampler, SamplingParams};
    let Some(dev) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(23);
    let mut handed_back = 0;
    for (temperature, top_k, top_p, repeat_penalty) in [
        (0.0, 0, 1.0, 1.3),
        (0.8, 0, 0.95, 1.1),
        (0.7, 40, 0.9, 1.0),
        (1.0, 0, 1.0, 1.0),
        (1.3, 500, 1.0, 1.2),
        (1.0, 0, 0.999, 1.0),
    ] {
        let params = SamplingParams {
            temperature,
            top_k,
            top_p,
            repeat_penalty,
            seed: 9,
        };
        for vocab in [700usize, 49_152] {
            let rows = 3;
            let mut histories: Vec<Vec<u32>> = (0..rows)
                .map(|_| (0..12).map(|_| rng.random_range(0..vocab as u32)).collect())
                .collect();
            let starts: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
            let mut device = DeviceSampler::new(&dev, vocab, &starts).unwrap();
            let mut hosts: Vec<Sampler> = (0..rows).map(|_| Sampler::new(params)).collect();
            for step in 0..24 {
                let logits = lm_like_logits(&mut rng, rows * vocab, vocab, step);
                let t = Tensor::from_vec(logits.clone(), (rows, vocab), &dev).unwrap();
                let u: Vec<f32> = hosts.iter_mut().map(Sampler::draw).collect();
                let words = device.sample(&t, &u, &params).unwrap().to_vec();
                for r in 0..rows {
                    let row = &logits[r * vocab..(r + 1) * vocab];
                    let mut seen = vec![false; vocab];
                    for &h in &histories[r] {
                        seen[h as usize] = true;
                    }
                    let want = hosts[r].pick(u[r], &mut row.to_vec(), &histories[r]);
                    let got = Pick::from_word(words[r]);
                    let what = format!(
                        "T {temperature} k {top_k} p {top_p} V {vocab} step {step} row {r}"
                    );
                    assert_eq!(got, pick_as_the_kernel(row, &seen, &params, u[r]), "{what}");
                    match got {
                        Pick::Token(t) => assert_eq!(t, want, "{what}"),
                        Pick::OnHost => {
                            handed_back += 1;
                            device.mark(r, want).unwrap();
                        }
                        Pick::NonFinite => panic!("{what}: finite logits called non-finite"),
                    }
                    histories[r].push(want);
                }
            }
        }
    }
    eprintln!("{handed_back} rows handed back to the host");
    let bad = Tensor::from_vec(vec![0.5f32, f32::NAN, 0.1], (1, 3), &dev).unwrap();
    let mut device = DeviceSampler::new(&dev, 3, &[&[]]).unwrap();
    let word = device
        .sample(&bad, &[0.5], &SamplingParams::default())
        .unwrap()[0];
    assert_eq!(Pick::from_word(word), Pick::NonFinite);
}

/// A generation on the fused pass picks its tokens on the device; asking for per-token
/// details brings every row's logits back and picks on the host. From the same logits the
/// two write the same tokens, one column and three.
#[test]
fn generation_samples_on_the_device_as_on_the_host() {
    use lerpscope::engine::GenerationParams;
    if gpu().is_none() {
        return;
    }
    let (_tmp, _cpu, mut gpu) = llama_engines(true, DType::F32);
    gpu.set_fused(true).unwrap();
    gpu.set_alpha(0.4).unwrap();
    let run = |details: bool| {
        let params = GenerationParams {
            max_tokens: 40,
            ignore_eos: true,
            token_info: details,
            ..Default::default()
        };
        let one = gpu
            .generate("the film was", &params, &|| false, &mut |_| {})
            .unwrap();
        let columns = gpu
            .generate_columns(
                "the film was",
                &[0.0, 0.5, 1.0],
                &params,
                &|_| false,
                &mut |_, _| {},
            )
            .unwrap();
        let mut ids = vec![one.token_ids];
        ids.extend(columns.into_iter().map(|g| g.token_ids));
        ids
    };
    assert_eq!(run(false), run(true));
}
