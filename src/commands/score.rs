//! `lerpscope score`: how likely each token of a fixed text is at each α.

use crate::cli::ScoreArgs;
use crate::engine::{Engine, TextScore};
use crate::eval::differences;
use anyhow::{Context, Result};
use serde_json::json;
use std::io::{Read, Write};

/// How many of the most contested tokens the plain output lists.
const LISTED: usize = 8;

pub fn run(args: ScoreArgs) -> Result<()> {
    let alphas = args.alphas.0.clone();
    let text = read_text("--text", &args.text)?;
    let (a, b) = args.pair.endpoints();
    let (opts, betas) = super::paired_betas(&args.pair, &alphas, args.betas.as_ref())?;
    let mut engine = Engine::load(&a, &b, &opts)?;
    // Every α within reach before the first one's output (α per layer, a recipe's weights).
    engine.check_reach_all(&alphas).context("--alphas")?;
    let mut out = std::io::stdout().lock();
    let mut scores = Vec::with_capacity(alphas.len());
    for (alpha, beta) in alphas.into_iter().zip(betas) {
        let s = engine
            .score_text_at(&text, alpha, beta)
            .with_context(|| format!("--text {}", args.text.display()))?;
        if args.json {
            writeln!(out, "{}", score_json(&engine, &s))?;
        }
        // Where it was scored, beside its α in the plain output.
        scores.push((s, crate::eval::held_point(&engine)));
    }
    if !args.json {
        print_plain(&mut out, &engine, &scores)?;
    }
    Ok(())
}

/// The text `flag` names: a file, or standard input for `-`.
pub(super) fn read_text(flag: &str, path: &std::path::Path) -> Result<String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(|| format!("{flag} -: cannot read standard input"))?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("{flag} {}: cannot read", path.display()))?;
    }
    Ok(text)
}

/// One α's line: `logprobs[i]` belongs to `tokens[i]`, null for the first token.
fn score_json(engine: &Engine, s: &TextScore) -> serde_json::Value {
    let logprobs: Vec<Option<f32>> = std::iter::once(None)
        .chain(s.tokens.iter().map(|t| Some(t.logprob)))
        .collect();
    let mut line = json!({
        "alpha": s.alpha,
        "token_ids": s.token_ids,
        "tokens": pieces(engine, &s.token_ids),
        "logprobs": logprobs,
        "nll": s.nll,
        "perplexity": s.perplexity,
    });
    super::add_point(engine, &mut line);
    line
}

/// The tokenizer's piece string of each id.
pub(super) fn pieces(engine: &Engine, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| engine.tokenizer().id_to_token(id).unwrap_or_default())
        .collect()
}

/// Each score with the β (and γ) it was taken at, as [`crate::eval::held_point`] gives them.
fn print_plain(
    out: &mut impl Write,
    engine: &Engine,
    scores: &[(TextScore, String)],
) -> Result<()> {
    let Some((first, _)) = scores.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "{} tokens, {} scored",
        first.token_ids.len(),
        first.tokens.len()
    )?;
    for (s, held) in scores {
        writeln!(
            out,
            "α = {:>6}{held}: NLL {:>9.3}  perplexity {:>9}",
            s.alpha,
            s.nll,
            crate::engine::fixed(s.perplexity, 3)
        )?;
    }
    let logprobs: Vec<Vec<f32>> = scores.iter().map(|(s, _)| s.logprobs()).collect();
    let columns: Vec<&[f32]> = logprobs.iter().map(Vec::as_slice).collect();
    let diffs = differences::biggest(&columns, LISTED);
    if diffs.is_empty() {
        return Ok(());
    }
    let what = match scores.iter().any(|(_, held)| !held.is_empty()) {
        true => "points",
        false => "alphas",
    };
    writeln!(
        out,
        "\nwhere the {what} disagree most (log-probability, nats):"
    )?;
    let names = pieces(engine, &first.token_ids);
    for d in diffs {
        let (lo, hi) = (&scores[d.lowest], &scores[d.highest]);
        let at = |(s, held): &(TextScore, String)| format!("{}{held}", s.alpha);
        writeln!(
            out,
            "  #{:<4} {} {:>7.3} at α = {:<6} {:>7.3} at α = {:<6} (spread {:.3})",
            // Counted from 1, as the UI's token cursor counts (the JSON's arrays are 0-based).
            d.token + 1,
            // Padded by width: a wide character takes two cells.
            crate::ui::wrap::pad(&format!("{:?}", names[d.token]), 16),
            lo.0.tokens[d.token - 1].logprob,
            at(lo),
            hi.0.tokens[d.token - 1].logprob,
            at(hi),
            d.spread
        )?;
    }
    Ok(())
}
