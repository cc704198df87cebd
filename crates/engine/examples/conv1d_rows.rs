//! GPT-2 124M's Conv1D weights (`[in, out]`) for one decode step: one row against four rows
//! mixed from both endpoints (the batched columns), the latter ideally twice the former (twice
//! the bytes). `cargo run --release --example conv1d_rows -p lerpscope-engine`.

use lerpscope_engine::kernels::few_rows::{matmul_w, matmul_w_mixed};
use std::time::Instant;

fn main() {
    // Per layer: c_attn, attn.c_proj, c_fc, mlp.c_proj as (in, out); twelve layers.
    let shapes: Vec<(usize, usize)> = (0..12)
        .flat_map(|_| [(768, 2304), (768, 768), (768, 3072), (3072, 768)])
        .collect();
    let weights = |offset: f32| -> Vec<Vec<f32>> {
        shapes
            .iter()
            .map(|&(k, n)| {
                (0..k * n)
                    .map(|i| (i % 13) as f32 * 1e-3 + offset)
                    .collect()
            })
            .collect()
    };
    let (wa, wb) = (weights(0.0), weights(1e-3));
    let x = vec![0.01f32; 4 * 3072];
    let mut y = vec![0f32; 4 * 3072];
    let (keep, take) = ([0.5f32; 4], [0.5f32; 4]);
    // On a pool thread, as lerpscope runs its engine.
    rayon::ThreadPoolBuilder::new()
        .build()
        .unwrap()
        .install(|| {
            for _ in 0..3 {
                let (mut one, mut four) = (Vec::new(), Vec::new());
                for _ in 0..15 {
                    let t = Instant::now();
                    for (w, &(k, n)) in wa.iter().zip(&shapes) {
                        matmul_w(&x[..k], w, 1, n, k, &mut y[..n]);
                    }
                    one.push(t.elapsed().as_secs_f64() * 1e3);
                    let t = Instant::now();
                    for ((a, b), &(k, n)) in wa.iter().zip(&wb).zip(&shapes) {
                        matmul_w_mixed(&x[..4 * k], a, b, &keep, &take, 4, n, k, &mut y[..4 * n]);
                    }
                    four.push(t.elapsed().as_secs_f64() * 1e3);
                }
                one.sort_by(f64::total_cmp);
                four.sort_by(f64::total_cmp);
                let (a, b) = (one[7], four[7]);
                println!(
                    "one row {a:.2} ms, four rows mixed {b:.2} ms ({:.2}×)",
                    b / a
                );
            }
        });
}
