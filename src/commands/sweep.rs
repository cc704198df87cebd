//! `lerpscope sweep`.

use crate::cli::{SweepArgs, SWEEP};
use crate::engine::Engine;
use crate::eval::sweep::{Sweep, SweepConfig};
use anyhow::{bail, Context, Result};

/// The neutral prompts shipped with lerpscope.
pub const BUILTIN_PROMPTS: &str = include_str!("../../assets/prompts.txt");

/// The prompts of `--prompts FILE|builtin`, the first `num` of them where given.
pub(super) fn read_prompts(source: &str, num: Option<usize>) -> Result<Vec<String>> {
    let text = if source == "builtin" {
        BUILTIN_PROMPTS.to_string()
    } else {
        std::fs::read_to_string(source)
            .with_context(|| format!("--prompts {source}: cannot read"))?
    };
    let mut prompts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if let Some(k) = num {
        prompts.truncate(k);
    }
    if prompts.is_empty() {
        bail!("--prompts {source}: no prompts");
    }
    Ok(prompts)
}

pub fn run(args: SweepArgs) -> Result<()> {
    let alphas = args.alphas.0.clone();
    let prompts = read_prompts(&args.prompts, args.num_prompts)?;
    let (a, b) = args.pair.endpoints();
    let config = SweepConfig {
        a: a.clone(),
        b: b.clone(),
        alphas,
        prompts,
        samples: args.samples,
        params: args.sampling.params(SWEEP)?,
        ppl_ref: args.ppl_ref.parse()?,
        classifier: args.classifier.clone().map(|c| (c, args.label.clone())),
        method: args.pair.options()?.method,
        layers: args.pair.options()?.layers.map(|l| l.spec()),
        plane: args.pair.options()?.third.map(|t| {
            let beta = t.beta.map_or("α".to_string(), |b| b.to_string());
            let factors = t.factors.map(|f| format!(", factors {}", f.spec()));
            format!("{}, β {beta}{}", t.source, factors.unwrap_or_default())
        }),
        alpha_mode: Default::default(),
    };
    let mut engine = Engine::load(&a, &b, &args.pair.options()?)?;
    engine.set_stop_texts(args.sampling.stop.clone());
    let t = std::time::Instant::now();
    let sweep = Sweep {
        config,
        mode: args.alpha_mode,
        out: args.out.clone(),
        progress: true,
        tokens_per_s: Default::default(),
    };
    let summary = sweep.run(&mut engine)?;
    println!(
        "{:>8}  {:>22}  {:>24}  {:>6}  {:>6}",
        "α", "VADER (95% CI)", "perplexity (95% CI)", "dist-1", "dist-2"
    );
    for s in &summary {
        println!(
            "{:>8}  {:>6.3} [{:>6.3}, {:>6.3}]  {:>7.2} [{:>7.2}, {:>7.2}]  {:>6.3}  {:>6.3}",
            s.alpha,
            s.vader.mean,
            s.vader.ci_low,
            s.vader.ci_high,
            s.perplexity.mean,
            s.perplexity.ci_low,
            s.perplexity.ci_high,
            s.distinct_1,
            s.distinct_2
        );
    }
    for s in summary.iter().filter(|s| s.empty > 0) {
        println!(
            "{:>8}  {} empty sample(s) (an end token first), left out of the estimates",
            s.alpha, s.empty
        );
    }
    for s in summary.iter().filter(|s| s.classifier.is_some()) {
        let e = s.classifier.expect("filtered");
        println!(
            "{:>8}  classifier P({}) {:.3} [{:.3}, {:.3}]",
            s.alpha, args.label, e.mean, e.ci_low, e.ci_high
        );
    }
    println!(
        "wrote {}/{{samples.jsonl, summary.csv, summary.json, plots/}} in {:.1}s{}",
        args.out.display(),
        t.elapsed().as_secs_f64(),
        match sweep.tokens_per_s.get() {
            Some(r) => format!(" (generation {r:.1} tok/s over all rows)"),
            None => String::new(),
        }
    );
    Ok(())
}
