//! Each tile kernel this CPU has, timed alone on the calling thread over one matrix
//! (`lerpscope bench kernels`): where the products' instructions are compared without the
//! rest of a decode step around them.

use super::tiles::Tiles;
use super::{QMatrix, QType};
use candle_core::quantized::k_quants::{
    BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ6K, BlockQ8_0, GgmlType,
};
use std::time::Instant;

/// One kernel at one number of activation rows: the median time of the whole matrix's
/// product, and the weight bytes it read per second.
#[derive(Debug, Clone)]
pub struct KernelTiming {
    pub kernel: &'static str,
    pub act_rows: usize,
    pub micros: f64,
    pub gb_per_s: f64,
}

/// The types kept in tiles, by the names `--quant` takes.
pub const TILED_TYPES: [&str; 5] = ["q4_0", "q4_1", "q8_0", "q4_k", "q6_k"];

/// Time a `[rows, cols]` matrix of `quant` (one of [`TILED_TYPES`]; made-up values quantized
/// by candle) through every kernel this CPU has and the plain twin, at each count of
/// activation rows in `act_rows`, `iters` times each (medians).
pub fn time_kernels(
    quant: &str,
    (rows, cols): (usize, usize),
    act_rows: &[usize],
    iters: usize,
) -> Result<Vec<KernelTiming>, String> {
    let qtype = match quant {
        "q4_0" => QType::Q4_0,
        "q4_1" => QType::Q4_1,
        "q8_0" => QType::Q8_0,
        "q4_k" => QType::Q4K,
        "q6_k" => QType::Q6K,
        other => {
            return Err(format!(
                "--quant {other}: the tiled types are {}",
                TILED_TYPES.join(", ")
            ))
        }
    };
    if iters == 0 || act_rows.contains(&0) {
        return Err("--iters and every --act-rows must be at least 1".into());
    }
    if rows == 0 || !rows.is_multiple_of(super::tiles::TASK_ROWS) {
        return Err(format!(
            "--rows {rows}: the kernels are timed over whole pairs of tiles, a multiple of {}",
            super::tiles::TASK_ROWS
        ));
    }
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 300.0)
        .collect();
    let bytes = match qtype {
        QType::Q4_0 => quantized::<BlockQ4_0>(&values),
        QType::Q4_1 => quantized::<BlockQ4_1>(&values),
        QType::Q8_0 => quantized::<BlockQ8_0>(&values),
        QType::Q4K => quantized::<BlockQ4K>(&values),
        _ => quantized::<BlockQ6K>(&values),
    }
    .map_err(|e| format!("--cols {cols}: {e}"))?;
    let matrix =
        QMatrix::owned(qtype, (rows, cols), &bytes).map_err(|e| format!("--cols {cols}: {e}"))?;
    let tiles = Tiles::pack(qtype, rows, cols, |i| matrix.row(i))
        .ok_or_else(|| format!("--cols {cols}: rows of whole {} blocks", qtype.name()))?;
    let mut timings = Vec::new();
    for &m in act_rows {
        let x: Vec<f32> = (0..m * cols)
            .map(|i| ((i * 31 % 97) as f32) / 13.0 - 3.5)
            .collect();
        let acts = matrix.quantize_rows(&x, m, qtype.tile_activations());
        let xs: Vec<&[u8]> = (0..m).map(|r| acts.row(r)).collect();
        for (kernel, run) in tiles.kernel_runs() {
            let mut times: Vec<f64> = (0..iters)
                .map(|_| {
                    let start = Instant::now();
                    run(&xs);
                    start.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            timings.push(KernelTiming {
                kernel,
                act_rows: m,
                micros: median * 1e6,
                gb_per_s: bytes.len() as f64 / median / 1e9,
            });
        }
    }
    Ok(timings)
}

fn quantized<T: GgmlType>(values: &[f32]) -> Result<Vec<u8>, String> {
    if !values.len().is_multiple_of(T::BLCK_SIZE) || values.is_empty() {
        return Err(format!("rows of whole blocks of {} values", T::BLCK_SIZE));
    }
    let mut blocks = vec![T::zeros(); values.len() / T::BLCK_SIZE];
    T::from_float(values, &mut blocks);
    Ok(super::bytes_of(&blocks).to_vec())
}
