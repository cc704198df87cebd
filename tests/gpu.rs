//! GPU checks (`cargo test --release --features cuda --test gpu`). Each test skips, saying so,
//! when no CUDA GPU can be opened.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};
use lerpscope::engine::blend::{blend, blend_reference, blend_tensor, Element};
use lerpscope::engine::{DeviceChoice, Engine, LoadOptions};
use lerpscope::fixtures::{write_tiny_pair, Arch};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("skipped: no CUDA GPU ({e})");
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
    for arch in [Arch::Llama, Arch::Gpt2] {
        let (_tmp, mut cpu, mut gpu) = engines(arch);
        for alpha in [0.0, 0.3, 1.0, 1.5] {
            cpu.set_alpha(alpha).unwrap();
            gpu.set_alpha(alpha).unwrap();
            let (c, g) = (cpu.logits(&ids).unwrap(), gpu.logits(&ids).unwrap());
            close(&c, &g, &format!("{arch:?} α {alpha}"));
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
        use lerpscope::engine::weights::Buffer;
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

/// The merged-adapter pass on the GPU (blend.cu's lowrank_merge, and the blend for replaced
/// tensors) writes the same bits as the CPU's, in every dtype.
#[test]
fn adapter_merge_on_cuda_equals_the_cpu_bit_for_bit() {
    if gpu().is_none() {
        return;
    }
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for pair in ["llama-plain", "llama-saved", "gpt2"] {
            let (mut cpu, mut gpu) = adapter_engines(pair, dtype);
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
                    "{pair} {dtype:?} α {alpha}: the merged weights differ"
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
    for pair in ["llama-plain", "llama-embedding", "llama-saved", "gpt2"] {
        let (mut cpu, mut gpu) = adapter_engines(pair, DType::F32);
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
                &format!("{pair} merged α {alpha}"),
            );
            close(&c, row, &format!("{pair} factored α {alpha}"));
        }
    }
}
