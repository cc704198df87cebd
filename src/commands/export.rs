//! `lerpscope export`: the model at one α, written as a Hugging Face folder or a GGUF file.

use crate::cli::ExportArgs;
use crate::engine::export::{self, Format};
use crate::engine::Engine;
use anyhow::Result;
use candle_core::DType;

pub fn run(args: ExportArgs) -> Result<()> {
    remove_partial_on_signal();
    let alpha = args.alpha;
    let named_gguf = args
        .out
        .as_ref()
        .and_then(|o| o.extension())
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let format = match args.format.as_deref() {
        Some("gguf") => Format::Gguf,
        Some(_) => Format::Hf,
        None if named_gguf => Format::Gguf,
        None => Format::Hf,
    };
    let mut opts = args.pair.options()?;
    // The blend is computed and written in one dtype: the one asked for, else f32.
    let dtype = opts.dtype.unwrap_or(DType::F32);
    opts.dtype = Some(dtype);
    let (a, b) = args.pair.endpoints();
    // A plane's fixed weights, named wherever α is: (file-name word, symbol, value).
    let fixed: Vec<(&str, &str, f64)> = [("beta", "β", &opts.third), ("gamma", "γ", &opts.fourth)]
        .into_iter()
        .filter_map(|(word, symbol, e)| Some((word, symbol, e.as_ref()?.weight?)))
        .collect();
    let out = args.out.clone().unwrap_or_else(|| {
        let mut name = export::default_name(&b, alpha);
        for (word, _, w) in &fixed {
            name.push_str(&format!("-{word}{w}"));
        }
        match format {
            Format::Hf => name.into(),
            Format::Gguf => format!("{name}.gguf").into(),
        }
    });
    // The recipe is read from its file, which --force must not replace with the export.
    if let (Some(r), Ok(o)) = (&args.pair.recipe, std::fs::canonicalize(&out)) {
        if std::fs::canonicalize(&r.file).is_ok_and(|f| f.starts_with(&o)) {
            anyhow::bail!(
                "--out {}: the recipe {} is read from there; write the export elsewhere",
                out.display(),
                r.file
            );
        }
    }
    let mut engine = Engine::load(&a, &b, &opts)?;
    let snapshot = engine.snapshot(alpha, dtype)?;
    drop(engine);
    let total: u64 = snapshot.tensors.iter().map(|t| t.2.len() as u64).sum();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} · {elapsed}")
            .expect("template"),
    );
    let path = export::write(&snapshot, format, &out, args.force, &|done, _| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    if let (Format::Gguf, Some(note)) = (format, snapshot.gguf_note()) {
        eprintln!("{note}");
    }
    let point: String = fixed
        .iter()
        .map(|(_, symbol, w)| format!(", {symbol} = {w}"))
        .collect();
    say!(
        "wrote {} (α = {alpha}{point}, {}, {:.1} MB of weights)",
        path.display(),
        crate::engine::dtype_name(dtype),
        total as f64 / 1e6
    );
    Ok(())
}

/// Ctrl-C or a kill mid-export takes the partial copy with the process, which then ends as
/// the signal would have ended it.
fn remove_partial_on_signal() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    // The handlers are in place before the export starts: installed here, awaited there.
    let signal = {
        let _in = rt.enter();
        crate::signals::quit_signal()
    };
    std::thread::spawn(move || {
        let number = rt.block_on(signal);
        export::remove_partial();
        crate::signals::die_by(number);
    });
}
