//! `lerpscope generate`: one continuation per α, streamed, or as JSON lines.

use crate::cli::{default_alphas, Demo, GenerateArgs};
use crate::engine::Engine;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::Write;
use std::sync::atomic::AtomicBool;

pub fn run(args: GenerateArgs) -> Result<()> {
    let defaults = args.pair.demo().unwrap_or(Demo::Tiny).defaults();
    let alphas = match &args.alphas {
        Some(a) => a.0.clone(),
        None => default_alphas(defaults.alphas_wide),
    };
    let params = crate::engine::GenerationParams {
        token_info: args.logprobs,
        ..args.sampling.params(defaults.params)?
    };
    let prompt = args.prompt.clone().unwrap_or(defaults.prompt.to_string());
    // --betas: one point (α_i, β_i) per continuation; the pair loads at the first β.
    let (opts, betas) = super::paired_betas(&args.pair, &alphas, args.betas.as_ref())?;
    let (a, b) = args.pair.endpoints();
    let mut engine = Engine::load(&a, &b, &opts)?;
    engine.set_stop_texts(args.sampling.stop.clone());
    // Every α within reach before the first one's output (α per layer, a recipe's weights).
    engine.check_reach_all(&alphas).context("--alphas")?;
    // Refused before any header or prompt is printed.
    let prompt_tokens = engine.encode(&prompt)?.len();
    if prompt_tokens == 0 {
        bail!("--prompt: empty after tokenisation; give some text to continue");
    }
    let context = engine.generator().max_positions;
    if prompt_tokens >= context {
        bail!("--prompt: {prompt_tokens} tokens; the model's context is {context}");
    }
    // Through a chat template the model writes a reply, not a continuation: on a line of
    // its own under the prompt.
    let reply = engine.info.chat_template
        && !crate::engine::tokens::is_formatted(&prompt, &engine.info.turn_markers);
    // --columns: the alphas as rows of one batch where asked (or where that measures faster);
    // the working weights then stay where they are.
    let batch = match args.columns {
        None => None,
        Some(mode) => {
            engine.set_columns_mode(mode)?;
            engine
                .prefer_batch(alphas.len(), params.max_tokens)?
                .then(|| {
                    engine.generate_columns(&prompt, &alphas, &params, &|_| false, &mut |_, _| {})
                })
                .transpose()?
        }
    };
    let mut batch = batch.map(Vec::into_iter);
    let rows = alphas.len();
    let never = AtomicBool::new(false);
    let stdout = std::io::stdout();
    for (i, alpha) in alphas.into_iter().enumerate() {
        // A row of the batch has no blend of its own.
        let blend = match &batch {
            Some(_) => None,
            None => Some(engine.set_point(alpha, betas[i])?),
        };
        let blend_ms = blend.map(|b| b.as_secs_f64() * 1e3);
        let mut out = stdout.lock();
        if args.json {
            let g = match batch.as_mut().and_then(Iterator::next) {
                Some(g) => g,
                None => engine.generate(&prompt, &params, &never, &mut |_| {})?,
            };
            let mut line = json!({
                "alpha": alpha,
                "prompt": prompt,
                "text": crate::engine::tokens::plain(&g.text),
                "token_ids": g.token_ids,
                "tokens": super::score::pieces(&engine, &g.token_ids),
                // A rate needs two tokens: it is measured from the first token on.
                "tokens_per_s": (g.token_ids.len() >= 2).then(|| g.tokens_per_s()),
                "blend_ms": blend_ms,
                "run": run_name(blend.is_none(), rows),
                "stop": g.stop,
            });
            super::add_point(&engine, &mut line);
            if args.logprobs {
                let top = |t: &crate::engine::TokenInfo| {
                    t.top
                        .iter()
                        .map(|a| {
                            json!({
                                "id": a.id,
                                "token": engine.tokenizer().id_to_token(a.id),
                                "logprob": a.logprob,
                            })
                        })
                        .collect::<Vec<_>>()
                };
                line["logprobs"] = g.tokens.iter().map(|t| t.logprob).collect();
                line["entropy"] = g.tokens.iter().map(|t| t.entropy).collect();
                line["top"] = g.tokens.iter().map(top).collect();
            }
            writeln!(out, "{line}")?;
        } else {
            match (engine.info.beta, engine.info.gamma) {
                (Some(beta), Some(gamma)) => {
                    writeln!(out, "── α = {alpha}, β = {beta}, γ = {gamma} ──")?
                }
                (Some(beta), None) => writeln!(out, "── α = {alpha}, β = {beta} ──")?,
                _ => writeln!(out, "── α = {alpha} ──")?,
            }
            write!(out, "{}", prompt)?;
            if reply {
                writeln!(out)?;
            }
            out.flush()?;
            let mut show = |piece: &str| {
                let _ = write!(out, "{}", crate::engine::tokens::plain(piece));
                let _ = out.flush();
            };
            let g = match batch.as_mut().and_then(Iterator::next) {
                Some(g) => {
                    show(&g.text);
                    g
                }
                None => engine.generate(&prompt, &params, &never, &mut show)?,
            };
            let why = match g.stop {
                crate::engine::StopReason::Context => ", stopped at the model's context",
                _ => "",
            };
            // A rate needs two tokens: it is measured from the first token on.
            let count = match g.token_ids.len() {
                1 => "1 token".to_string(),
                n if n < 2 => format!("{n} tokens"),
                n => format!("{n} tokens, {:.1} tok/s", g.tokens_per_s()),
            };
            let how = match blend_ms {
                Some(ms) => format!("blend {ms:.1} ms"),
                None => run_name(true, rows).to_string(),
            };
            writeln!(out, "\n[{count}, {how}{why}]\n")?;
        }
    }
    Ok(())
}

/// How a continuation was made, as the UI's saved sessions say it.
fn run_name(batched: bool, rows: usize) -> String {
    match batched {
        true => format!("a row of a batch of {rows}"),
        false => "alone at its blend".to_string(),
    }
}
