//! `--dtype auto`: the dtype a pair's weights are held in when none is asked for.
//!
//! On a GPU, the checkpoint's own. On the CPU, a half-precision checkpoint (f16/bf16) stays in
//! its dtype when that measures faster here than widening it to f32: decode streams every
//! weight once per token, so half the bytes is up to twice the speed where memory bandwidth
//! is the limit, but not where the weights fit in cache or the conversion costs more than it
//! saves. Measured once per process and dtype on a product the size of the model's largest
//! weight, like the columns' batch decision.

use candle_core::{DType, Device};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The dtype for weights stored in `stored` (each tensor's dtype; None: not a float dtype
/// candle holds, e.g. a quantised GGUF tensor) on `device`, the largest weight having `largest`
/// elements. On a GPU the first tensor's dtype; on the CPU a half dtype only where every tensor
/// is stored in it, so that `auto` never rounds a value (GGUF files keep norms in f32 beside
/// f16 matrices).
pub fn auto(stored: &[Option<DType>], device: &Device, largest: usize) -> DType {
    let first = stored.first().copied().flatten();
    match first {
        Some(d) if !device.is_cpu() => d,
        Some(d @ (DType::F16 | DType::BF16))
            if stored.iter().all(|s| *s == first) && half_is_faster_on_cpu(d, largest) =>
        {
            d
        }
        _ => DType::F32,
    }
}

/// Whether one-row products read `half` weights faster than the same weights in f32, with a
/// 10% margin (a tie keeps f32, which candle's other CPU kernels prefer).
pub fn half_is_faster_on_cpu(half: DType, largest: usize) -> bool {
    static MEASURED: Mutex<Vec<(DType, bool)>> = Mutex::new(Vec::new());
    let mut measured = MEASURED.lock().expect("dtype measurements");
    if let Some(&(_, faster)) = measured.iter().find(|(d, _)| *d == half) {
        return faster;
    }
    let (f32_time, half_time) = measure(half, largest);
    let faster = half_time.as_secs_f64() < 0.9 * f32_time.as_secs_f64();
    measured.push((half, faster));
    faster
}

/// Median times of `y = x · wᵀ` for one row against an `[n, 1024]` weight in f32 and in
/// `half`, interleaved so that both see the same machine.
fn measure(half: DType, largest: usize) -> (Duration, Duration) {
    use crate::weights::few_rows::matmul_wt;
    const K: usize = 1024;
    let n = largest.clamp(1 << 20, 1 << 25) / K;
    let x: Vec<f32> = (0..K).map(|i| (i % 7) as f32 * 0.01).collect();
    let w: Vec<f32> = (0..n * K).map(|i| (i % 13) as f32 * 1e-3).collect();
    let is_f16 = half == DType::F16;
    // Only the dtype asked about is made: the largest weights are 100+ MB in f32.
    let w16: Vec<half::f16> = match is_f16 {
        true => w.iter().map(|&v| half::f16::from_f32(v)).collect(),
        false => Vec::new(),
    };
    let wbf: Vec<half::bf16> = match is_f16 {
        false => w.iter().map(|&v| half::bf16::from_f32(v)).collect(),
        true => Vec::new(),
    };
    let mut y = vec![0f32; n];
    let mut time = |f32_weights: bool| {
        let t = Instant::now();
        match (f32_weights, is_f16) {
            (true, _) => matmul_wt(&x, &w, 1, n, K, &mut y),
            (false, true) => matmul_wt(&x, &w16, 1, n, K, &mut y),
            (false, false) => matmul_wt(&x, &wbf, 1, n, K, &mut y),
        }
        t.elapsed()
    };
    time(true);
    time(false);
    let (mut full, mut halves) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        full.push(time(true));
        halves.push(time(false));
    }
    full.sort();
    halves.sort();
    (full[2], halves[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_checkpoints_keep_their_dtype_on_a_gpu_and_quantised_ones_widen() {
        // No GPU needed: the CPU branch is the one measured; these are the fixed ones.
        let cpu = &Device::Cpu;
        assert_eq!(auto(&[None], cpu, 1 << 20), DType::F32);
        assert_eq!(auto(&[Some(DType::F32)], cpu, 1 << 20), DType::F32);
        // A half file with f32 norms is widened rather than rounded.
        let mixed = [Some(DType::F16), Some(DType::F32), Some(DType::F16)];
        assert_eq!(auto(&mixed, cpu, 1 << 20), DType::F32);
        let bf16 = auto(&[Some(DType::BF16); 3], cpu, 1 << 20);
        assert!(matches!(bf16, DType::BF16 | DType::F32));
        // The decision is made once and then reused.
        assert_eq!(bf16, auto(&[Some(DType::BF16)], cpu, 1 << 24));
    }
}
