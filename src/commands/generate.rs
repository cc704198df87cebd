//! `lerpscope generate`: one continuation per α, streamed, or as JSON lines.

use crate::cli::{parse_alphas, GenerateArgs, INTERACTIVE};
use crate::engine::Engine;
use anyhow::Result;
use serde_json::json;
use std::io::Write;
use std::sync::atomic::AtomicBool;

pub fn run(args: GenerateArgs) -> Result<()> {
    let alphas = parse_alphas(&args.alphas, "--alphas")?;
    let params = args.sampling.params(INTERACTIVE)?;
    let opts = args.pair.load.options()?;
    let (a, b) = args.pair.endpoints();
    let mut engine = Engine::load(&a, &b, &opts)?;
    engine.set_stop_texts(args.sampling.stop.clone());
    let never = AtomicBool::new(false);
    let stdout = std::io::stdout();
    for alpha in alphas {
        let blend = engine.set_alpha(alpha)?;
        let mut out = stdout.lock();
        if args.json {
            let g = engine.generate(&args.prompt, &params, &never, &mut |_| {})?;
            let line = json!({
                "alpha": alpha,
                "prompt": args.prompt,
                "text": crate::engine::token_stream::plain(&g.text),
                "token_ids": g.token_ids,
                "tokens_per_s": g.tokens_per_s(),
                "blend_ms": blend.as_secs_f64() * 1e3,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "── α = {alpha} ──")?;
            write!(out, "{}", args.prompt)?;
            out.flush()?;
            let g = engine.generate(&args.prompt, &params, &never, &mut |piece| {
                let _ = write!(out, "{}", crate::engine::token_stream::plain(piece));
                let _ = out.flush();
            })?;
            writeln!(
                out,
                "\n[{} tokens, {:.1} tok/s, blend {:.1} ms]\n",
                g.token_ids.len(),
                g.tokens_per_s(),
                blend.as_secs_f64() * 1e3
            )?;
        }
    }
    Ok(())
}
