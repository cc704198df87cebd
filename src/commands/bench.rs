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

/// Drive the real event loop on a headless terminal with the real engine: send key presses at
/// a steady rate while the columns generate, and report how long each took to reach a frame.
pub fn ui(args: crate::cli::BenchUiArgs) -> Result<()> {
    use crate::app::{keymap::Keymap, App};
    use crate::engine::worker::EngineHandle;
    use crate::engine::{GenerationParams, SamplingParams};
    use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
    let (a, b) = args.pair.endpoints();
    let opts = args.pair.load.options()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (keys, interval) = (args.keys, Duration::from_millis(args.interval_ms));
    let (latencies, frames_ok) = rt.block_on(async move {
        let (etx, erx) = tokio::sync::mpsc::unbounded_channel();
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        let engine = EngineHandle::spawn(a.clone(), b.clone(), opts, move |e| {
            if matches!(e, crate::engine::worker::EngineEvent::Loaded(_)) {
                let _ = loaded_tx.send(());
            }
            let _ = etx.send(e);
        });
        let params = GenerationParams {
            max_tokens: args.max_tokens,
            sampling: SamplingParams::default(),
        };
        let mut app = App::new(
            a,
            b,
            "The food at this place",
            &[0.0, 0.5, 1.0],
            params,
            Keymap::default(),
        );
        app.size = (120, 40);
        let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40))?;
        let (itx, irx) = tokio::sync::mpsc::unbounded_channel();
        // Keys start once the pair is loaded, so every press lands while columns generate.
        std::thread::spawn(move || {
            let _ = loaded_rx.recv_timeout(Duration::from_secs(120));
            for i in 0..keys {
                std::thread::sleep(interval);
                let code = if i % 2 == 0 {
                    KeyCode::Right
                } else {
                    KeyCode::Left
                };
                if itx
                    .send(Ok(Event::Key(KeyEvent::new(code, KeyModifiers::NONE))))
                    .is_err()
                {
                    return;
                }
            }
            std::thread::sleep(interval);
            let _ = itx.send(Ok(Event::Key(KeyEvent::new(
                KeyCode::Char('q'),
                KeyModifiers::NONE,
            ))));
        });
        let lat = crate::tui::event_loop(&mut terminal, &mut app, irx, erx, &engine).await?;
        let ok = app.ready();
        anyhow::Ok((lat, ok))
    })?;
    if !frames_ok {
        anyhow::bail!("the pair did not load");
    }
    let mut v: Vec<f64> = latencies
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let (p50, p95, p99, max) = (pct(0.5), pct(0.95), pct(0.99), v[v.len() - 1]);
    if args.json {
        println!(
            "{}",
            json!({"bench": "ui", "keys": v.len(), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": max})
        );
    } else {
        println!(
            "key press → frame, {} presses while columns generate:",
            v.len()
        );
        println!("  p50 {p50:.2} ms  p95 {p95:.2} ms  p99 {p99:.2} ms  max {max:.2} ms");
    }
    Ok(())
}
