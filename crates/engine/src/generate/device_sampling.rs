//! Sampling where the logits are: on a GPU, one CUDA block per row (src/cuda/sample.cu) picks
//! each row's token from logits that never leave the device, and only the token ids come
//! back, where the host path copies every row's whole vocabulary back every step.
//!
//! The pick is [`Sampler`](super::sampling::Sampler)'s to the last bit: the same penalty,
//! temperature, top-k and top-p, the same weights ([`exp_weight`]), the same whole-mass sum
//! ([`lane_sum`]'s lanes are the block's threads) and the same sequential walk over the
//! candidates in their sorted order, with the uniform number the host's stream drew for the
//! step. Sorting the vocabulary is what a GPU block cannot do cheaply, so the kernel finds the
//! [`HEAD`] best candidates by radix selection (8 bits a pass over 64-bit keys: the value's
//! order, then the token id) and walks those; a nucleus wider than that (or top-p 1 over more
//! candidates) is left to the host, which copies that row alone and picks as before.
//!
//! [`pick_as_the_kernel`] is the kernel's algorithm step for step on the CPU: a test holds it
//! to the host sampler, and the GPU test holds the kernel to both.

use super::sampling::SamplingParams;
use super::softmax_weights::{exp_weight, lane_sum, MASS_LANES};

/// Candidates the kernel sorts and walks at most: one per thread of its block.
pub const HEAD: usize = MASS_LANES;

/// The kernel's answer for a row whose nucleus it cannot walk: pick on the host.
pub const ON_HOST: u32 = u32::MAX - 1;
/// The kernel's answer for a row with a non-finite logit.
pub const NON_FINITE: u32 = u32::MAX;

/// What the device picked for one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Token(u32),
    /// The nucleus is wider than [`HEAD`]: the host picks from this row's logits.
    OnHost,
    /// A logit is NaN or infinite (the weights overflow).
    NonFinite,
}

impl Pick {
    /// The kernel's output word.
    pub fn from_word(w: u32) -> Self {
        match w {
            NON_FINITE => Pick::NonFinite,
            ON_HOST => Pick::OnHost,
            t => Pick::Token(t),
        }
    }
}

/// f32 bits in `total_cmp`'s order as an unsigned integer (negatives below positives).
pub fn ordered(s: f32) -> u32 {
    let b = s.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// [`ordered`]'s inverse.
pub fn unordered(o: u32) -> f32 {
    f32::from_bits(if o & 0x8000_0000 != 0 {
        o & 0x7FFF_FFFF
    } else {
        !o
    })
}

/// A candidate's sort key: larger for a larger value, then for a smaller id (the sampler's
/// order), and unique.
pub fn key(s: f32, id: u32) -> u64 {
    ((ordered(s) as u64) << 32) | (!id) as u64
}

/// The `n`-th largest (from 1) of `len` unique keys: radix selection from the top byte, each
/// pass counting the keys that share the prefix found so far (the kernel's passes).
pub fn nth_largest(len: usize, n: usize, key: impl Fn(usize) -> u64) -> u64 {
    debug_assert!((1..=len).contains(&n));
    let (mut prefix, mut mask, mut rest) = (0u64, 0u64, n);
    for pass in 0..8 {
        let shift = 56 - 8 * pass;
        let mut hist = [0usize; 256];
        for i in 0..len {
            let k = key(i);
            if k & mask == prefix {
                hist[((k >> shift) & 0xFF) as usize] += 1;
            }
        }
        let mut digit = 255;
        while hist[digit] < rest {
            rest -= hist[digit];
            digit -= 1;
        }
        prefix |= (digit as u64) << shift;
        mask |= 0xFF << shift;
    }
    prefix
}

/// The kernel's pick for one row on the CPU: raw `logits`, `seen[i]` for tokens the penalty
/// applies to, this step's uniform `u`.
pub fn pick_as_the_kernel(logits: &[f32], seen: &[bool], p: &SamplingParams, u: f32) -> Pick {
    let v = logits.len();
    if logits.iter().any(|l| !l.is_finite()) {
        return Pick::NonFinite;
    }
    let penalised = |i: usize| {
        let l = logits[i];
        match (p.repeat_penalty != 1.0 && seen[i], l >= 0.0) {
            (false, _) => l,
            (true, true) => l / p.repeat_penalty,
            (true, false) => l * p.repeat_penalty,
        }
    };
    if p.temperature == 0.0 {
        // The first of the largest.
        let mut best = 0;
        for i in 1..v {
            if penalised(i) > penalised(best) {
                best = i;
            }
        }
        return Pick::Token(best as u32);
    }
    let inv_t = 1.0 / p.temperature;
    let s = |i: usize| penalised(i) * inv_t;
    let max = (0..v).map(s).fold(f32::NEG_INFINITY, f32::max);
    let key_of = |i: usize| key(s(i), i as u32);
    let candidates = if p.top_k > 0 && p.top_k < v {
        p.top_k
    } else {
        v
    };
    if p.top_p >= 1.0 && candidates > HEAD {
        return Pick::OnHost;
    }
    let kth = if candidates < v {
        nth_largest(v, candidates, key_of)
    } else {
        0
    };
    let need = if p.top_p < 1.0 {
        let w: Vec<f32> = (0..v)
            .map(|i| {
                if key_of(i) >= kth {
                    exp_weight(s(i) - max)
                } else {
                    0.0
                }
            })
            .collect();
        p.top_p * lane_sum(&w)
    } else {
        f32::INFINITY
    };
    let h = candidates.min(HEAD);
    let hk = if h < v { nth_largest(v, h, key_of) } else { 0 };
    let mut head: Vec<u64> = (0..v).map(key_of).filter(|&k| k >= hk).collect();
    debug_assert_eq!(head.len(), h);
    head.sort_unstable_by(|a, b| b.cmp(a));
    let weights: Vec<f32> = head
        .iter()
        .map(|&k| exp_weight(unordered((k >> 32) as u32) - max))
        .collect();
    let mut total = 0.0f32;
    let mut keep = None;
    for (j, w) in weights.iter().enumerate() {
        total += w;
        if total >= need {
            keep = Some(j + 1);
            break;
        }
    }
    let keep = match keep {
        Some(k) => k,
        None if h < candidates => return Pick::OnHost,
        None => h,
    };
    let target = u * total;
    let mut acc = 0.0f32;
    for (k, w) in head[..keep].iter().zip(&weights) {
        acc += w;
        if acc > target {
            return Pick::Token(!(*k as u32));
        }
    }
    Pick::Token(!(head[keep - 1] as u32))
}

#[cfg(feature = "cuda")]
pub use gpu::DeviceSampler;

/// `n` logits shaped like a language model's (a few likely tokens, a long tail) over a
/// vocabulary of `vocab`, for holding samplers together: sharper or flatter by `step`, and
/// every fourth step rounded to halves, so that many tie exactly.
pub fn lm_like_logits(rng: &mut impl rand::Rng, n: usize, vocab: usize, step: usize) -> Vec<f32> {
    let sharp = [2.5f32, 1.5, 0.6][step % 3];
    (0..n)
        .map(|_| {
            let l = -sharp * (1.0 + (vocab - 1) as f32 * rng.random::<f32>()).ln();
            if step.is_multiple_of(4) {
                (l * 2.0).round() / 2.0
            } else {
                l + 0.1 * rng.random::<f32>()
            }
        })
        .collect()
}

/// The token loop's rows picking on the device: made for a model that takes the fused GPU
/// pass (see [`crate::model::FUSED_SWITCH`]: both wait for `scripts/gpu-check.sh` on a GPU),
/// where no row needs its whole distribution back (per-token details). Without the `cuda`
/// feature none can be made.
pub struct OnDevice {
    #[cfg(feature = "cuda")]
    sampler: DeviceSampler,
    #[cfg(not(feature = "cuda"))]
    never: std::convert::Infallible,
    /// This step's draws, one per row (0 for rows that have stopped: they draw no more).
    pub draws: Vec<f32>,
}

impl OnDevice {
    /// For a generation whose first logits are `logits` (`[rows, vocab]`), rows starting
    /// from `histories`; None where rows pick on the host.
    pub fn start(
        model: &crate::Model,
        logits: &candle_core::Tensor,
        histories: &[&[u32]],
        details: bool,
    ) -> candle_core::Result<Option<Self>> {
        if details || !model.is_fused() {
            return Ok(None);
        }
        #[cfg(feature = "cuda")]
        {
            let sampler = DeviceSampler::new(logits.device(), logits.dim(1)?, histories)?;
            Ok(Some(Self {
                sampler,
                draws: vec![0.0; histories.len()],
            }))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (logits, histories);
            Ok(None)
        }
    }

    /// Every row's pick from `logits` at [`OnDevice::draws`].
    pub fn picks(
        &mut self,
        logits: &candle_core::Tensor,
        p: &SamplingParams,
    ) -> candle_core::Result<Vec<Pick>> {
        #[cfg(feature = "cuda")]
        {
            let words = self.sampler.sample(logits, &self.draws, p)?;
            Ok(words.iter().map(|&w| Pick::from_word(w)).collect())
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (logits, p);
            match self.never {}
        }
    }

    /// Tell the device the host picked `token` for `row`.
    pub fn picked_on_host(&mut self, row: usize, token: u32) -> candle_core::Result<()> {
        #[cfg(feature = "cuda")]
        {
            self.sampler.mark(row, token)
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (row, token);
            match self.never {}
        }
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::HEAD;
    use crate::generate::sampling::SamplingParams;
    use candle_core::cuda_backend::cudarc::driver::{
        CudaFunction, CudaSlice, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaDevice, DType, Device, Result, Storage, Tensor};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/sample.ptx"));
    const MODULE: &str = "lerpscope_sample";

    /// sample.cu's `SampleParams`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Params {
        inv_t: f32,
        penalty: f32,
        top_p: f32,
        top_k: i32,
        greedy: i32,
        vocab: i32,
    }
    // SAFETY: a plain C struct of 4-byte fields, laid out as sample.cu's.
    unsafe impl DeviceRepr for Params {}
    const _: () = assert!(std::mem::size_of::<Params>() == 24);

    /// The rows of one generation: which tokens each row's penalty applies to (kept on the
    /// device, marked by the kernel as it picks), the step's draws and the picks.
    pub struct DeviceSampler {
        dev: CudaDevice,
        func: CudaFunction,
        seen: CudaSlice<u8>,
        u: CudaSlice<f32>,
        out: CudaSlice<u32>,
        vocab: usize,
        picked: Vec<u32>,
    }

    impl DeviceSampler {
        /// One row per history (the prompt so far: the penalty's tokens) over `vocab` tokens.
        pub fn new(device: &Device, vocab: usize, histories: &[&[u32]]) -> Result<Self> {
            let Device::Cuda(dev) = device else {
                candle_core::bail!("the device sampler needs a CUDA device");
            };
            let rows = histories.len();
            let mut seen = vec![0u8; rows * vocab];
            for (r, history) in histories.iter().enumerate() {
                for &t in history.iter().filter(|&&t| (t as usize) < vocab) {
                    seen[r * vocab + t as usize] = 1;
                }
            }
            Ok(Self {
                func: (*dev.get_or_load_custom_func("sample_rows", MODULE, PTX)?).clone(),
                seen: dev.clone_htod(&seen)?,
                u: dev.alloc_zeros(rows.max(1))?,
                out: dev.alloc_zeros(rows.max(1))?,
                dev: dev.clone(),
                vocab,
                picked: vec![0; rows],
            })
        }

        /// Each row's pick from `logits` (`[rows, vocab]` f32 on this device) given this step's
        /// draws `u`, as the kernel's words ([`Pick::from_word`](super::Pick::from_word)): one
        /// launch, the draws up and the picks back.
        pub fn sample(&mut self, logits: &Tensor, u: &[f32], p: &SamplingParams) -> Result<&[u32]> {
            let rows = self.picked.len();
            if logits.dims() != [rows, self.vocab] || logits.dtype() != DType::F32 {
                candle_core::bail!(
                    "device sampler: logits {:?} {:?}, expected [{rows}, {}] f32",
                    logits.dims(),
                    logits.dtype(),
                    self.vocab
                );
            }
            if u.len() != rows {
                candle_core::bail!("device sampler: {} draws for {rows} rows", u.len());
            }
            let logits = logits.contiguous()?;
            let (storage, layout) = logits.storage_and_layout();
            let Storage::Cuda(c) = &*storage else {
                candle_core::bail!("device sampler: the logits are not on the GPU");
            };
            let stream = self.dev.cuda_stream();
            let base =
                c.as_cuda_slice::<f32>()?.device_ptr(&stream).0 + 4 * layout.start_offset() as u64;
            self.dev.memcpy_htod(u, &mut self.u)?;
            let params = Params {
                inv_t: if p.temperature == 0.0 {
                    0.0
                } else {
                    1.0 / p.temperature
                },
                penalty: p.repeat_penalty,
                top_p: p.top_p,
                top_k: p.top_k.min(i32::MAX as usize) as i32,
                greedy: (p.temperature == 0.0) as i32,
                vocab: self.vocab as i32,
            };
            let cfg = LaunchConfig {
                grid_dim: (rows as u32, 1, 1),
                block_dim: (HEAD as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut launch = stream.launch_builder(&self.func);
            launch.arg(&base);
            launch.arg(&mut self.seen);
            launch.arg(&self.u);
            launch.arg(&mut self.out);
            launch.arg(&params);
            // SAFETY: the logits hold rows × vocab f32 from `base`; seen, u and out were
            // allocated for these rows and this vocabulary.
            unsafe { launch.launch(cfg) }.w()?;
            self.dev.memcpy_dtoh(&self.out, &mut self.picked)?;
            Ok(&self.picked)
        }

        /// Mark `token` as seen in `row` (one the host picked for the device).
        pub fn mark(&mut self, row: usize, token: u32) -> Result<()> {
            let i = row * self.vocab + token as usize;
            if token as usize >= self.vocab || row >= self.picked.len() {
                candle_core::bail!("device sampler: token {token} of row {row} out of range");
            }
            self.dev
                .memcpy_htod(&[1u8][..], &mut self.seen.slice_mut(i..i + 1))
        }
    }

    impl std::fmt::Debug for DeviceSampler {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "DeviceSampler({} rows × {})",
                self.picked.len(),
                self.vocab
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::sampling::Sampler;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn keys_order_as_the_sampler_does() {
        let values = [-3.5f32, -0.0, 0.0, 1e-30, 2.0, 2.0, f32::MAX, -f32::MAX];
        for (i, &a) in values.iter().enumerate() {
            assert_eq!(unordered(ordered(a)).to_bits(), a.to_bits());
            for (j, &b) in values.iter().enumerate() {
                let sampler = b.total_cmp(&a).then((i as u32).cmp(&(j as u32)));
                // Descending keys are the sampler's ascending order.
                let keys = key(b, j as u32).cmp(&key(a, i as u32));
                assert_eq!(keys, sampler, "{a} #{i} vs {b} #{j}");
            }
        }
    }

    /// The kernel spells the weights' constants as bits; they must be the host's.
    #[test]
    fn the_kernels_constants_are_the_hosts() {
        let cu = include_str!("../cuda/sample.cu");
        for (name, value) in crate::generate::softmax_weights::EXP_CONSTANTS {
            let line = format!("#define {name}_BITS {:#010x}u", value.to_bits());
            assert!(cu.contains(&line), "sample.cu lacks `{line}`");
        }
        assert!(cu.contains(&format!("#define HEAD {HEAD}")));
        assert!(cu.contains(&format!("#define ON_HOST {ON_HOST:#010X}u")));
        assert!(cu.contains(&format!("#define NON_FINITE {NON_FINITE:#010X}u")));
    }

    #[test]
    fn radix_selection_finds_the_nth_largest() {
        let mut rng = StdRng::seed_from_u64(3);
        let keys: Vec<u64> = (0..3000)
            .map(|i| key((rng.random::<f32>() * 8.0).round() - 4.0, i))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        for n in [1, 2, 17, 1024, 2999, 3000] {
            assert_eq!(
                nth_largest(keys.len(), n, |i| keys[i]),
                sorted[n - 1],
                "n {n}"
            );
        }
    }

    /// The kernel's algorithm picks what the host sampler picks, or hands the row back, for
    /// language-model-like logits (a few likely tokens and a long tail), ties, penalties,
    /// top-k and top-p, at two vocabulary sizes around the head's.
    #[test]
    fn the_kernels_algorithm_is_the_samplers() {
        let mut rng = StdRng::seed_from_u64(19);
        let mut on_host = 0;
        let mut picked = 0;
        for &(t, k, top_p, penalty) in &[
            (1.0, 0, 0.95, 1.0),
            (0.7, 0, 0.5, 1.3),
            (1.3, 0, 0.999, 1.0),
            (1.0, 40, 0.9, 1.1),
            (0.8, 0, 1.0, 1.0),
            (0.8, 700, 1.0, 1.2),
            (0.0, 0, 0.9, 1.5),
            (1.0, 2000, 0.97, 1.0),
        ] {
            let params = SamplingParams {
                temperature: t,
                top_k: k,
                top_p,
                repeat_penalty: penalty,
                seed: 5,
            };
            for vocab in [700, 5000] {
                let mut host = Sampler::new(params);
                for step in 0..120 {
                    let logits = lm_like_logits(&mut rng, vocab, vocab, step);
                    let history: Vec<u32> =
                        (0..20).map(|_| rng.random_range(0..vocab as u32)).collect();
                    let mut seen = vec![false; vocab];
                    for &h in &history {
                        seen[h as usize] = true;
                    }
                    let u = host.draw();
                    let want = host.pick(u, &mut logits.clone(), &history);
                    match pick_as_the_kernel(&logits, &seen, &params, u) {
                        Pick::Token(got) => {
                            picked += 1;
                            assert_eq!(got, want, "t {t} k {k} p {top_p} V {vocab} step {step}")
                        }
                        Pick::OnHost => {
                            on_host += 1;
                            assert!(
                                vocab > HEAD && (top_p >= 1.0 || k == 0 || k > HEAD),
                                "handed back with a nucleus the head holds"
                            );
                        }
                        Pick::NonFinite => panic!("finite logits"),
                    }
                }
            }
        }
        assert!(
            picked > 4 * on_host,
            "{picked} picked, {on_host} handed back"
        );
        let mut bad = vec![0.5f32; 10];
        bad[3] = f32::NAN;
        let p = SamplingParams::default();
        assert_eq!(
            pick_as_the_kernel(&bad, &[false; 10], &p, 0.5),
            Pick::NonFinite
        );
    }
}
