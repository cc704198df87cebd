//! `lerpscope bench blend`: the in-place blend against a plain copy of the same buffers,
//! alternated in one run so both see the same machine state.

use crate::cli::BenchBlendArgs;
use crate::engine::blend::{blend_tensor, copy_tensor};
use crate::engine::weights::Buffer;
use crate::engine::{dtype_name, Engine};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use serde_json::json;
use std::time::{Duration, Instant};

pub fn blend(args: BenchBlendArgs) -> Result<()> {
    let opts = args.load.options()?;
    // Keep the engine alive (when loaded) so its buffers stay valid.
    let engine;
    let (working, a, b, source) = match (&args.a, &args.b) {
        (Some(pa), Some(pb)) => {
            engine = Engine::load(pa, pb, &opts)?;
            let w = engine.weights();
            (
                w.buffer(Buffer::Working).clone(),
                w.buffer(Buffer::A).clone(),
                w.buffer(Buffer::B).clone(),
                format!("{} ↔ {}", pa, pb),
            )
        }
        _ => {
            let device = opts.device.open()?;
            let dtype = opts.dtype.unwrap_or(DType::F32);
            let n = args.params;
            let rand = |seed: f64| -> Result<Tensor> {
                // Cheap deterministic contents; values do not affect the timing.
                Ok(
                    ((Tensor::arange(0u32, n as u32, &device)?.to_dtype(DType::F32)? * 1e-7)?
                        + seed)?
                        .to_dtype(dtype)?,
                )
            };
            (
                rand(0.0)?,
                rand(1.0)?,
                rand(2.0)?,
                format!("random {n} parameters"),
            )
        }
    };
    let device = working.device().clone();
    let bytes = working.elem_count() * working.dtype().size_in_bytes();
    let iters = args.iters.max(1);
    let mut blend_t = Vec::with_capacity(iters);
    let mut copy_t = Vec::with_capacity(iters);
    // Warm up both (page faults, GPU module load), then alternate.
    blend_tensor(&working, &a, &b, 0.25)?;
    copy_tensor(&working, &a)?;
    for i in 0..iters {
        let alpha = if i % 2 == 0 { 0.3 } else { 0.7 };
        blend_t.push(time(&device, || blend_tensor(&working, &a, &b, alpha))?);
        copy_t.push(time(&device, || copy_tensor(&working, &a))?);
    }
    let (tb, tc) = (median(&mut blend_t), median(&mut copy_t));
    let blend_gbs = 3.0 * bytes as f64 / tb.as_secs_f64() / 1e9;
    let copy_gbs = 2.0 * bytes as f64 / tc.as_secs_f64() / 1e9;
    let ratio = blend_gbs / copy_gbs;
    if args.json {
        println!(
            "{}",
            json!({
                "bench": "blend",
                "source": source,
                "device": crate::engine::device_name(&device),
                "dtype": dtype_name(working.dtype()),
                "params": working.elem_count(),
                "bytes_per_buffer": bytes,
                "iters": iters,
                "blend_ms": tb.as_secs_f64() * 1e3,
                "copy_ms": tc.as_secs_f64() * 1e3,
                "blend_gb_s": blend_gbs,
                "copy_gb_s": copy_gbs,
                "ratio": ratio,
            })
        );
    } else {
        println!(
            "blend {source}: {} params, {}, {}",
            working.elem_count(),
            dtype_name(working.dtype()),
            crate::engine::device_name(&device)
        );
        println!(
            "  blend  {:8.2} ms  {:6.2} GB/s  (3 × {:.1} MB per move)",
            tb.as_secs_f64() * 1e3,
            blend_gbs,
            bytes as f64 / 1e6
        );
        println!(
            "  copy   {:8.2} ms  {:6.2} GB/s  (2 × {:.1} MB)",
            tc.as_secs_f64() * 1e3,
            copy_gbs,
            bytes as f64 / 1e6
        );
        println!("  blend / copy bandwidth: {ratio:.2}  (median of {iters})");
    }
    Ok(())
}

fn time(device: &Device, f: impl FnOnce() -> candle_core::Result<()>) -> Result<Duration> {
    device.synchronize()?;
    let t = Instant::now();
    f()?;
    device.synchronize()?;
    Ok(t.elapsed())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
