//! `lerpscope bench blend`: the in-place blend against a plain copy of the same buffers,
//! alternated in one run so both see the same machine state.

use crate::cli::BenchBlendArgs;
use crate::engine::kernels::{blend_tensor, copy_tensor};
use crate::engine::Buffer;
use crate::engine::{dtype_name, Alpha, Engine};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use serde_json::json;
use std::time::{Duration, Instant};

pub fn blend(args: BenchBlendArgs) -> Result<()> {
    let mut opts = args.load.options()?;
    crate::cli::extra_endpoints(&mut opts, [(&args.c, args.beta), (&args.d, args.gamma)]);
    // Keep the engine alive (when loaded) so its buffers stay valid; off the line (slerp, α
    // per layer) its own pass is timed, through `set_alpha`.
    let mut engine: Option<Engine> = None;
    opts.device.open()?;
    let pair = match crate::cli::shape_endpoints(args.shape, args.lora_rank)? {
        Some((a, b, _)) => Some((a, b)),
        None => args.a.clone().zip(args.b.clone()),
    };
    // Counts are checked before any work.
    let iters = at_least("--iters", args.iters, 1)?;
    let off_line = opts.third.is_some()
        || opts.layers.is_some()
        || opts.method != crate::engine::Method::Linear;
    if pair.is_none() && off_line {
        anyhow::bail!(
            "bench blend: --c, --d, --layer-alphas and --method time a loaded pair; give --a and --b or --shape"
        );
    }
    let l = &args.load;
    let loading = [
        (l.base.is_some(), "--base"),
        (l.tokenizer.is_some(), "--tokenizer"),
        (l.allow_tokenizer_mismatch, "--allow-tokenizer-mismatch"),
        (l.no_chat_template, "--no-chat-template"),
    ];
    if let (None, Some((_, flag))) = (&pair, loading.iter().find(|(given, _)| *given)) {
        anyhow::bail!(
            "bench blend: {flag} is for loading a pair, and random weights (--params) load none; give --a and --b or --shape"
        );
    }
    let (working, a, b, source) = match &pair {
        Some((pa, pb)) => {
            let e = Engine::load(pa, pb, &opts)?;
            let Some(w) = e.weights().full() else {
                return merge(e, args);
            };
            let buffers = (
                w.buffer(Buffer::Working).clone(),
                w.buffer(Buffer::A).clone(),
                w.buffer(Buffer::B).clone(),
                e.info.description.clone(),
            );
            engine = Some(e);
            buffers
        }
        None => {
            let device = opts.device.open()?;
            let dtype = opts.dtype.unwrap_or(DType::F32);
            let n = args.params.unwrap_or(100_000_000);
            crate::engine::check_host_memory(&device, 3 * n as u64 * dtype.size_in_bytes() as u64)
                .map_err(|e| anyhow::anyhow!("--params {n}: {e}"))?;
            let rand = |seed: f64| -> Result<Tensor> {
                // Cheap deterministic contents; values do not affect the timing.
                Ok((Tensor::ones(n, DType::F32, &device)? * seed)?.to_dtype(dtype)?)
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
    let mut blend_t = Vec::with_capacity(iters);
    let mut copy_t = Vec::with_capacity(iters);
    let mut path = engine.as_mut().filter(|e| !e.on_line());
    let mut blend_at = |alpha: f32| -> Result<Duration> {
        match path.as_mut() {
            Some(e) => Ok(e.set_alpha(alpha as f64)?),
            None => time(&device, || blend_tensor(&working, &a, &b, alpha)),
        }
    };
    // Warm up both (page faults, GPU module load), then alternate.
    blend_at(0.25)?;
    copy_tensor(&working, &a)?;
    for i in 0..iters {
        let alpha = if i % 2 == 0 { 0.3 } else { 0.7 };
        blend_t.push(blend_at(alpha)?);
        copy_t.push(time(&device, || copy_tensor(&working, &a))?);
    }
    let (tb, tc) = (median(&mut blend_t), median(&mut copy_t));
    // The buffers a move streams: A, B, the working one, and C and D where given.
    let streams = 3 + [&opts.third, &opts.fourth]
        .iter()
        .filter(|x| x.is_some())
        .count();
    let blend_gbs = streams as f64 * bytes as f64 / tb.as_secs_f64() / 1e9;
    let copy_gbs = 2.0 * bytes as f64 / tc.as_secs_f64() / 1e9;
    let ratio = blend_gbs / copy_gbs;
    if args.json {
        say!(
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
        say!(
            "blend {source}: {} params, {}, {}",
            working.elem_count(),
            dtype_name(working.dtype()),
            crate::engine::device_name(&device)
        );
        say!(
            "  blend  {:8.2} ms  {:6.2} GB/s  ({streams} × {:.1} MB per move)",
            tb.as_secs_f64() * 1e3,
            blend_gbs,
            bytes as f64 / 1e6
        );
        say!(
            "  copy   {:8.2} ms  {:6.2} GB/s  (2 × {:.1} MB)",
            tc.as_secs_f64() * 1e3,
            copy_gbs,
            bytes as f64 / 1e6
        );
        say!("  blend / copy bandwidth: {ratio:.2}  (median of {iters})");
    }
    Ok(())
}

/// `bench blend` on an adapter pair: the merged pass (base plus both low-rank updates into the
/// working copy of the changed tensors) at alternating α, against a plain copy of as many
/// bytes (the pass reads each changed weight's source once and writes it once, as a copy does;
/// the factors are small).
fn merge(mut engine: Engine, args: BenchBlendArgs) -> Result<()> {
    let iters = at_least("--iters", args.iters, 1)?;
    engine.set_alpha(0.25)?;
    let w = engine.weights().working().clone();
    let device = w.device().clone();
    let scratch = w.zeros_like()?;
    copy_tensor(&scratch, &w)?;
    let (mut t, mut tc) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
    for i in 0..iters {
        t.push(engine.set_alpha(if i % 2 == 0 { 0.3 } else { 0.7 })?);
        tc.push(time(&device, || copy_tensor(&scratch, &w))?);
    }
    let (tm, tc) = (median(&mut t), median(&mut tc));
    let bytes = w.elem_count() * w.dtype().size_in_bytes();
    let merge_gbs = 2.0 * bytes as f64 / tm.as_secs_f64() / 1e9;
    let copy_gbs = 2.0 * bytes as f64 / tc.as_secs_f64() / 1e9;
    let i = &engine.info;
    if args.json {
        say!(
            "{}",
            json!({
                "bench": "blend", "source": i.description, "device": i.device, "dtype": i.dtype,
                "params": i.params, "merged_params": w.elem_count(), "iters": iters,
                "merge_ms": ms(tm), "merged_bytes": bytes, "copy_ms": ms(tc),
                "merge_gb_s": merge_gbs, "copy_gb_s": copy_gbs, "ratio": merge_gbs / copy_gbs,
            })
        );
    } else {
        say!(
            "merge {}: {} params, {}, {}",
            i.description,
            i.params,
            i.dtype,
            i.device
        );
        say!(
            "  merge  {:8.2} ms  {merge_gbs:6.2} GB/s  ({} changed params, {:.1} MB rewritten per α change)",
            ms(tm),
            w.elem_count(),
            bytes as f64 / 1e6
        );
        say!(
            "  copy   {:8.2} ms  {copy_gbs:6.2} GB/s  (2 × {:.1} MB)",
            ms(tc),
            bytes as f64 / 1e6
        );
        say!(
            "  merge / copy bandwidth: {:.2}  (median of {iters})",
            merge_gbs / copy_gbs
        );
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
    use crate::engine::{GenerationParams, SamplingParams};
    use crate::session::{EngineEvent, Session};
    use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
    if args.keys == 0 {
        anyhow::bail!("--keys 0: nothing to time; send at least one key");
    }
    let (a, b) = args.pair.endpoints();
    let opts = args.pair.options()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (keys, interval) = (args.keys, Duration::from_millis(args.interval_ms));
    let (latencies, frames_ok) = rt.block_on(async move {
        let (etx, erx) = tokio::sync::mpsc::unbounded_channel();
        // Keys start once a column has started generating, which the app asks for only
        // after it has taken the load in: keys sent at Loaded could reach it first (its loop
        // takes waiting input before waiting engine events), and `q` would end it unready.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let session = Session::spawn(a.clone(), b.clone(), opts, move |e| {
            let start = matches!(e, EngineEvent::Started { .. } | EngineEvent::LoadFailed(_));
            let _ = etx.send(e);
            if start {
                let _ = started_tx.send(());
            }
        });
        let params = GenerationParams {
            max_tokens: args.max_tokens,
            sampling: SamplingParams::default(),
            ignore_eos: false,
            token_info: true,
        };
        let mut app = App::new(
            a,
            b,
            "The food at this place",
            &[Alpha::A, Alpha::new(0.5)?, Alpha::B],
            params,
            Keymap::default(),
        );
        app.size = (120, 40);
        let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40))?;
        let (itx, irx) = tokio::sync::mpsc::unbounded_channel();
        // Every press lands while columns generate.
        std::thread::spawn(move || {
            let _ = started_rx.recv_timeout(Duration::from_secs(120));
            for i in 0..keys {
                std::thread::sleep(interval);
                let code = if i % 2 == 0 {
                    KeyCode::Right
                } else {
                    KeyCode::Left
                };
                let key = Event::Key(KeyEvent::new(code, KeyModifiers::NONE));
                if itx.send((std::time::Instant::now(), Ok(key))).is_err() {
                    return;
                }
            }
            // `q` in the same batch as the last keys would end the loop before the frame
            // they are timed to.
            std::thread::sleep(interval.max(Duration::from_millis(500)));
            let quit = Event::Key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE));
            let _ = itx.send((std::time::Instant::now(), Ok(quit)));
        });
        let mut columns = crate::tui::SessionColumns::new(&session);
        let lat = crate::tui::event_loop(&mut terminal, &mut app, irx, erx, &mut columns).await?;
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
    if v.is_empty() {
        anyhow::bail!("no key press reached a frame");
    }
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let (p50, p95, p99, max) = (pct(0.5), pct(0.95), pct(0.99), v[v.len() - 1]);
    if args.json {
        say!(
            "{}",
            json!({"bench": "ui", "keys": v.len(), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": max})
        );
    } else {
        say!(
            "key press → frame, {} presses while columns generate:",
            v.len()
        );
        say!("  p50 {p50:.2} ms  p95 {p95:.2} ms  p99 {p99:.2} ms  max {max:.2} ms");
    }
    Ok(())
}

/// What `bench generate` and `bench columns` share: the loaded pair, the prompt and the
/// generation settings (end-of-text ignored, so every run makes exactly `tokens`).
struct GenBench {
    engine: Engine,
    label: String,
    prompt: Vec<u32>,
    params: crate::engine::GenerationParams,
}

impl GenBench {
    /// `steps`: the bench runs `--tokens` forward steps after the prompt (`bench step`), so
    /// needs a position for each; generation feeds back all but its last token. Elsewhere the
    /// rates are over the tokens after the first, so there must be two.
    fn load(args: &crate::cli::BenchModelArgs, steps: bool) -> Result<Self> {
        at_least("--tokens", args.tokens, if steps { 1 } else { 2 })?;
        let prompt = at_least("--prompt-tokens", args.prompt_tokens, 1)?;
        // A --shape pair or GGUF (gigabytes) is written only for a device that opens, a rank
        // its matrices can take and a run that fits its context.
        args.load.options()?.device.open()?;
        let needed = prompt.saturating_add(args.tokens) - usize::from(!steps);
        if let Some(shape) = args.shape {
            if let Some(rank) = args.lora_rank.filter(|&r| r > 0) {
                shape.check_rank(rank)?;
            }
            check_context(needed, args, shape.config().max_positions())?;
        }
        let opts = args.options()?;
        let (a, b, mut label) = args.endpoints()?;
        // Writing a --shape pair the first time holds its random weights: the peak reported
        // is the model's from here, the same on every run.
        reset_peak_rss();
        let engine = Engine::load(&a, &b, &opts)?;
        // Generation stops at the context (the smallest of the endpoints'): a report of N
        // tokens must have made N.
        check_context(needed, args, engine.generator().max_positions)?;
        if let (Some(c), Some(beta)) = (&args.c, args.beta) {
            label.push_str(&format!(" + β·({c} − A) at β = {beta}"));
        }
        if let (Some(d), Some(gamma)) = (&args.d, args.gamma) {
            label.push_str(&format!(" + γ·({d} − A) at γ = {gamma}"));
        }
        Ok(Self {
            engine,
            label,
            prompt: (1..=prompt as u32).collect(),
            params: crate::engine::GenerationParams {
                max_tokens: args.tokens,
                sampling: crate::engine::SamplingParams {
                    temperature: args.temperature,
                    ..Default::default()
                },
                ignore_eos: false,
                token_info: false,
            },
        })
    }

    /// One column at the current α.
    fn one(&self) -> Result<crate::engine::Generation> {
        let g = crate::engine::Generator {
            eos: &[],
            ..self.engine.generator()
        };
        let mut rows = g.run_rows(
            &self.prompt,
            &[],
            None,
            &self.params,
            &|_| false,
            &mut |_, _| {},
        )?;
        Ok(rows.remove(0))
    }

    /// Every α in one batch.
    fn batch(&self, alphas: &[Alpha]) -> Result<Vec<crate::engine::Generation>> {
        let g = crate::engine::Generator {
            eos: &[],
            ..self.engine.pair_generator()
        };
        let mix = self.engine.mix(alphas)?;
        Ok(g.run_rows(
            &self.prompt,
            &[],
            Some(&mix),
            &self.params,
            &|_| false,
            &mut |_, _| {},
        )?)
    }

    fn describe(&self) -> serde_json::Value {
        let i = &self.engine.info;
        json!({
            "pair": self.label,
            "description": i.description,
            "architecture": i.architecture,
            "params": i.params,
            "dtype": i.dtype,
            "device": i.device,
            "threads": rayon::current_num_threads(),
            "prompt_tokens": self.prompt.len(),
            "tokens": self.params.max_tokens,
            // As written (0.8), not the f32's widening (0.800000011920929).
            "temperature": self.params.sampling.temperature.to_string().parse::<f64>().ok(),
        })
    }
}

/// `--prompt-tokens` and `--tokens` within the model's context: a report of N tokens must
/// have made N.
fn check_context(needed: usize, args: &crate::cli::BenchModelArgs, context: usize) -> Result<()> {
    if needed > context {
        anyhow::bail!(
            "--prompt-tokens {} and --tokens {} need {needed} positions: more than the model's context of {context}",
            args.prompt_tokens,
            args.tokens
        );
    }
    Ok(())
}

/// Start [`peak_rss`] again from the memory resident now (Linux: 5 to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory of this process so far (VmHWM), in bytes, where /proc says.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `lerpscope bench generate`: time to first token after an α change (blend + prefill + one
/// sampled token), and the decode rate after it, at one column.
pub fn generate(args: crate::cli::BenchGenerateArgs) -> Result<()> {
    let iters = at_least("--iters", args.model.iters, 1)?;
    let mut bench = GenBench::load(&args.model, false)?;
    bench.engine.set_alpha(Alpha::new(0.5)?)?;
    bench.one()?; // warm-up: page faults, allocator pools
    let (mut blend, mut ttft, mut rate) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..iters {
        let alpha = if i % 2 == 0 { 0.3 } else { 0.7 };
        let t = bench.engine.set_alpha(Alpha::new(alpha)?)?;
        let g = bench.one()?;
        blend.push(t);
        ttft.push(t + g.first_token);
        rate.push(g.tokens_per_s());
    }
    rate.sort_by(f64::total_cmp);
    let (blend, ttft, rate) = (median(&mut blend), median(&mut ttft), rate[rate.len() / 2]);
    // Adapters: the factored path at one column, where an α change is new row weights only.
    // (Off the line, as slerp, every α is merged: there is no batched row to time; on a base
    // kept quantized the row above is already the factored path.)
    let factored = if bench.engine.is_adapter_pair()
        && bench.engine.on_line()
        && !bench.engine.kept_quantized()
    {
        let (mut ttft, mut rate) = (Vec::new(), Vec::new());
        for i in 0..iters {
            let alpha = Alpha::new(if i % 2 == 0 { 0.3 } else { 0.7 })?;
            let g = bench.batch(&[alpha])?.remove(0);
            ttft.push(g.first_token);
            rate.push(g.tokens_per_s());
        }
        rate.sort_by(f64::total_cmp);
        Some((median(&mut ttft), rate[rate.len() / 2]))
    } else {
        None
    };
    let weights = bench.engine.info.buffer_bytes as u64;
    // Each decode step reads every weight once (the tied embedding once, as the head); two
    // quantized endpoints are both read at these alphas.
    let read = bench.engine.weights().step_bytes() as u64;
    let peak = peak_rss();
    if args.model.json {
        let mut v = bench.describe();
        let o = v.as_object_mut().expect("object");
        o.insert("bench".into(), json!("generate"));
        o.insert("iters".into(), json!(iters));
        o.insert("blend_ms".into(), json!(ms(blend)));
        o.insert("ttft_ms".into(), json!(ms(ttft)));
        o.insert("decode_tok_s".into(), json!(rate));
        o.insert("bytes_per_token".into(), json!(read));
        o.insert("decode_gb_s".into(), json!(rate * read as f64 / 1e9));
        o.insert("model_bytes".into(), json!(weights));
        o.insert("peak_rss_bytes".into(), json!(peak));
        if let Some((ttft, rate)) = factored {
            o.insert("factored_blend_ms".into(), json!(0.0));
            o.insert("factored_ttft_ms".into(), json!(ms(ttft)));
            o.insert("factored_decode_tok_s".into(), json!(rate));
        }
        say!("{v}");
    } else {
        let i = &bench.engine.info;
        say!(
            "generate {}: {} {} params, {}, {}, {} prompt tokens, {} new",
            bench.label,
            i.architecture,
            i.params,
            i.dtype,
            i.device,
            bench.prompt.len(),
            bench.params.max_tokens
        );
        let path = if bench.engine.kept_quantized() {
            "kept quantized: nothing merged"
        } else if bench.engine.is_adapter_pair() {
            "adapters: the merged path"
        } else {
            "a full pair, blended in place"
        };
        say!(
            "  α change → first token  {:8.2} ms  (blend {:.2} ms; {path})",
            ms(ttft),
            ms(blend)
        );
        say!(
            "  decode                  {rate:8.1} tok/s  ({:.1} MB/token → {:.1} GB/s)",
            read as f64 / 1e6,
            rate * read as f64 / 1e9
        );
        if let Some((f_ttft, f_rate)) = factored {
            say!(
                "  factored: α change → first token {:8.2} ms (no merge), decode {f_rate:.1} tok/s",
                ms(f_ttft)
            );
        }
        if let Some(p) = peak {
            say!(
                "  peak memory             {:8.1} MB  ({:.2} × one model's {:.1} MB)",
                p as f64 / 1e6,
                p as f64 / weights as f64,
                weights as f64 / 1e6
            );
        }
        say!("  (medians of {iters})");
    }
    Ok(())
}

/// `lerpscope bench columns --k K`: K columns at K alphas, re-blending for each in turn and
/// as one batch, against one column; runs alternate so all three see the same machine.
pub fn columns(args: crate::cli::BenchColumnsArgs) -> Result<()> {
    let k = at_least("--k", args.k, 1)?;
    let iters = at_least("--iters", args.model.iters, 1)?;
    let mut bench = GenBench::load(&args.model, false)?;
    let alphas: Vec<Alpha> = (0..k)
        .map(|i| {
            Alpha::saturating(if k == 1 {
                0.5
            } else {
                i as f64 / (k - 1) as f64
            })
        })
        .collect();
    bench.engine.set_alpha(Alpha::new(0.5)?)?;
    bench.one()?;
    bench.batch(&alphas)?;
    let (mut one, mut seq, mut batch) = (Vec::new(), Vec::new(), Vec::new());
    // Phases: (first token, decode steps/s) of one column (blend excluded) and of the batch.
    let (mut one_phases, mut batch_phases) = (Vec::new(), Vec::new());
    let phases = |g: &crate::engine::Generation| (g.first_token, g.tokens_per_s());
    for _ in 0..iters {
        let t = Instant::now();
        bench.engine.set_alpha(alphas[0])?;
        one_phases.push(phases(&bench.one()?));
        one.push(t.elapsed());
        let t = Instant::now();
        for &a in &alphas {
            bench.engine.set_alpha(a)?;
            bench.one()?;
        }
        seq.push(t.elapsed());
        let t = Instant::now();
        let rows = bench.batch(&alphas)?;
        batch.push(t.elapsed());
        batch_phases.push(phases(&rows[0]));
    }
    let median_phases = |mut v: Vec<(Duration, f64)>| {
        let mut first: Vec<Duration> = v.iter().map(|p| p.0).collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1));
        (median(&mut first), v[v.len() / 2].1)
    };
    let (one_first, one_rate) = median_phases(one_phases);
    let (batch_first, batch_rate) = median_phases(batch_phases);
    let (one, seq, batch) = (median(&mut one), median(&mut seq), median(&mut batch));
    let ratio = |d: Duration| d.as_secs_f64() / one.as_secs_f64();
    let best = if batch < seq { "batched" } else { "re-blend" };
    if args.model.json {
        let mut v = bench.describe();
        let o = v.as_object_mut().expect("object");
        o.insert("bench".into(), json!("columns"));
        o.insert("k".into(), json!(k));
        o.insert("alphas".into(), json!(alphas));
        o.insert("iters".into(), json!(iters));
        o.insert("one_column_ms".into(), json!(ms(one)));
        o.insert("reblend_ms".into(), json!(ms(seq)));
        o.insert("batched_ms".into(), json!(ms(batch)));
        o.insert("reblend_ratio".into(), json!(ratio(seq)));
        o.insert("batched_ratio".into(), json!(ratio(batch)));
        o.insert("faster".into(), json!(best));
        o.insert("one_first_token_ms".into(), json!(ms(one_first)));
        o.insert("one_steps_per_s".into(), json!(one_rate));
        o.insert("batched_first_token_ms".into(), json!(ms(batch_first)));
        o.insert("batched_steps_per_s".into(), json!(batch_rate));
        say!("{v}");
    } else {
        let i = &bench.engine.info;
        say!(
            "columns {}: {} {} params, {}, {}, K = {k}, {} tokens per column",
            bench.label,
            i.architecture,
            i.params,
            i.dtype,
            i.device,
            bench.params.max_tokens
        );
        say!("  one column           {:9.1} ms", ms(one));
        say!(
            "  K one after another  {:9.1} ms  ({:.2} × one)",
            ms(seq),
            ratio(seq)
        );
        say!(
            "  K in one batch       {:9.1} ms  ({:.2} × one)",
            ms(batch),
            ratio(batch)
        );
        say!(
            "  phases: one column first token {:.1} ms, {one_rate:.1} steps/s; batch first \
             token {:.1} ms, {batch_rate:.1} steps/s",
            ms(one_first),
            ms(batch_first)
        );
        say!("  faster: {best}  (medians of {iters})");
    }
    Ok(())
}

/// `lerpscope bench inspect`: what the token views cost. Decode with and without per-token
/// data (interleaved runs, medians), and an α-scrub of N points (its passes as the UI runs
/// them) against one batched forward pass of N rows over the same prefix.
pub fn inspect(args: crate::cli::BenchInspectArgs) -> Result<()> {
    let iters = at_least("--iters", args.model.iters, 1)?;
    let n = at_least("--points", args.points, 2)?;
    let mut bench = GenBench::load(&args.model, false)?;
    bench.engine.set_alpha(Alpha::new(0.5)?)?;
    let plain = bench.params;
    let recording = crate::engine::GenerationParams {
        token_info: true,
        ..plain
    };
    bench.one()?;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for i in 0..iters {
        // Alternating which goes first, so neither always runs on the warmer machine.
        for record in [i % 2 == 0, i % 2 == 1] {
            bench.params = if record { recording } else { plain };
            let rate = bench.one()?.tokens_per_s();
            if record { &mut with } else { &mut without }.push(rate);
        }
    }
    bench.params = plain;
    let (without, with) = (median_f64(&mut without), median_f64(&mut with));
    let cost = 1.0 - with / without;

    let alphas: Vec<Alpha> = (0..n)
        .map(|i| Alpha::saturating(-1.0 + 3.0 * i as f64 / (n - 1) as f64))
        .collect();
    let prefix = bench.prompt.clone();
    let token = 1;
    // Warm-up, which also times a row as the UI's first scrub does, to size the coarse pass.
    let t = Instant::now();
    bench.engine.logits_columns(&prefix, &alphas)?;
    let per_row_token = t.elapsed().as_secs_f64() / (n * prefix.len().max(1)) as f64;
    let coarse = crate::session::scrub::coarse_points(Some(per_row_token), prefix.len());
    let passes = crate::session::scrub::passes(n, coarse);
    let (mut forward, mut one, mut two, mut first) = (vec![], vec![], vec![], vec![]);
    for _ in 0..iters {
        let t = Instant::now();
        bench.engine.logits_columns(&prefix, &alphas)?;
        forward.push(t.elapsed());
        let t = Instant::now();
        bench.engine.scrub(&prefix, token, &alphas)?;
        one.push(t.elapsed());
        let t = Instant::now();
        for (k, pass) in passes.iter().enumerate() {
            let at: Vec<Alpha> = pass.iter().map(|&i| alphas[i]).collect();
            bench.engine.scrub(&prefix, token, &at)?;
            if k == 0 {
                first.push(t.elapsed());
            }
        }
        two.push(t.elapsed());
    }
    let forward = median(&mut forward);
    let (one, two, first) = (median(&mut one), median(&mut two), median(&mut first));
    let ratio = |d: Duration| d.as_secs_f64() / forward.as_secs_f64();
    if args.model.json {
        let mut v = bench.describe();
        let o = v.as_object_mut().expect("object");
        o.insert("bench".into(), json!("inspect"));
        o.insert("iters".into(), json!(iters));
        o.insert("decode_tok_s".into(), json!(without));
        o.insert("decode_token_info_tok_s".into(), json!(with));
        o.insert("token_info_cost".into(), json!(cost));
        o.insert("points".into(), json!(n));
        o.insert("batched_forward_ms".into(), json!(ms(forward)));
        o.insert("scrub_one_pass_ms".into(), json!(ms(one)));
        o.insert("scrub_one_pass_ratio".into(), json!(ratio(one)));
        o.insert("scrub_coarse_first_ms".into(), json!(ms(two)));
        o.insert("scrub_coarse_first_ratio".into(), json!(ratio(two)));
        o.insert("scrub_first_points_ms".into(), json!(ms(first)));
        say!("{v}");
    } else {
        let i = &bench.engine.info;
        say!(
            "inspect {}: {} {} params, {}, {}, prefix {} tokens",
            bench.label,
            i.architecture,
            i.params,
            i.dtype,
            i.device,
            prefix.len()
        );
        say!(
            "  decode                   {without:8.1} tok/s; with token data {with:.1} ({:+.1}%)",
            -100.0 * cost
        );
        say!(
            "  one batched pass of {n} rows over the prefix  {:8.1} ms",
            ms(forward)
        );
        say!(
            "  α-scrub, one pass          {:8.1} ms  ({:.2} ×)",
            ms(one),
            ratio(one)
        );
        say!(
            "  α-scrub, coarse points first {:6.1} ms  ({:.2} ×; first {} points after {:.1} ms)",
            ms(two),
            ratio(two),
            passes[0].len(),
            ms(first)
        );
        say!("  (the UI scrubs in one pass where it expects that to take under 0.4 s)");
        say!("  (medians of {iters}, runs interleaved)");
    }
    Ok(())
}

fn median_f64(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `lerpscope bench step`: one decode step taken apart. The prompt is prefilled once, then
/// `--tokens` steps decode from it, each timed in four phases: enqueuing the forward pass
/// (on a GPU the launches return before the work is done), waiting for the device, copying
/// the logits to the host, and sampling every row. On a GPU both forward paths run, candle's
/// ops and the fused pass, in one process; the fused pass samples on the device, so its copy
/// is the sampler's launch with the ids coming back, and its sampling the rows handed back.
/// `lerpscope bench kernels`: every tile kernel over one matrix, in this process's thread.
pub fn kernels(args: crate::cli::BenchKernelsArgs) -> Result<()> {
    use crate::engine::kernel_timing::time_kernels;
    let rows = &args.act_rows;
    if let Some(r) = (1..rows.len()).find(|&i| rows[..i].contains(&rows[i])) {
        anyhow::bail!("--act-rows: {} is given twice", rows[r]);
    }
    let timings = time_kernels(
        &args.quant,
        (args.rows, args.cols),
        &args.act_rows,
        args.iters,
    )
    .map_err(|e| anyhow::anyhow!("bench kernels: {e}"))?;
    if args.json {
        let rows: Vec<_> = timings
            .iter()
            .map(|t| {
                json!({"kernel": t.kernel, "act_rows": t.act_rows, "us": t.micros,
                       "gb_per_s": t.gb_per_s})
            })
            .collect();
        say!(
            "{}",
            json!({"quant": args.quant, "rows": args.rows, "cols": args.cols, "timings": rows})
        );
        return Ok(());
    }
    say!(
        "kernels {} [{} × {}], one thread, medians of {}",
        args.quant,
        args.rows,
        args.cols,
        args.iters
    );
    for t in &timings {
        let fastest = timings
            .iter()
            .filter(|o| o.act_rows == t.act_rows)
            .map(|o| o.micros)
            .fold(f64::INFINITY, f64::min);
        say!(
            "  {} rows  {:<9} {:>10.1} µs  {:>6.1} GB/s  ({:.2} × the fastest)",
            t.act_rows,
            t.kernel,
            t.micros,
            t.gb_per_s,
            t.micros / fastest
        );
    }
    Ok(())
}

pub fn step(args: crate::cli::BenchStepArgs) -> Result<()> {
    use crate::engine::copy_to_host;
    use crate::engine::device_sampling::{OnDevice, Pick};
    use crate::engine::Sampler;
    let k = at_least("--k", args.k, 1)?;
    let iters = at_least("--iters", args.model.iters, 1)?;
    let mut bench = GenBench::load(&args.model, true)?;
    let steps = args.model.tokens;
    let alphas: Vec<Alpha> = (0..k)
        .map(|i| {
            Alpha::saturating(if k == 1 {
                0.5
            } else {
                i as f64 / (k - 1) as f64
            })
        })
        .collect();
    bench.engine.set_alpha(Alpha::new(0.5)?)?;
    let paths: &[bool] = if bench.engine.device().is_cpu() {
        &[false]
    } else {
        &[false, true]
    };
    let mut results = Vec::new();
    for &fused in paths {
        bench.engine.set_fused(fused)?;
        let path = bench.engine.forward_path();
        let mix = (k > 1).then(|| bench.engine.mix(&alphas)).transpose()?;
        let generator = if mix.is_some() {
            bench.engine.pair_generator()
        } else {
            bench.engine.generator()
        };
        let model = generator.model;
        let device = model.device().clone();
        let mut phases: [Vec<Duration>; 4] = Default::default();
        let mut logits = Vec::new();
        // A warm-up run (allocator pools, module loads), then the timed ones.
        for timed in std::iter::once(false).chain(std::iter::repeat_n(true, iters)) {
            let mut cache = model.new_cache(bench.prompt.len() + steps);
            let prompt: Vec<u32> = bench.prompt.repeat(k);
            let first = model.forward_ids(&prompt, k, &mut cache, mix.as_ref())?;
            device.synchronize()?;
            let mut samplers: Vec<Sampler> = (0..k)
                .map(|_| Sampler::new(bench.params.sampling))
                .collect();
            let mut history = bench.prompt.clone();
            // The fused pass samples on the device, as generation does there: "copy" is then
            // the sampler's launch and the ids coming back, "sample" the rows it hands back.
            let histories = vec![history.as_slice(); k];
            let mut on_device = OnDevice::start(model, &first, &histories, false)?;
            let mut ids = vec![1u32; k];
            for _ in 0..steps {
                let t0 = Instant::now();
                let out = model.forward_ids(&ids, k, &mut cache, mix.as_ref())?;
                let t1 = Instant::now();
                device.synchronize()?;
                let t2 = Instant::now();
                let picks = match &mut on_device {
                    Some(d) => {
                        for (draw, s) in d.draws.iter_mut().zip(&mut samplers) {
                            *draw = s.draw();
                        }
                        Some(d.picks(&out, &bench.params.sampling)?)
                    }
                    None => {
                        copy_to_host(&out, &mut logits)?;
                        None
                    }
                };
                let t3 = Instant::now();
                let vocab = out.dim(1)?;
                for (i, s) in samplers.iter_mut().enumerate() {
                    ids[i] = match (&picks, &mut on_device) {
                        (Some(picks), Some(d)) => match picks[i] {
                            Pick::Token(t) => t,
                            Pick::NonFinite => anyhow::bail!("non-finite logits"),
                            Pick::OnHost => {
                                copy_to_host(&out.get(i)?, &mut logits)?;
                                let t = s.pick(d.draws[i], &mut logits, &history);
                                d.picked_on_host(i, t)?;
                                t
                            }
                        },
                        _ => s.sample(&mut logits[i * vocab..(i + 1) * vocab], &history),
                    };
                }
                history.push(ids[0]);
                let t4 = Instant::now();
                if timed {
                    for (p, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
                        p.push(d);
                    }
                }
            }
        }
        let [enqueue, wait, copy, sample] = phases.map(|mut p| ms(median(&mut p)));
        results.push(json!({
            "path": path, "enqueue_ms": enqueue, "wait_ms": wait, "copy_ms": copy,
            "sample_ms": sample, "step_ms": enqueue + wait + copy + sample,
        }));
    }
    bench.engine.set_fused(crate::engine::fused_requested())?;
    if args.model.json {
        let mut v = bench.describe();
        let o = v.as_object_mut().expect("object");
        o.insert("bench".into(), json!("step"));
        o.insert("k".into(), json!(k));
        o.insert("steps".into(), json!(steps));
        o.insert("iters".into(), json!(iters));
        o.insert("paths".into(), json!(results));
        say!("{v}");
    } else {
        let i = &bench.engine.info;
        say!(
            "decode step {}: {} {} params, {}, {}, {k} row(s), median of {steps} steps × {iters} runs after a {}-token prompt",
            bench.label,
            i.architecture,
            i.params,
            i.dtype,
            i.device,
            bench.prompt.len()
        );
        say!("  path     enqueue    wait    copy  sample    step (ms)");
        for r in &results {
            let f = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
            say!(
                "  {:<7} {:8.3} {:7.3} {:7.3} {:7.3} {:7.3}",
                r["path"].as_str().unwrap_or("?"),
                f("enqueue_ms"),
                f("wait_ms"),
                f("copy_ms"),
                f("sample_ms"),
                f("step_ms")
            );
        }
    }
    Ok(())
}

/// A count flag below what it needs is refused by name, not quietly raised (a report would
/// then describe a run other than the one asked for).
fn at_least(flag: &str, n: usize, least: usize) -> Result<usize> {
    if n < least {
        anyhow::bail!("{flag} {n}: needs at least {least}");
    }
    Ok(n)
}
