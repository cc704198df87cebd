//! Finding the α at which the meter's mean reaches a target: a bracket found inside the range,
//! then safeguarded secant steps, stopping when the bracket is narrow, when its two ends can no
//! longer be told apart with these samples, or when a point's interval (or its mean) holds the
//! target.
//!
//! The search is a state machine over measured [`Point`]s: [`Search::next_step`] says which α to
//! measure (or that it is done), [`Search::add`] takes the measurement. `find` drives it in a
//! loop; the UI one α per turn of the engine thread. The meter never appears here, so the logic
//! is tested on synthetic curves.

use super::points::Point;
use super::stats::{estimate, Estimate};
use crate::engine::{Alpha, AlphaRange};
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub target: f64,
    pub range: AlphaRange,
    /// Stop once the bracket is this narrow in α.
    pub tolerance: f64,
    /// At most this many points are measured, the final one at α* included.
    pub max_points: usize,
    /// Points whose mean perplexity is above this × the endpoints' (the larger of α = 0's and
    /// α = 1's) are never the answer.
    pub max_ppl_ratio: Option<f64>,
    /// Bootstrap resamples for α*'s interval, and their seed.
    pub resamples: usize,
    pub seed: u64,
}

impl Settings {
    pub fn new(target: f64, range: AlphaRange) -> Self {
        Self {
            target,
            range,
            tolerance: 0.02,
            max_points: 8,
            max_ppl_ratio: None,
            resamples: 2000,
            seed: 0,
        }
    }
}

/// What the search concluded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// α* reaches the target.
    Found,
    /// The meter does not reach the target anywhere in the range.
    OutOfReach,
    /// The curve turns back inside the bracket, beyond what the samples' noise explains.
    NotMonotone,
    /// The target is reached only where perplexity is above the guard.
    TooPerplexed,
    /// `max_points` ran out before the target was bracketed, with a range end still to
    /// measure.
    OutOfPoints,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// α* when found; otherwise the measured point closest to the target (an answer-worthy
    /// one, where there is any).
    pub alpha: Alpha,
    /// α*'s 95% bootstrap interval over prompts and samples (found, from two samples a point).
    pub alpha_ci: Option<(f64, f64)>,
    /// The last bracket, where one was found (for [`Verdict::NotMonotone`], the first: the
    /// one the curve turns back in).
    pub bracket: Option<(Alpha, Alpha)>,
    /// For [`Verdict::OutOfPoints`], the range end it would have measured next.
    pub unmeasured: Option<Alpha>,
    /// The perplexity above which a point was refused, with the guard on.
    pub ppl_limit: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Measure(Alpha),
    Done,
}

pub struct Search {
    settings: Settings,
    /// Sorted by α.
    points: Vec<Point>,
    latest: Option<Alpha>,
    /// The first bracket found: the monotone check looks inside it.
    first_bracket: Option<(Alpha, Alpha)>,
    /// α* chosen for the final measurement.
    last_call: Option<Alpha>,
    outcome: Option<Outcome>,
}

impl Search {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            points: Vec::new(),
            latest: None,
            first_bracket: None,
            last_call: None,
            outcome: None,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every point measured so far, by α.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The current bracket: the two neighbouring in-range points the target lies between.
    pub fn bracket(&self) -> Option<(Alpha, Alpha)> {
        self.tight_bracket()
            .map(|(i, j)| (self.points[i].alpha, self.points[j].alpha))
    }

    pub fn add(&mut self, point: Point) {
        let at = self.points.partition_point(|p| p.alpha < point.alpha);
        self.latest = Some(point.alpha);
        if self.points.get(at).is_some_and(|p| p.alpha == point.alpha) {
            self.points[at] = point;
        } else {
            self.points.insert(at, point);
        }
    }

    /// What to do next: measure an α, or stop (then [`Self::outcome`] says why).
    pub fn next_step(&mut self) -> Step {
        if self.outcome.is_some() {
            return Step::Done;
        }
        match self.decide() {
            Ok(alpha) => Step::Measure(alpha),
            Err(outcome) => {
                self.outcome = Some(outcome);
                Step::Done
            }
        }
    }

    fn measured(&self, alpha: Alpha) -> bool {
        self.points.iter().any(|p| p.alpha == alpha)
    }

    fn in_range(&self, alpha: Alpha) -> bool {
        let (lo, hi) = self.settings.range.bounds();
        (lo..=hi).contains(&alpha.value())
    }

    fn mean(&self, i: usize) -> f64 {
        self.points[i].meter().mean
    }

    /// The guard's limit, once both endpoints are measured.
    fn ppl_limit(&self) -> Option<f64> {
        let ratio = self.settings.max_ppl_ratio?;
        let ppl = |a: Alpha| {
            self.points
                .iter()
                .find(|p| p.alpha == a)
                .map(|p| p.perplexity().mean)
        };
        let worst = ppl(Alpha::A)?.max(ppl(Alpha::B)?);
        Some(ratio * worst)
    }

    /// In range and fluent enough to be the answer.
    fn eligible(&self, p: &Point) -> bool {
        self.in_range(p.alpha)
            && match self.ppl_limit() {
                Some(limit) => p.perplexity().mean.is_nan() || p.perplexity().mean <= limit,
                None => true,
            }
    }

    /// The first points to measure: the endpoints where the range holds them, else its ends
    /// (and, for the guard, the endpoints' perplexities wherever they are).
    fn probes(&self) -> Vec<Alpha> {
        let r = self.settings.range;
        let clamp = |a: Alpha| Alpha::saturating(a.value().clamp(r.lo().value(), r.hi().value()));
        let mut probes = vec![clamp(Alpha::A), clamp(Alpha::B)];
        if probes[0] == probes[1] {
            probes = vec![r.lo(), r.hi()];
        }
        if self.settings.max_ppl_ratio.is_some() {
            probes.extend([Alpha::A, Alpha::B]);
        }
        probes
    }

    /// Indices of the neighbouring in-range points that straddle the target, inside the first
    /// bracket once there is one.
    fn tight_bracket(&self) -> Option<(usize, usize)> {
        let t = self.settings.target;
        let inside: Vec<usize> = (0..self.points.len())
            .filter(|&i| self.in_range(self.points[i].alpha))
            .filter(|&i| match self.first_bracket {
                Some((a, b)) => (a..=b).contains(&self.points[i].alpha),
                None => true,
            })
            .collect();
        inside
            .windows(2)
            .map(|w| (w[0], w[1]))
            .find(|&(i, j)| (self.mean(i) - t) * (self.mean(j) - t) < 0.0)
    }

    fn decide(&mut self) -> Result<Alpha, Outcome> {
        let s = self.settings.clone();
        let t = s.target;
        if let Some(a) = self.probes().into_iter().find(|&a| !self.measured(a)) {
            return Ok(a);
        }
        let budget_left = s.max_points.saturating_sub(self.points.len());
        // A point whose interval holds the target: these samples cannot tell it from the
        // target, so it is the answer (the one closest in mean, where several are). A mean
        // on the target is one too, with or without an interval (one sample has none).
        let holds = self
            .points
            .iter()
            .filter(|p| self.eligible(p))
            .filter(|p| {
                let e = p.meter();
                (e.ci_low <= t && t <= e.ci_high) || e.mean == t
            })
            .min_by(|a, b| {
                (a.meter().mean - t)
                    .abs()
                    .total_cmp(&(b.meter().mean - t).abs())
            })
            .map(|p| p.alpha);
        if let Some(alpha) = holds {
            return Err(self.found(alpha));
        }
        let Some((i, j)) = self.tight_bracket() else {
            return match self.extension() {
                Some(end) if budget_left > 0 => Ok(end),
                Some(end) => Err(Outcome {
                    unmeasured: Some(end),
                    ..self.failed(Verdict::OutOfPoints)
                }),
                None => Err(self.failed(Verdict::OutOfReach)),
            };
        };
        if self.first_bracket.is_none() {
            self.first_bracket = Some((self.points[i].alpha, self.points[j].alpha));
        }
        if !self.monotone() {
            return Err(self.failed(Verdict::NotMonotone));
        }
        if let Some(alpha) = self.last_call {
            // The final point is measured and its interval missed the target: the answer is
            // the measured point nearest the target (the final one, unless the samples are
            // too few to place the crossing and another lies nearer).
            let fluent = self
                .points
                .iter()
                .any(|p| p.alpha == alpha && self.eligible(p));
            return Err(match self.closest_eligible() {
                Some(closest) if fluent => self.found(closest),
                _ => self.failed(Verdict::TooPerplexed),
            });
        }
        let (p, q) = (&self.points[i], &self.points[j]);
        if !self.eligible(p) && !self.eligible(q) {
            return Err(self.failed(Verdict::TooPerplexed));
        }
        let (a, b) = (p.alpha.value(), q.alpha.value());
        let (ma, mb) = (self.mean(i), self.mean(j));
        let crossing = a + (t - ma) / (mb - ma) * (b - a);
        let narrow = b - a <= s.tolerance;
        let inseparable = {
            let d = paired_difference(p, q);
            d.n < 2 || (d.ci_low <= 0.0 && 0.0 <= d.ci_high)
        };
        if narrow || inseparable || budget_left <= 1 {
            let alpha = on_thousandths(crossing);
            if self.measured(alpha) || budget_left == 0 {
                let closest = if (ma - t).abs() <= (mb - t).abs() {
                    p.alpha
                } else {
                    q.alpha
                };
                return Err(self.found(if self.measured(alpha) { alpha } else { closest }));
            }
            self.last_call = Some(alpha);
            return Ok(alpha);
        }
        // A secant step, kept off the bracket's ends so the bracket shrinks by a fixed share
        // at least, whatever the curve's shape.
        let share = ((t - ma) / (mb - ma)).clamp(0.15, 0.85);
        let alpha = on_thousandths(a + share * (b - a));
        if self.measured(alpha) {
            return Err(self.found(alpha));
        }
        Ok(alpha)
    }

    /// The range end to measure next when no bracket is found yet: the one the curve heads
    /// towards the target at, if it is not measured yet.
    fn extension(&self) -> Option<Alpha> {
        let t = self.settings.target;
        let inside: Vec<&Point> = self
            .points
            .iter()
            .filter(|p| self.in_range(p.alpha))
            .collect();
        let (first, last) = (inside.first()?, inside.last()?);
        let (m0, m1) = (first.meter().mean, last.meter().mean);
        let (lo, hi) = (self.settings.range.lo(), self.settings.range.hi());
        let end = if (t - m1) * (m1 - m0) > 0.0 {
            hi
        } else if (t - m0) * (m0 - m1) > 0.0 {
            lo
        } else if !self.measured(hi) {
            hi
        } else {
            lo
        };
        (!self.measured(end)).then_some(end)
    }

    /// No step inside the first bracket goes against the bracket's direction by more than the
    /// paired samples' interval allows.
    fn monotone(&self) -> bool {
        let Some((a, b)) = self.first_bracket else {
            return true;
        };
        let inside: Vec<&Point> = self
            .points
            .iter()
            .filter(|p| (a..=b).contains(&p.alpha))
            .collect();
        let dir = (inside[inside.len() - 1].meter().mean - inside[0].meter().mean).signum();
        inside.windows(2).all(|w| {
            let d = paired_difference(w[0], w[1]);
            !(dir * d.mean < 0.0 && (d.ci_high < 0.0 || d.ci_low > 0.0))
        })
    }

    /// The in-range point fluent enough to answer whose mean is nearest the target.
    fn closest_eligible(&self) -> Option<Alpha> {
        let t = self.settings.target;
        self.points
            .iter()
            .filter(|p| self.in_range(p.alpha) && self.eligible(p))
            .min_by(|a, b| {
                (a.meter().mean - t)
                    .abs()
                    .total_cmp(&(b.meter().mean - t).abs())
            })
            .map(|p| p.alpha)
    }

    fn found(&self, alpha: Alpha) -> Outcome {
        // One sample a point: every resample is the same sample, so there is no interval.
        let single = self
            .points
            .first()
            .is_none_or(|p| p.scores.iter().map(Vec::len).sum::<usize>() < 2);
        Outcome {
            verdict: Verdict::Found,
            alpha,
            alpha_ci: (!single).then(|| self.bootstrap(alpha)),
            bracket: self.bracket(),
            ppl_limit: self.ppl_limit(),
            unmeasured: None,
        }
    }

    fn failed(&self, verdict: Verdict) -> Outcome {
        let t = self.settings.target;
        // The range's points only (A and B may be measured outside it, for the guard alone):
        // the fluent ones where there are any.
        let inside: Vec<&Point> = self
            .points
            .iter()
            .filter(|p| self.in_range(p.alpha))
            .collect();
        let eligible: Vec<&Point> = inside
            .iter()
            .copied()
            .filter(|p| self.eligible(p))
            .collect();
        let pool = if eligible.is_empty() {
            inside
        } else {
            eligible
        };
        let closest = pool
            .iter()
            .min_by(|a, b| {
                (a.meter().mean - t)
                    .abs()
                    .total_cmp(&(b.meter().mean - t).abs())
            })
            .map_or(self.settings.range.lo(), |p| p.alpha);
        Outcome {
            verdict,
            alpha: closest,
            alpha_ci: None,
            bracket: match verdict {
                Verdict::NotMonotone => self.first_bracket,
                _ => self.bracket(),
            },
            ppl_limit: self.ppl_limit(),
            unmeasured: None,
        }
    }

    /// α*'s 95% interval: resample prompts, then each chosen prompt's samples, with
    /// replacement; in each resample find where the piecewise-linear curve through the
    /// in-range points' means crosses the target (the crossing nearest α*; the point nearest
    /// the target where none does); take the 2.5% and 97.5% quantiles.
    fn bootstrap(&self, star: Alpha) -> (f64, f64) {
        let s = &self.settings;
        let points: Vec<&Point> = self
            .points
            .iter()
            .filter(|p| self.in_range(p.alpha))
            .collect();
        let prompts = points.first().map_or(0, |p| p.scores.len());
        if prompts == 0 || s.resamples == 0 {
            return (star.value(), star.value());
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed);
        let mut draws = Vec::with_capacity(s.resamples);
        let mut weights: Vec<Vec<u32>> =
            points[0].scores.iter().map(|r| vec![0; r.len()]).collect();
        for _ in 0..s.resamples {
            weights.iter_mut().flatten().for_each(|w| *w = 0);
            for _ in 0..prompts {
                let p = rng.random_range(0..prompts);
                let n = weights[p].len();
                for _ in 0..n {
                    weights[p][rng.random_range(0..n)] += 1;
                }
            }
            let means: Vec<f64> = points.iter().map(|p| weighted_mean(p, &weights)).collect();
            draws.push(crossing(&points, &means, s.target, star.value()));
        }
        draws.sort_by(f64::total_cmp);
        let q = |f: f64| draws[((draws.len() - 1) as f64 * f).round() as usize];
        (q(0.025), q(0.975))
    }
}

/// Candidates on a 0.001 grid: α* reads as a person would type it, far finer than any
/// tolerance worth asking for.
fn on_thousandths(x: f64) -> Alpha {
    Alpha::saturating((x * 1000.0).round() / 1000.0)
}

fn weighted_mean(p: &Point, weights: &[Vec<u32>]) -> f64 {
    let (mut sum, mut n) = (0.0, 0u64);
    for (scores, ws) in p.scores.iter().zip(weights) {
        for (s, &w) in scores.iter().zip(ws) {
            if let Some(s) = s {
                sum += s * w as f64;
                n += w as u64;
            }
        }
    }
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// Where the piecewise-linear curve through (α, mean) crosses `target`: the crossing nearest
/// `near`, or the α of the mean nearest the target when the curve never crosses it.
fn crossing(points: &[&Point], means: &[f64], target: f64, near: f64) -> f64 {
    let mut best: Option<f64> = None;
    for i in 0..points.len().saturating_sub(1) {
        let (m0, m1) = (means[i] - target, means[i + 1] - target);
        if m0 == 0.0 || m0 * m1 < 0.0 {
            let (a0, a1) = (points[i].alpha.value(), points[i + 1].alpha.value());
            let x = if m0 == 0.0 {
                a0
            } else {
                a0 + m0 / (m0 - m1) * (a1 - a0)
            };
            if best.is_none_or(|b| (x - near).abs() < (b - near).abs()) {
                best = Some(x);
            }
        }
    }
    best.unwrap_or_else(|| {
        let i = (0..means.len())
            .filter(|&i| !means[i].is_nan())
            .min_by(|&a, &b| {
                (means[a] - target)
                    .abs()
                    .total_cmp(&(means[b] - target).abs())
            })
            .unwrap_or(0);
        points[i].alpha.value()
    })
}

/// The mean difference q − p over the cells both scored (same prompt, same seed), with its
/// 95% interval: common random numbers make this far tighter than the two intervals apart.
pub fn paired_difference(p: &Point, q: &Point) -> Estimate {
    let d: Vec<f64> = p
        .scores
        .iter()
        .flatten()
        .zip(q.scores.iter().flatten())
        .filter_map(|(a, b)| Some((*b)? - (*a)?))
        .collect();
    estimate(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic meter: at α, sample (p, s) scores curve(α) + noise(p, s), the same noise
    /// at every α (common random numbers), plus perplexity ppl(α).
    fn point(alpha: Alpha, curve: &dyn Fn(f64) -> f64, noise: f64, ppl: f64) -> Point {
        let (prompts, samples) = (4, 8);
        let scores = (0..prompts)
            .map(|p| {
                (0..samples)
                    .map(|s| {
                        let u = ((p * samples + s) as f64 * 0.618_034).fract() - 0.5;
                        Some(curve(alpha.value()) + noise * u)
                    })
                    .collect()
            })
            .collect();
        Point {
            alpha,
            scores,
            perplexities: vec![ppl; prompts * samples],
            range: (-1.0, 1.0),
        }
    }

    fn run(
        settings: Settings,
        curve: &dyn Fn(f64) -> f64,
        noise: f64,
        ppl: &dyn Fn(f64) -> f64,
    ) -> (Outcome, Vec<Alpha>) {
        let mut search = Search::new(settings);
        let mut asked = Vec::new();
        while let Step::Measure(a) = search.next_step() {
            assert!(!asked.contains(&a), "{a} measured twice: {asked:?}");
            asked.push(a);
            search.add(point(a, curve, noise, ppl(a.value())));
        }
        (search.outcome().expect("done").clone(), asked)
    }

    fn range(s: &str) -> AlphaRange {
        s.parse().unwrap()
    }

    #[test]
    fn a_linear_meter_is_found_at_its_crossing_within_eight_points() {
        let curve = |a: f64| -0.2 + 0.5 * a;
        for target in [-0.1, 0.0, 0.2, 0.3] {
            let (o, asked) = run(Settings::new(target, range("-1:2")), &curve, 0.4, &|_| 10.0);
            assert_eq!(o.verdict, Verdict::Found, "target {target}: {o:?}");
            let want = (target + 0.2) / 0.5;
            let (lo, hi) = o.alpha_ci.unwrap();
            assert!(
                lo <= want && want <= hi,
                "target {target}: {want} not in {lo}..{hi}"
            );
            assert!((o.alpha.value() - want).abs() < 0.2, "{o:?} for {want}");
            assert!(asked.len() <= 8, "{asked:?}");
        }
    }

    /// A search whose every point is one sample, `reading(α)`, at a perplexity of 10.
    fn one_sample_each(settings: Settings, reading: &dyn Fn(f64) -> f64) -> (Outcome, Vec<Alpha>) {
        let mut search = Search::new(settings);
        let mut asked = Vec::new();
        while let Step::Measure(a) = search.next_step() {
            asked.push(a);
            search.add(Point {
                alpha: a,
                scores: vec![vec![Some(reading(a.value()))]],
                perplexities: vec![10.0],
                range: (-1.0, 1.0),
            });
            assert!(asked.len() < 10, "{asked:?}");
        }
        (search.outcome().expect("done").clone(), asked)
    }

    /// One sample a point (one prompt, one sample): the search still ends, on the measured
    /// point nearest the target, with no interval. The readings go as a user's did: the last
    /// point, at the crossing, overshoots further than B had.
    #[test]
    fn one_sample_a_point_answers_with_the_nearest_point_and_no_interval() {
        let reading = |a: f64| match (a * 1000.0).round() as i64 {
            0 => -0.772,
            1000 => 0.226,
            _ => 0.382,
        };
        let (o, asked) = one_sample_each(Settings::new(0.0, range("0:1")), &reading);
        assert_eq!(o.verdict, Verdict::Found, "{o:?}");
        assert_eq!(o.alpha.value(), 1.0, "{o:?} after {asked:?}");
        assert_eq!(o.alpha_ci, None);
    }

    #[test]
    fn one_sample_on_the_target_is_the_answer() {
        // VADER gives exactly 0 to neutral text: with one sample there is no interval, and
        // the points on the target straddle nothing.
        let reading = |a: f64| match (a * 1000.0).round() as i64 {
            0 => -0.296,
            2000 => 0.941,
            _ => 0.0,
        };
        let (o, asked) = one_sample_each(Settings::new(0.0, range("-1:2")), &reading);
        assert_eq!(o.verdict, Verdict::Found, "{o:?} after {asked:?}");
        assert_eq!(o.alpha, Alpha::B, "{o:?} after {asked:?}");
        assert_eq!(o.alpha_ci, None);
    }

    #[test]
    fn without_noise_the_bracket_narrows_to_the_tolerance() {
        // Noise-free: no interval is wide enough to stop early, so only the bracket's width
        // or the budget stops it.
        let curve = |a: f64| (a * 1.3).tanh();
        let mut s = Settings::new(0.5, range("-1:2"));
        s.max_points = 30;
        let (o, asked) = run(s, &curve, 0.0, &|_| 10.0);
        assert_eq!(o.verdict, Verdict::Found);
        let want = 0.5f64.atanh() / 1.3;
        assert!((o.alpha.value() - want).abs() < 0.02, "{o:?} vs {want}");
        assert!(asked.len() < 30, "{asked:?}");
        let (a, b) = o.bracket.unwrap();
        assert!(b.value() - a.value() <= 0.02 + 1e-9, "{o:?}");
    }

    #[test]
    fn the_budget_is_never_exceeded() {
        let curve = |a: f64| (a * 3.0).tanh();
        for max_points in [2, 3, 4, 5, 8] {
            let mut s = Settings::new(0.31, range("-1:2"));
            s.max_points = max_points;
            let (o, asked) = run(s, &curve, 0.0, &|_| 10.0);
            assert!(asked.len() <= max_points.max(2), "{max_points}: {asked:?}");
            assert_eq!(o.verdict, Verdict::Found, "{max_points}: {o:?}");
        }
    }

    #[test]
    fn a_target_beyond_b_is_found_by_extending_to_the_range_end() {
        let curve = |a: f64| 0.3 * a;
        let (o, asked) = run(Settings::new(0.45, range("-1:2")), &curve, 0.1, &|_| 10.0);
        assert_eq!(o.verdict, Verdict::Found, "{o:?}");
        assert_eq!(&asked[..3], &[Alpha::A, Alpha::B, Alpha::new(2.0).unwrap()]);
        assert!((o.alpha.value() - 1.5).abs() < 0.15, "{o:?}");
        // And below A, towards the range's low end.
        let (o, asked) = run(Settings::new(-0.2, range("-1:2")), &curve, 0.1, &|_| 10.0);
        assert_eq!(o.verdict, Verdict::Found, "{o:?}");
        assert_eq!(asked[2], Alpha::new(-1.0).unwrap());
        assert!((o.alpha.value() + 0.667).abs() < 0.15, "{o:?}");
        // With no point left for the range's end, the points ran out: not out of reach.
        let mut s = Settings::new(0.45, range("-1:2"));
        s.max_points = 2;
        let (o, asked) = run(s, &curve, 0.1, &|_| 10.0);
        assert_eq!(asked.len(), 2);
        assert_eq!(o.verdict, Verdict::OutOfPoints, "{o:?}");
        assert_eq!(o.unmeasured, Some(Alpha::new(2.0).unwrap()));
        assert_eq!(o.alpha, Alpha::B);
    }

    #[test]
    fn an_unreachable_target_is_out_of_reach_with_the_closest_point() {
        let curve = |a: f64| 0.3 * a;
        let (o, asked) = run(Settings::new(0.9, range("-1:2")), &curve, 0.1, &|_| 10.0);
        assert_eq!(o.verdict, Verdict::OutOfReach);
        assert_eq!(o.alpha, Alpha::new(2.0).unwrap());
        assert_eq!(asked.len(), 3);
        // A flat meter reaches nothing but its own level.
        let (o, _) = run(Settings::new(0.5, range("0:1")), &|_| 0.1, 0.1, &|_| 10.0);
        assert_eq!(o.verdict, Verdict::OutOfReach);
    }

    #[test]
    fn a_curve_that_turns_back_inside_the_bracket_is_not_monotone() {
        // Rises from −0.5 at 0 to +0.5 at 1 but dips well below both between: the first
        // bracket is [0, 1] and the points inside go the wrong way.
        let curve = |a: f64| {
            if a <= 0.0 || a >= 1.0 {
                a - 0.5
            } else {
                -0.5 - 4.0 * a * (1.0 - a)
            }
        };
        let (o, _) = run(Settings::new(0.3, range("0:1")), &curve, 0.05, &|_| 10.0);
        assert_eq!(o.verdict, Verdict::NotMonotone, "{o:?}");
        // Named by the bracket it turns back in, not the tighter one found inside it.
        assert_eq!(o.bracket, Some((Alpha::A, Alpha::B)), "{o:?}");
        // The same wiggle within the noise is not a turn.
        let tiny = |a: f64| a - 0.5 - 0.01 * (a * 20.0).sin();
        let (o, _) = run(Settings::new(0.0, range("0:1")), &tiny, 0.3, &|_| 10.0);
        assert_eq!(o.verdict, Verdict::Found, "{o:?}");
    }

    #[test]
    fn the_perplexity_guard_refuses_disfluent_answers() {
        let curve = |a: f64| 0.3 * a;
        // Perplexity climbs fast beyond B: the target 0.45 sits at α = 1.5 where it is 6×.
        let ppl = |a: f64| {
            if a > 1.0 {
                10.0 * (1.0 + 10.0 * (a - 1.0))
            } else {
                10.0
            }
        };
        let mut s = Settings::new(0.45, range("-1:2"));
        s.max_ppl_ratio = Some(2.0);
        let (o, _) = run(s.clone(), &curve, 0.1, &ppl);
        assert_eq!(o.verdict, Verdict::TooPerplexed, "{o:?}");
        assert_eq!(o.ppl_limit, Some(20.0));
        assert!(o.alpha.value() <= 1.1, "the closest fluent point: {o:?}");
        // A looser guard lets it through.
        s.max_ppl_ratio = Some(8.0);
        let (o, _) = run(s, &curve, 0.1, &ppl);
        assert_eq!(o.verdict, Verdict::Found, "{o:?}");
    }

    #[test]
    fn the_guard_measures_the_endpoints_even_outside_the_range() {
        let curve = |a: f64| 0.3 * a;
        let mut s = Settings::new(0.45, range("1.2:2"));
        s.max_ppl_ratio = Some(100.0);
        let (o, asked) = run(s, &curve, 0.1, &|_| 10.0);
        assert!(
            asked.contains(&Alpha::A) && asked.contains(&Alpha::B),
            "{asked:?}"
        );
        assert_eq!(o.verdict, Verdict::Found, "{o:?}");
        assert!(o.alpha.value() >= 1.2, "{o:?}");
        // Out of reach there: the closest point is the range's, never A or B outside it
        // (whose meter, nearer the target, was measured for the guard alone).
        let mut s = Settings::new(-0.5, range("1.2:2"));
        s.max_ppl_ratio = Some(100.0);
        let (o, _) = run(s.clone(), &curve, 0.1, &|_| 10.0);
        assert_eq!(o.verdict, Verdict::OutOfReach, "{o:?}");
        assert_eq!(o.alpha, Alpha::new(1.2).unwrap(), "{o:?}");
        // And where no point of the range is fluent, still one of the range's.
        s.max_ppl_ratio = Some(0.5);
        let (o, _) = run(s, &curve, 0.1, &|a| if a > 1.1 { 50.0 } else { 10.0 });
        assert!(o.alpha.value() >= 1.2, "{o:?}");
    }

    #[test]
    fn empty_samples_are_left_out() {
        let mut p = point(Alpha::A, &|_| 0.5, 0.0, 10.0);
        p.scores[0][0] = None;
        p.scores[1][3] = None;
        assert_eq!(p.empty(), 2);
        assert_eq!(p.meter().n, 30);
        assert_eq!(p.meter().mean, 0.5);
        let q = point(Alpha::B, &|_| 0.7, 0.0, 10.0);
        let d = paired_difference(&p, &q);
        assert_eq!(d.n, 30);
        assert!((d.mean - 0.2).abs() < 1e-12);
    }
}
