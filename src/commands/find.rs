//! `lerpscope find`: the α at which the meter's mean reaches a target.

use crate::cli::{FindArgs, SWEEP};
use crate::engine::Engine;
use crate::eval::find::{Outcome, Search, Settings, Step, Verdict};
use crate::eval::points::{measure, Fluency, Plan, Point};
use crate::eval::stats::Estimate;
use crate::eval::{classifier::Classifier, Scorer, Vader};
use anyhow::{bail, Result};
use serde_json::json;

pub fn run(args: FindArgs) -> Result<()> {
    if !args.target.is_finite() {
        bail!("--target {}: not a number", args.target);
    }
    // What the meter can read at all: VADER's compound lies in [−1, 1], a probability in [0, 1].
    let (lo, hi, meter) = match &args.classifier {
        Some(_) => (0.0, 1.0, "a classifier's probability"),
        None => (-1.0, 1.0, "VADER's compound"),
    };
    if !(lo..=hi).contains(&args.target) {
        bail!(
            "--target {}: {meter} lies in [{lo}, {hi}], so no α reaches it",
            args.target
        );
    }
    if args.samples == 0 {
        bail!("--samples 0: every point needs at least one sample");
    }
    if args.max_points < 2 {
        bail!(
            "--max-points {}: a bracket needs at least two points",
            args.max_points
        );
    }
    if !(args.tolerance.is_finite() && args.tolerance > 0.0) {
        bail!("--tolerance {}: must be a positive α width", args.tolerance);
    }
    if let Some(r) = args.max_ppl_ratio {
        if !(r.is_finite() && r > 0.0) {
            bail!("--max-ppl-ratio {r}: must be a positive number");
        }
    }
    let prompts = if args.prompt.is_empty() {
        super::sweep::read_prompts(&args.prompts, args.num_prompts)?
    } else {
        args.prompt.clone()
    };
    let params = args.sampling.params(SWEEP)?;
    if params.max_tokens == 0 {
        bail!("--max-tokens 0: no text to score");
    }
    let meter: Box<dyn Scorer> = match &args.classifier {
        Some(src) => Box::new(Classifier::load(src, &args.label)?),
        None => Box::new(Vader),
    };
    let meter_name = match &args.classifier {
        Some(_) => format!("P({})", args.label),
        None => "VADER".to_string(),
    };
    let (a, b) = args.pair.endpoints();
    let mut engine = Engine::load(&a, &b, &args.pair.options()?)?;
    engine.set_stop_texts(args.sampling.stop.clone());
    let fluency = Fluency::new(args.ppl_ref.parse()?, &engine)?;
    let plan = Plan {
        prompts,
        samples: args.samples,
        params,
    };
    let mut settings = Settings::new(args.target, args.range);
    settings.tolerance = args.tolerance;
    settings.max_points = args.max_points;
    settings.max_ppl_ratio = args.max_ppl_ratio;
    settings.seed = params.sampling.seed;
    let (lo, hi) = args.range.bounds();
    // The whole range within reach before any point (α per layer, a recipe's weights).
    for end in [args.range.lo(), args.range.hi()] {
        engine
            .check_reach(end)
            .map_err(|e| anyhow::anyhow!("--range {lo}:{hi}: {e}"))?;
    }
    // On a plane the search moves α alone; β (and γ) stay where they were set.
    let held = crate::eval::held_point(&engine);
    eprintln!(
        "find: {meter_name} mean = {} over {} prompt(s) × {} sample(s), α in [{lo}, {hi}]{held}",
        args.target,
        plan.prompts.len(),
        plan.samples
    );
    let t = std::time::Instant::now();
    let mut search = Search::new(settings);
    while let Step::Measure(alpha) = search.next_step() {
        let point = measure(&mut engine, &plan, alpha, meter.as_ref(), &fluency)?;
        eprintln!("  {}", point_line(&point));
        search.add(point);
    }
    let seconds = t.elapsed().as_secs_f64();
    let outcome = search.outcome().expect("the search is done").clone();
    let at = |alpha| search.points().iter().find(|p| p.alpha == alpha);
    if args.json {
        let mut line = report(&search, &outcome, &meter_name, seconds);
        line["a"] = json!(engine.info.a);
        line["b"] = json!(engine.info.b);
        line["pair"] = json!(engine.info.description);
        super::add_point(&engine, &mut line);
        // What a rerun needs to ask the same: the prompts, the sampling, the search's limits.
        line["settings"] = json!({
            "prompts": plan.prompts,
            "samples": plan.samples,
            // Through its own text, so an f32 reads as written (0.9, not 0.8999999761581421).
            "params": serde_json::from_str::<serde_json::Value>(&serde_json::to_string(&plan.params)?)?,
            "stop": args.sampling.stop,
            "tolerance": args.tolerance,
            "max_points": args.max_points,
            "max_ppl_ratio": args.max_ppl_ratio,
            "ppl_ref": args.ppl_ref,
            "classifier": args.classifier.as_ref().map(|c| json!([c, args.label])),
        });
        say!("{line}");
    }
    let closest = at(outcome.alpha).map_or(String::new(), |p| {
        format!(" ({})", estimate_text(&p.meter()))
    });
    match outcome.verdict {
        Verdict::Found => {
            if !args.json {
                let p = at(outcome.alpha).expect("α* is measured");
                let interval = match outcome.alpha_ci {
                    Some((clo, chi)) => format!(
                        "95% CI {clo:.3} … {chi:.3}, bootstrap over prompts and samples"
                    ),
                    None => "no interval: one sample a point".to_string(),
                };
                say!("α* = {}{held}  ({interval})", outcome.alpha);
                let ppl = p.perplexity();
                let ppl = match ppl.n {
                    ..=1 => format!("{:.2}", ppl.mean),
                    _ => format!("{:.2} [{:.2}, {:.2}]", ppl.mean, ppl.ci_low, ppl.ci_high),
                };
                let why = match (p.meter().n, holds(&p.meter(), args.target)) {
                    (_, true) => "",
                    (..=1, false) => " (too few samples to tell it from the target)",
                    _ => " (its interval misses the target: the bracket ran out of width or points first)",
                };
                say!(
                    "{meter_name} at α*: {}, perplexity {ppl}{why}",
                    estimate_text(&p.meter()),
                );
                say!(
                    "{} points evaluated in {seconds:.1} s",
                    search.points().len()
                );
            }
            Ok(())
        }
        Verdict::OutOfReach => {
            // The range's points alone: A and B measured outside it for the guard do not count.
            let means: Vec<f64> = search
                .points()
                .iter()
                .filter(|p| (lo..=hi).contains(&p.alpha.value()))
                .map(|p| p.meter().mean)
                .collect();
            let (min, max) = means
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &m| {
                    (a.min(m), b.max(m))
                });
            bail!(
                "--target {} is out of reach in --range {lo}:{hi}: {meter_name} spans {min:.3} … {max:.3} there; the closest point is α = {}{held}{closest}",
                args.target,
                outcome.alpha
            )
        }
        Verdict::NotMonotone => {
            let (a, b) = outcome.bracket.unwrap_or((args.range.lo(), args.range.hi()));
            bail!(
                "--target {}: {meter_name} is not monotone in α across [{a}, {b}] (it turns back by more than the samples' noise); the closest point is α = {}{held}{closest}",
                args.target,
                outcome.alpha
            )
        }
        Verdict::TooPerplexed => {
            let limit = outcome.ppl_limit.unwrap_or(f64::NAN);
            let fluent = at(outcome.alpha).is_some_and(|p| {
                let ppl = p.perplexity().mean;
                ppl <= limit || ppl.is_nan()
            });
            let which = match fluent {
                true => "the closest fluent point",
                false => "no point measured is that fluent; the closest point",
            };
            bail!(
                "--target {} is reached only where perplexity is above --max-ppl-ratio {} × the endpoints' ({limit:.2}); {which} is α = {}{held}{closest}",
                args.target,
                args.max_ppl_ratio.unwrap_or(f64::NAN),
                outcome.alpha
            )
        }
        Verdict::OutOfPoints => bail!(
            "--target {}: not bracketed within --max-points {} (the range end α = {} is not measured yet); raise --max-points; the closest point is α = {}{held}{closest}",
            args.target,
            args.max_points,
            outcome.unmeasured.map_or(String::new(), |a| a.to_string()),
            outcome.alpha
        ),
    }
}

fn holds(e: &Estimate, target: f64) -> bool {
    e.ci_low <= target && target <= e.ci_high
}

fn estimate_text(e: &Estimate) -> String {
    match e.n {
        0 => "no samples (n = 0)".to_string(),
        // One sample has a value and no spread to make an interval of.
        1 => format!("{:+.3} (n = 1, no interval)", e.mean),
        _ => format!(
            "{:+.3} [{:+.3}, {:+.3}] (n = {})",
            e.mean, e.ci_low, e.ci_high, e.n
        ),
    }
}

fn point_line(p: &Point) -> String {
    let ppl = p.perplexity();
    let empty = match p.empty() {
        0 => String::new(),
        k => format!(", {k} empty"),
    };
    format!(
        "α = {:<8} {}  perplexity {}{empty}",
        p.alpha.to_string(),
        estimate_text(&p.meter()),
        crate::engine::fixed(ppl.mean, 2)
    )
}

fn report(search: &Search, o: &Outcome, meter: &str, seconds: f64) -> serde_json::Value {
    let s = search.settings();
    let at = search.points().iter().find(|p| p.alpha == o.alpha);
    json!({
        "verdict": o.verdict,
        "target": s.target,
        "meter": meter,
        "range": [s.range.lo(), s.range.hi()],
        "alpha": o.alpha,
        "alpha_ci": o.alpha_ci.map(|(a, b)| [a, b]),
        "at_alpha": at.map(|p| json!({"meter": p.meter(), "perplexity": p.perplexity(), "empty": p.empty()})),
        "bracket": o.bracket.map(|(a, b)| [a, b]),
        "unmeasured": o.unmeasured,
        "ppl_limit": o.ppl_limit,
        "points_evaluated": search.points().len(),
        "points": search.points().iter().map(|p| json!({
            "alpha": p.alpha,
            "meter": p.meter(),
            "perplexity": p.perplexity(),
            "empty": p.empty(),
        })).collect::<Vec<_>>(),
        "seconds": seconds,
    })
}
