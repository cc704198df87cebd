//! The session as one self-contained HTML page: the columns side by side, every token shaded
//! by its probability, the shared prefix faded, the token where each column parts from its
//! left neighbour marked, and a tooltip per token with its top alternatives. No scripts, no
//! external assets: it opens offline in any browser.

use super::{Session, SessionColumn, SessionToken};
use std::fmt::Write;

/// Probability buckets (lower bounds of the top four): the UI's scale.
const BOUNDS: [f32; 4] = [0.05, 0.2, 0.5, 0.8];
/// Background of each bucket, from surprising to expected.
const SHADES: [&str; 5] = ["#f4a3a3", "#f8c9a0", "#f6e7a1", "#ffffff", "#c8ecc4"];

const STYLE: &str = r#"
body { font: 15px/1.5 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.2em; margin: 0 0 .3em; }
.meta { color: #666; font-size: .85em; margin-bottom: .8em; }
.legend span { display: inline-block; padding: 0 .5em; margin-right: .3em; border: 1px solid #ddd; }
.columns { display: grid; gap: 1em; grid-template-columns: repeat(var(--n), minmax(14em, 1fr)); }
.col { background: #fff; border: 1px solid #ccc; border-radius: 6px; padding: .6em .8em; }
.col h2 { font-size: 1em; margin: 0 0 .4em; display: flex; flex-wrap: wrap; gap: 0 .6em;
  justify-content: space-between; }
.col h2 .point { white-space: nowrap; }
.col h2 small { color: #777; font-weight: normal; }
.text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .92em; }
.prompt { color: #999; }
.error { color: #b00; white-space: normal; margin: 0 0 .4em; }
.t { position: relative; border-radius: 2px; }
.t.shared { color: #aaa; }
.t.parts { outline: 2px solid #b0f; }
.t.parts::before { content: "▸"; color: #b0f; font-weight: bold; }
.t .tip { display: none; position: absolute; z-index: 1; left: 0; top: 1.5em; background: #333;
  color: #eee; padding: .4em .6em; border-radius: 4px; white-space: pre; font-size: .85em; }
.col:last-child .t .tip { left: auto; right: 0; }
.t:hover .tip { display: block; }
.prompt, .tip { unicode-bidi: isolate; }
details.meta .text { margin: .3em 0 0; color: #444; }
"#;

/// "A and B", or on a plane "A, B and C" (and D).
fn endpoints(s: &Session) -> &'static str {
    match (s.sources.contains_key("c"), s.sources.contains_key("d")) {
        (_, true) => "A, B, C and D",
        (true, false) => "A, B and C",
        (false, false) => "A and B",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bucket(logprob: f32) -> usize {
    let p = logprob.exp();
    BOUNDS.iter().filter(|&&b| p >= b).count()
}

/// The page for `s`.
pub fn render(s: &Session) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>lerpscope session</title><style>{STYLE}</style></head><body>\n"
    );
    let _ = write!(
        h,
        "<h1>lerpscope: {} column{} between {}</h1>\n<div class=\"meta\">A (α = 0): {} · \
         B{}: {}{}{}<br>{}</div>\n",
        s.columns.len(),
        if s.columns.len() == 1 { "" } else { "s" },
        endpoints(s),
        escape(&s.a),
        s.b_at_one(),
        escape(&s.b),
        s.other_sources()
            .iter()
            .map(|(label, source)| format!(" · {label}: {}", escape(source)))
            .collect::<String>(),
        s.path
            .as_ref()
            .map_or(String::new(), |p| format!(" · path: {}", escape(p)))
            + &s.engine.as_ref().map_or(String::new(), |e| format!(
                " · engine: {}",
                escape(&e.line())
            )),
        escape(&settings(s))
    );
    // Score mode's text, once: the columns hold it as tokens, and a failed one has none.
    if let Some(text) = &s.score_text {
        let _ = writeln!(
            h,
            "<details class=\"meta\"><summary>the scored text ({} characters)</summary>\
             <div class=\"text prompt\">{}</div></details>",
            text.chars().count(),
            escape(text)
        );
    }
    h.push_str("<div class=\"legend meta\">p(token), the model's own distribution: ");
    for (i, label) in ["&lt;5%", "&lt;20%", "&lt;50%", "&lt;80%", "≥80%"]
        .iter()
        .enumerate()
    {
        let _ = write!(h, "<span style=\"background:{}\">{label}</span>", SHADES[i]);
    }
    h.push_str(
        " · faded: the text a column shares with its left neighbour · \
         <span class=\"t parts\">marked</span>: where it parts · hover a token for its \
         alternatives</div>\n",
    );
    let _ = writeln!(
        h,
        "<div class=\"columns\" style=\"--n:{}\">",
        s.columns.len()
    );
    for c in &s.columns {
        column(&mut h, s, c);
    }
    h.push_str("</div>\n</body></html>\n");
    h
}

fn settings(s: &Session) -> String {
    match &s.score_text {
        Some(_) => "score mode: every column scores the same text".to_string(),
        None => s.sampling(" · "),
    }
}

fn column(h: &mut String, s: &Session, c: &SessionColumn) {
    let stats = match c.score {
        Some(fit) => format!(
            "NLL {:.1} · ppl {}",
            fit.nll,
            crate::engine::fixed(fit.perplexity, 1)
        ),
        None => format!(
            "{} token{}{}{}{}",
            c.tokens,
            if c.tokens == 1 { "" } else { "s" },
            c.unfinished(),
            c.how().map_or(String::new(), |r| format!(" · {r}")),
            c.meters
                .map_or(String::new(), |m| format!(" · {}", m.line(" · ")))
        ),
    };
    let _ = write!(
        h,
        "<section class=\"col\"><h2><span class=\"point\">{}</span> <small>{}</small></h2><div class=\"text\">",
        escape(&c.point()),
        escape(&stats)
    );
    if let Some(e) = &c.error {
        let _ = write!(h, "<p class=\"error\">failed: {}</p>", escape(e));
    }
    if s.score_text.is_none() {
        let _ = write!(h, "<span class=\"prompt\">{}</span>", escape(&s.lead()));
    }
    for (i, t) in c.token_detail.iter().enumerate() {
        token(h, t, i, c.diverges_at);
    }
    h.push_str("</div></section>\n");
}

fn token(h: &mut String, t: &SessionToken, i: usize, parts: Option<usize>) {
    let mut class = String::from("t");
    match parts {
        Some(d) if i < d => class.push_str(" shared"),
        Some(d) if i == d => class.push_str(" parts"),
        _ => {}
    }
    let style = t
        .logprob
        .map(|l| format!(" style=\"background:{}\"", SHADES[bucket(l)]))
        .unwrap_or_default();
    let text = escape(&crate::engine::tokens::plain(&t.text));
    let _ = write!(h, "<span class=\"{class}\"{style}>{text}");
    if let (Some(lp), Some(ent)) = (t.logprob, t.entropy) {
        let _ = writeln!(
            h,
            "<span class=\"tip\">token {} · p {:.3} · entropy {:.2} nats",
            i + 1,
            lp.exp(),
            ent
        );
        for a in &t.top {
            let mark = if a.id == t.id { " •" } else { "" };
            let _ = writeln!(
                h,
                "{:>6.1}%  {}{mark}",
                100.0 * a.logprob.exp(),
                escape(&format!("{:?}", a.text))
            );
        }
        h.push_str("</span>");
    }
    h.push_str("</span>");
}
