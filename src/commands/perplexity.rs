//! `lerpscope perplexity`: how fluent θ(α) finds a text, for each α.

use crate::cli::PerplexityArgs;
use crate::engine::{perplexity, Engine};
use anyhow::{bail, Context, Result};
use serde_json::json;

pub fn run(args: PerplexityArgs) -> Result<()> {
    let alphas = args.alphas.0.clone();
    let text = super::score::read_text("--file", &args.file)?;
    let (a, b) = args.pair.endpoints();
    let (opts, betas) = super::paired_betas(&args.pair, &alphas, args.betas.as_ref())?;
    let mut engine = Engine::load(&a, &b, &opts)?;
    // Every α within reach before the first one's output (α per layer, a recipe's weights).
    engine.check_reach_all(&alphas).context("--alphas")?;
    let ids = engine.encode_text(&text)?;
    if ids.len() < 2 {
        bail!("--file {}: too short to score", args.file.display());
    }
    for (alpha, beta) in alphas.into_iter().zip(betas) {
        engine.set_point(alpha, beta)?;
        let (nll, n) = engine
            .generator()
            .nll(&ids)
            .with_context(|| format!("at α = {alpha}{}", crate::eval::held_point(&engine)))?;
        let ppl = perplexity(nll, n);
        if args.json {
            // "nll" as `score --json` names it: finite where a far α's perplexity is not.
            let mut line = json!({"alpha": alpha, "nll": nll, "perplexity": ppl, "tokens": n});
            super::add_point(&engine, &mut line);
            say!("{line}");
        } else {
            say!(
                "α = {alpha:>6}{}: perplexity {} over {n} tokens",
                crate::eval::held_point(&engine),
                crate::engine::fixed(ppl, 3)
            );
        }
    }
    Ok(())
}
