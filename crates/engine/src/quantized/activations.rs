//! Activations quantized to Q8 before each quantized dot product, as llama.cpp does: Q8_0 for
//! Q4_0, Q5_0 and Q8_0 weights, Q8_1 (with each block's scaled sum) for Q4_1 and Q5_1.
//!
//! These follow llama.cpp's AVX2 quantizers rather than its scalar reference (and candle's):
//! the inverse scale is 127 / max|x| and values round half to even. That keeps a row's
//! quantized activations equal to llama.cpp's on this machine, so the two differ only in
//! the order of their f32 sums.

use half::f16;

/// Values per block.
pub const QK8: usize = 32;
/// Bytes of one Q8_0 block: f16 scale, 32 × i8.
pub const Q8_0_BYTES: usize = 34;
/// Bytes of one Q8_1 block: f16 scale, f16 scale × Σ q, 32 × i8.
pub const Q8_1_BYTES: usize = 36;

/// One block of 32 values: its scale and quantized values (and their sum).
fn block(x: &[f32]) -> (f32, [i8; QK8], i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut q = [0i8; QK8];
    let mut sum = 0i32;
    for (q, &v) in q.iter_mut().zip(x) {
        // |v·id| ≤ 127 up to rounding of id; the cast saturates in any case.
        *q = (v * id).round_ties_even() as i8;
        sum += *q as i32;
    }
    (d, q, sum)
}

/// `x` (a multiple of 32 values) as Q8_0 blocks, in words so that the blocks' f16 fields are
/// aligned for candle's block types.
pub fn q8_0(x: &[f32]) -> Vec<u16> {
    let n = x.len() / QK8;
    let mut out = vec![0u16; n * Q8_0_BYTES / 2];
    let bytes = as_bytes_mut(&mut out);
    for (b, x) in bytes.chunks_exact_mut(Q8_0_BYTES).zip(x.chunks_exact(QK8)) {
        let (d, q, _) = block(x);
        b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        for (o, q) in b[2..].iter_mut().zip(q) {
            *o = q as u8;
        }
    }
    out
}

/// `x` as Q8_1 blocks (see [`q8_0`]).
pub fn q8_1(x: &[f32]) -> Vec<u16> {
    let n = x.len() / QK8;
    let mut out = vec![0u16; n * Q8_1_BYTES / 2];
    let bytes = as_bytes_mut(&mut out);
    for (b, x) in bytes.chunks_exact_mut(Q8_1_BYTES).zip(x.chunks_exact(QK8)) {
        let (d, q, sum) = block(x);
        b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_le_bytes());
        for (o, q) in b[4..].iter_mut().zip(q) {
            *o = q as u8;
        }
    }
    out
}

pub fn as_bytes_mut(w: &mut [u16]) -> &mut [u8] {
    // SAFETY: u16 has no padding and any byte pattern is a valid u16; the length is in bytes.
    unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut u8, w.len() * 2) }
}

pub fn as_bytes(w: &[u16]) -> &[u8] {
    // SAFETY: as above, read-only.
    unsafe { std::slice::from_raw_parts(w.as_ptr() as *const u8, w.len() * 2) }
}

/// The values Q8 blocks stand for (for the plain twin): `d·q` in f32.
pub fn dequantize_q8(bytes: &[u8], block_bytes: usize) -> Vec<f32> {
    let skip = block_bytes - QK8;
    bytes
        .chunks_exact(block_bytes)
        .flat_map(|b| {
            let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
            b[skip..].iter().map(move |&q| d * (q as i8) as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        for (words, size) in [(q8_0(&x), Q8_0_BYTES), (q8_1(&x), Q8_1_BYTES)] {
            let back = dequantize_q8(as_bytes(&words), size);
            for (b, xs) in back.chunks(QK8).zip(x.chunks(QK8)) {
                let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                // Half a step of the f16-rounded scale, plus that scale's own rounding.
                let step = amax / 127.0;
                for (b, x) in b.iter().zip(xs) {
                    assert!((b - x).abs() <= 0.5 * step + amax * 1e-3, "{b} vs {x}");
                }
            }
        }
    }

    #[test]
    fn q8_1_carries_the_scaled_sum_and_zero_blocks_stay_zero() {
        let mut x = vec![0f32; 64];
        x[32..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as f32);
        let words = q8_1(&x);
        let b = as_bytes(&words);
        assert!(b[..Q8_1_BYTES].iter().all(|&v| v == 0), "an all-zero block");
        let blk = &b[Q8_1_BYTES..];
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let s = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
        let sum: i32 = blk[4..].iter().map(|&q| q as i8 as i32).sum();
        assert_eq!(s, f16::from_f32(d * sum as f32).to_f32());
        assert_eq!(
            blk[4 + 31] as i8,
            127,
            "the largest value takes the full range"
        );
    }
}
