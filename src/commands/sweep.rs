//! `lerpscope sweep`.

use crate::cli::{SweepArgs, SWEEP};
use crate::engine::{Alpha, Engine};
use crate::eval::plot;
use crate::eval::sweep::{AlphaSummary, Sweep, SweepConfig};
use anyhow::{bail, Context, Result};

/// The neutral prompts shipped with lerpscope.
pub const BUILTIN_PROMPTS: &str = include_str!("../../assets/prompts.txt");

/// The prompts of `--prompts FILE|builtin`, the first `num` of them where given.
pub(super) fn read_prompts(source: &str, num: Option<usize>) -> Result<Vec<String>> {
    if num == Some(0) {
        bail!("--num-prompts 0: no prompts to sweep; give at least 1");
    }
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

/// Refuse a value given twice (on α's 10⁻⁶ grid): its samples would be pooled into one row
/// counted twice, and the second row left empty.
fn once_each(flag: &str, values: &[Alpha]) -> Result<()> {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            bail!("{flag}: {v} is given twice (values are kept to 10⁻⁶); give each once");
        }
    }
    Ok(())
}

pub fn run(args: SweepArgs) -> Result<()> {
    if args.samples == 0 {
        bail!("--samples 0: every α needs at least one sample");
    }
    if args.sampling.params(SWEEP)?.max_tokens == 0 {
        bail!("--max-tokens 0: no text to score");
    }
    let alphas = args.alphas.0.clone();
    once_each("--alphas", &alphas)?;
    if let Some(betas) = &args.betas {
        once_each("--betas", &betas.0)?;
    }
    let prompts = read_prompts(&args.prompts, args.num_prompts)?;
    let planned = alphas
        .len()
        .saturating_mul(prompts.len())
        .saturating_mul(args.samples);
    if planned > crate::eval::sweep::MOST_SAMPLES {
        bail!(
            "--samples {}: {} alphas × {} prompts × {} samples is {planned} samples, more than a sweep plans at once ({}); sweep fewer, or in parts with separate --out",
            args.samples,
            alphas.len(),
            prompts.len(),
            args.samples,
            crate::eval::sweep::MOST_SAMPLES
        );
    }
    let (a, b) = args.pair.endpoints();
    // With --betas, one sweep per β, each in a folder of its own, then the grid.
    if args.betas.is_some() && !args.pair.has_plane() {
        bail!(
            "{}",
            args.pair
                .no_plane("--betas", crate::cli::BETAS_NEED_A_PLANE)
        );
    }
    let betas: Vec<Option<Alpha>> = match &args.betas {
        Some(list) => list.0.iter().copied().map(Some).collect(),
        None => vec![None],
    };
    let options = |beta: Option<Alpha>| match beta {
        Some(beta) => args.pair.options_at_beta(beta),
        None => args.pair.options(),
    };
    if args.betas.is_some() {
        check_grid_out(&args.out)?;
    }
    let opts = options(betas[0])?;
    let mut engine = Engine::load(&a, &b, &opts)?;
    engine.set_stop_texts(args.sampling.stop.clone());
    let mut grid = Vec::new();
    for &beta in &betas {
        let opts = options(beta)?;
        if let Some(beta) = beta {
            engine.set_beta(beta.value())?;
        }
        let config = SweepConfig {
            a: a.clone(),
            b: b.clone(),
            alphas: alphas.clone(),
            prompts: prompts.clone(),
            samples: args.samples,
            params: args.sampling.params(SWEEP)?,
            ppl_ref: args.ppl_ref.parse()?,
            classifier: args.classifier.clone().map(|c| (c, args.label.clone())),
            method: opts.method,
            recipe: opts.recipe.clone(),
            layers: opts.layers.map(|l| l.spec()),
            plane: opts.third.map(|c| {
                let term = |t: crate::engine::ExtraEndpoint, name: &str| {
                    let w = t.weight.map_or("α".to_string(), |w| w.to_string());
                    let factors = t.factors.map(|f| format!(", factors {}", f.spec()));
                    format!("{}, {name} {w}{}", t.source, factors.unwrap_or_default())
                };
                match opts.fourth {
                    None => term(c, "β"),
                    Some(d) => format!("{}; {}", term(c, "β"), term(d, "γ")),
                }
            }),
            alpha_mode: Default::default(),
            held: None,
            seeds: crate::eval::grid::Seeds::Mixed,
            prompt_tokens: None,
            judges: None,
            endpoints: None,
        };
        let out = match beta {
            Some(beta) => args.out.join(format!("beta{beta}")),
            None => args.out.clone(),
        };
        let summary = sweep_one(&mut engine, config, &out, &args)?;
        if let Some(beta) = beta {
            grid.extend(summary.into_iter().map(|s| (beta, s)));
        }
    }
    if !grid.is_empty() {
        write_grid(&args.out, &grid, engine.gamma(), &args.label)?;
        say!(
            "wrote {}/{{grid.csv, plots/grid-*.png|svg}}",
            args.out.display()
        );
    }
    Ok(())
}

/// A grid's --out holds nothing but what grids write (`beta*/` sweeps, and beside them
/// grid.csv and plots/), so that a new grid writes over nobody's files: each β's folder is
/// then checked as one sweep's --out is.
fn check_grid_out(out: &std::path::Path) -> Result<()> {
    // A grid killed while it wrote grid.csv or a plot left its partial copy: a rerun resumes.
    crate::files::remove_stale_partials(out);
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("--out {}: cannot read", out.display())),
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let sweeps = names
        .iter()
        .any(|n| n.starts_with("beta") && out.join(n).join("sweep.json").is_file());
    let theirs = names.iter().find(|n| {
        let grid = *n == "grid.csv" || *n == "plots";
        !(n.starts_with("beta") && out.join(n).is_dir() || grid && sweeps)
    });
    if let Some(name) = theirs {
        bail!(
            "--out {}: holds {name}, which no grid of sweeps wrote; a new grid goes into a new or empty folder",
            out.display()
        );
    }
    Ok(())
}

/// One sweep into `out`, its table printed.
fn sweep_one(
    engine: &mut Engine,
    config: SweepConfig,
    out: &std::path::Path,
    args: &SweepArgs,
) -> Result<Vec<AlphaSummary>> {
    let t = std::time::Instant::now();
    let sweep = Sweep {
        config,
        mode: args.alpha_mode,
        out: out.to_path_buf(),
        progress: true,
        tokens_per_s: Default::default(),
    };
    let summary = sweep.run(engine)?;
    // On a plane the table says where β (and γ) were held: one --beta, or each of --betas.
    if let Some(held) = crate::eval::held_coordinates(engine) {
        say!("── {held} ──");
    }
    say!(
        "{:>8}  {:>22}  {:>24}  {:>6}  {:>6}",
        "α",
        "VADER (95% CI)",
        "perplexity (95% CI)",
        "dist-1",
        "dist-2"
    );
    // An interval's bounds, or "no interval" in their width (one sample).
    let bounds = |e: &crate::eval::stats::Estimate, w: usize, p: usize| match e.ci_low.is_nan() {
        true => format!("{:^width$}", "(no interval)", width = 2 * w + 4),
        false => format!("[{:>w$.p$}, {:>w$.p$}]", e.ci_low, e.ci_high),
    };
    // distinct-n without n-grams (one-word samples) is undefined: a dash, not NaN.
    let distinct = |d: f64| match d.is_nan() {
        true => format!("{:>6}", "–"),
        false => format!("{d:>6.3}"),
    };
    for s in &summary {
        say!(
            "{:>8}  {:>6.3} {}  {:>7.2} {}  {}  {}",
            s.alpha,
            s.vader.mean,
            bounds(&s.vader, 6, 3),
            s.perplexity.mean,
            bounds(&s.perplexity, 7, 2),
            distinct(s.distinct_1),
            distinct(s.distinct_2)
        );
    }
    for s in summary.iter().filter(|s| s.empty > 0) {
        say!(
            "{:>8}  {} empty sample(s) (an end token first), left out of the estimates",
            s.alpha,
            s.empty
        );
    }
    for s in summary.iter().filter(|s| s.classifier.is_some()) {
        let e = s.classifier.expect("filtered");
        say!(
            "{:>8}  classifier P({}) {:.3} {}",
            s.alpha,
            args.label,
            e.mean,
            bounds(&e, 5, 3)
        );
    }
    say!(
        "wrote {}/{{samples.jsonl, summary.csv, summary.json, plots/}} in {:.1}s{}",
        out.display(),
        t.elapsed().as_secs_f64(),
        match sweep.tokens_per_s.get() {
            Some(r) => format!(" (generation {r:.1} tok/s over all rows)"),
            None => String::new(),
        }
    );
    Ok(summary)
}

/// The (α, β) grid: grid.csv (one row per cell: β, α, each meter's mean and 95% interval, and
/// with a fourth endpoint its γ, the same in every row) and a heat map of each meter's mean.
fn write_grid(
    out: &std::path::Path,
    grid: &[(Alpha, AlphaSummary)],
    gamma: Option<f64>,
    label: &str,
) -> Result<()> {
    let mut csv = String::from(
        "beta,alpha,vader_mean,vader_ci_low,vader_ci_high,perplexity_mean,perplexity_ci_low,perplexity_ci_high,classifier_mean,classifier_ci_low,classifier_ci_high,empty",
    );
    let gamma_field = gamma.map_or(String::new(), |g| format!(",{g}"));
    csv.push_str(if gamma.is_some() { ",gamma\n" } else { "\n" });
    let field = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for (beta, s) in grid {
        let c = s.classifier;
        csv.push_str(&format!(
            "{beta},{},{},{},{},{},{},{},{},{},{},{}{gamma_field}\n",
            s.alpha,
            s.vader.mean,
            s.vader.ci_low,
            s.vader.ci_high,
            s.perplexity.mean,
            s.perplexity.ci_low,
            s.perplexity.ci_high,
            field(c.map(|e| e.mean)),
            field(c.map(|e| e.ci_low)),
            field(c.map(|e| e.ci_high)),
            s.empty
        ));
    }
    let path = out.join("grid.csv");
    crate::files::write_whole(&path, csv)?;
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots)
        .with_context(|| format!("{}: cannot create", plots.display()))?;
    let cells = |f: &dyn Fn(&AlphaSummary) -> Option<f64>| -> Vec<(f64, f64, f64)> {
        grid.iter()
            .filter_map(|(beta, s)| Some((s.alpha.value(), beta.value(), f(s)?)))
            .collect()
    };
    plot::heat_map(
        &plots.join("grid-vader"),
        "mean VADER compound over (α, β)",
        &cells(&|s| Some(s.vader.mean)),
    )?;
    plot::heat_map(
        &plots.join("grid-perplexity"),
        "mean perplexity over (α, β)",
        &cells(&|s| Some(s.perplexity.mean)),
    )?;
    if grid.iter().any(|(_, s)| s.classifier.is_some()) {
        plot::heat_map(
            &plots.join("grid-classifier"),
            &format!("mean P({label}) over (α, β)"),
            &cells(&|s| s.classifier.map(|e| e.mean)),
        )?;
    }
    Ok(())
}
