//! Streaming rate of one-row products (`y = x · wᵀ`) per weight dtype, beside a plain copy of
//! the same bytes: the ceiling a decode step can reach. `cargo run --release --example
//! few_rows_bandwidth -p lerpscope-engine [n k]` (default: SmolLM2-135M's output head).

use half::{bf16, f16};
use lerpscope_engine::kernels::few_rows::matmul_wt;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, k) = match args[..] {
        [n, k] => (n, k),
        _ => (49152, 576),
    };
    let x: Vec<f32> = (0..k).map(|i| (i % 7) as f32 * 0.01).collect();
    let w: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 * 1e-3).collect();
    let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
    let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
    let mut dst = vec![0f32; n * k];
    let copy = median(
        (0..9)
            .map(|_| {
                let t = Instant::now();
                dst.copy_from_slice(&w);
                2.0 * (n * k * 4) as f64 / t.elapsed().as_secs_f64() / 1e9
            })
            .collect(),
    );
    println!(
        "[{n}, {k}] one-row product, GB/s of weights read (copy: {copy:.1} GB/s read+written)"
    );
    // Interleaved, so that each dtype sees the same machine; medians of 15 rounds.
    let mut y = vec![0f32; n];
    let mut rates = [(); 3].map(|_| Vec::new());
    for _ in 0..15 {
        let mut time = |bytes: usize, f: &mut dyn FnMut(&mut [f32])| {
            let t = Instant::now();
            f(&mut y);
            bytes as f64 / t.elapsed().as_secs_f64() / 1e9
        };
        rates[0].push(time(n * k * 4, &mut |y| matmul_wt(&x, &w, 1, n, k, y)));
        rates[1].push(time(n * k * 2, &mut |y| matmul_wt(&x, &wb, 1, n, k, y)));
        rates[2].push(time(n * k * 2, &mut |y| matmul_wt(&x, &wh, 1, n, k, y)));
    }
    let [f, b, h] = rates.map(median);
    println!("  f32 {f:6.1}   bf16 {b:6.1}   f16 {h:6.1}");
}
