use lerpscope_engine::few_rows::{matmul_w, matmul_w_mixed};
use std::time::Instant;
fn main() {
    // GPT-2 124M's Conv1D weights for one token, 12 layers: c_attn, attn_proj, c_fc, mlp_proj.
    let shapes: Vec<(usize, usize)> = (0..12)
        .flat_map(|_| [(768, 2304), (768, 768), (768, 3072), (3072, 768)])
        .collect();
    let wa: Vec<Vec<f32>> = shapes
        .iter()
        .map(|&(k, n)| (0..k * n).map(|i| (i % 13) as f32 * 1e-3).collect())
        .collect();
    let wb: Vec<Vec<f32>> = wa
        .iter()
        .map(|w| w.iter().map(|v| v + 1e-3).collect())
        .collect();
    let x = vec![0.01f32; 8 * 3072];
    let mut y = vec![0f32; 8 * 3072];
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    pool.install(|| {
        for _ in 0..3 {
            let (mut t1, mut t4) = (vec![], vec![]);
            for _ in 0..15 {
                let t = Instant::now();
                for ((w, _), &(k, n)) in wa.iter().zip(&wb).zip(&shapes) {
                    matmul_w(&x[..k], w, 1, n, k, &mut y[..n]);
                }
                t1.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                for ((a, b), &(k, n)) in wa.iter().zip(&wb).zip(&shapes) {
                    matmul_w_mixed(
                        &x[..4 * k],
                        a,
                        b,
                        &[0.5; 4],
                        &[0.5; 4],
                        4,
                        n,
                        k,
                        &mut y[..4 * n],
                    );
                }
                t4.push(t.elapsed().as_secs_f64() * 1e3);
            }
            t1.sort_by(f64::total_cmp);
            t4.sort_by(f64::total_cmp);
            println!(
                "one row {:.2} ms, 4 rows mixed {:.2} ms ({:.2}x)",
                t1[7],
                t4[7],
                t4[7] / t1[7]
            );
        }
    });
}
