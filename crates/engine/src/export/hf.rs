//! A blend as a Hugging Face folder: config.json (the source's, or the family's written from
//! a GGUF's config), tokenizer and generation files, safetensors shards, a model card.

use super::{io, write_point, Snapshot, SHARD_BYTES};
use crate::engine::dtype_name;
use crate::error::{err, Context, Result};
use crate::formats::config::ModelConfig;
use candle_core::DType;
use std::collections::BTreeMap;
use std::path::Path;

/// A Hugging Face folder at `dir`.
pub(super) fn write_hf(snap: &Snapshot, dir: &Path, progress: &dyn Fn(u64, u64)) -> Result<()> {
    write_point(dir)?;
    io(std::fs::create_dir_all(dir), dir)?;
    let src = &snap.model_files;
    let from_gguf = crate::formats::gguf::is_gguf(&src.config);
    // config.json: the source's own (with the dtype updated), or written from the config.
    let mut config = if from_gguf {
        crate::arch::config_json(&snap.config)?
    } else {
        serde_json::from_str(
            &std::fs::read_to_string(&src.config)
                .with_context(|| format!("{}: cannot read", src.config.display()))?,
        )?
    };
    if let Some(o) = config.as_object_mut() {
        let d = match snap.recipe.dtype {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            _ => "float32",
        };
        o.insert("torch_dtype".into(), d.into());
        o.insert("dtype".into(), d.into());
        // A head the source's config ties but its checkpoint holds apart ran untied
        // (`formats::checkpoint`): the export says so.
        if let ModelConfig::Decoder(c) = &snap.config {
            if !c.tie_word_embeddings {
                o.insert("tie_word_embeddings".into(), false.into());
                if let Some(t) = o.get_mut("text_config").and_then(|t| t.as_object_mut()) {
                    t.insert("tie_word_embeddings".into(), false.into());
                }
            }
        }
    }
    let p = dir.join("config.json");
    write_point(&p)?;
    io(
        std::fs::write(&p, serde_json::to_string_pretty(&config)?),
        &p,
    )?;
    // Tokenizer and generation files: the source's, or rebuilt from the GGUF metadata.
    let src_dir = src
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if from_gguf {
        let p = dir.join("tokenizer.json");
        snap.tokenizer
            .save(&p, true)
            .map_err(|e| err!(Format, "{}: cannot write the tokenizer ({e})", p.display()))?;
        let h = crate::formats::gguf::Header::read(&src.config)?;
        let token = |k: &str| {
            h.get(k)
                .and_then(crate::formats::gguf::Value::as_u64)
                .and_then(|i| snap.tokenizer.id_to_token(i as u32))
        };
        let mut tc = serde_json::json!({"tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": snap.config.max_positions()});
        // The template prompts read: beside a tokenizer given apart, else the GGUF's.
        let template = crate::generate::chat::ChatTemplate::of_model(&src.tokenizer, &src.config);
        if let Some(t) = template.ok().flatten() {
            tc["chat_template"] = t.source().into();
        }
        for (key, k) in [
            ("bos_token", "tokenizer.ggml.bos_token_id"),
            ("eos_token", "tokenizer.ggml.eos_token_id"),
        ] {
            if let Some(t) = token(k) {
                tc[key] = t.into();
            }
        }
        let p = dir.join("tokenizer_config.json");
        write_point(&p)?;
        io(std::fs::write(&p, serde_json::to_string_pretty(&tc)?), &p)?;
    } else {
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            crate::generate::chat::TEMPLATE_FILE,
            "special_tokens_map.json",
            "vocab.json",
            "merges.txt",
        ] {
            let from = if f == "tokenizer.json" {
                src.tokenizer.clone()
            } else {
                src_dir.join(f)
            };
            if from.is_file() {
                write_point(&dir.join(f))?;
                io(std::fs::copy(&from, dir.join(f)), &dir.join(f))?;
            }
        }
    }
    let gen = src_dir.join("generation_config.json");
    let p = dir.join("generation_config.json");
    if !from_gguf && gen.is_file() {
        write_point(&p)?;
        io(std::fs::copy(&gen, &p), &p)?;
    } else {
        let ids = snap.config.eos_ids();
        let g = serde_json::json!({"bos_token_id": snap.config.bos_token_id(), "eos_token_id": ids.first()});
        write_point(&p)?;
        io(std::fs::write(&p, serde_json::to_string_pretty(&g)?), &p)?;
    }
    // What the pair's text took from endpoints beyond A: the template (which transformers
    // reads from chat_template.jinja before tokenizer_config.json), every end token.
    if let Some(t) = &snap.beyond_model.chat_template {
        let p = dir.join(crate::generate::chat::TEMPLATE_FILE);
        write_point(&p)?;
        io(std::fs::write(&p, t), &p)?;
    }
    if let Some(ids) = &snap.beyond_model.end_tokens {
        let mut g: serde_json::Value = serde_json::from_str(&io(std::fs::read_to_string(&p), &p)?)?;
        g["eos_token_id"] = ids.clone().into();
        io(std::fs::write(&p, serde_json::to_string_pretty(&g)?), &p)?;
    }
    // How to make the same model with mergekit.
    if let Some(yaml) = snap.recipe.mergekit_yaml() {
        let p = dir.join("mergekit_config.yml");
        write_point(&p)?;
        io(std::fs::write(&p, yaml), &p)?;
    }
    // The weights, sharded as transformers shards them.
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0;
    for (i, (_, _, b)) in snap.tensors.iter().enumerate() {
        if size > 0 && size + b.len() > SHARD_BYTES {
            shards.push(Vec::new());
            size = 0;
        }
        shards.last_mut().expect("one shard").push(i);
        size += b.len();
    }
    let total: u64 = snap.tensors.iter().map(|t| t.2.len() as u64).sum();
    let mut done = 0u64;
    let mut metadata: std::collections::HashMap<String, String> =
        snap.recipe.entries().into_iter().collect();
    metadata.insert("format".into(), "pt".into());
    let dtype = match snap.recipe.dtype {
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        _ => safetensors::Dtype::F32,
    };
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    for (k, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", k + 1)
        };
        let views: Vec<(String, safetensors::tensor::TensorView)> = shard
            .iter()
            .map(|&i| {
                let (name, shape, bytes) = &snap.tensors[i];
                weight_map.insert(name.clone(), file.clone());
                Ok((
                    name.clone(),
                    safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes)?,
                ))
            })
            .collect::<Result<_>>()?;
        let p = dir.join(&file);
        write_point(&p)?;
        safetensors::serialize_to_file(views, Some(metadata.clone()), &p)
            .map_err(|e| err!(Format, "{}: cannot write ({e})", p.display()))?;
        sort_metadata(&p)?;
        // The writer goes through a private temporary file (mode 0600 on Unix): the shard
        // takes config.json's permissions, which followed the user's umask like the rest.
        let perms = std::fs::metadata(dir.join("config.json"))
            .map(|m| m.permissions())
            .with_context(|| format!("{}: cannot read", dir.join("config.json").display()))?;
        io(std::fs::set_permissions(&p, perms), &p)?;
        done += shard
            .iter()
            .map(|&i| snap.tensors[i].2.len() as u64)
            .sum::<u64>();
        progress(done, total);
    }
    if n > 1 {
        let index =
            serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let p = dir.join("model.safetensors.index.json");
        write_point(&p)?;
        io(
            std::fs::write(&p, serde_json::to_string_pretty(&index)?),
            &p,
        )?;
    }
    let p = dir.join("README.md");
    write_point(&p)?;
    io(std::fs::write(&p, model_card(snap)), &p)?;
    Ok(())
}

fn model_card(snap: &Snapshot) -> String {
    let r = &snap.recipe;
    let entries = r.entries();
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut s = format!(
        "---\nlibrary_name: transformers\ntags:\n- lerpscope\n- merge\n---\n\n# A blend at α = {}\n\nThis model is `{}` at α = {}, written by lerpscope {} in {}.\n",
        r.alpha,
        get("lerpscope.formula").unwrap_or_default(),
        r.alpha,
        env!("CARGO_PKG_VERSION"),
        dtype_name(r.dtype)
    );
    let details = [
        (
            "lerpscope.recipe",
            "mergekit recipe (its weights or t scaled by α)",
        ),
        ("lerpscope.recipe.sha256", "the recipe's SHA-256"),
        ("lerpscope.method", "method"),
        (
            "lerpscope.layer_alphas",
            "α per layer (each tensor at α times its factor)",
        ),
        ("lerpscope.beta", "β"),
        ("lerpscope.c_factors", "C's factors on its weight"),
        ("lerpscope.gamma", "γ"),
        ("lerpscope.d_factors", "D's factors on its weight"),
    ];
    let listed: Vec<String> = details
        .iter()
        .filter_map(|(key, name)| {
            Some(match get(key)? {
                // A recipe's C and D move with α rather than at a weight of their own.
                "alpha" => format!("- {name}: α (it moves with α)\n"),
                v => format!("- {name}: `{v}`\n"),
            })
        })
        .collect();
    if !listed.is_empty() {
        s.push('\n');
        s.push_str(&listed.concat());
    }
    s.push_str("\n| role | source | SHA-256 of its files |\n|---|---|---|\n");
    for (role, spec, sha) in &r.sources {
        let role = match role.as_str() {
            "a" => "A (α = 0)",
            // A recipe's α = 1 is its own merge, B with its weight among the others.
            "b" if r.recipe_file.is_some() => "B",
            "b" => "B (α = 1)",
            "c" => "C",
            "d" => "D",
            _ => "base",
        };
        s.push_str(&format!(
            "| {role} | `{spec}` | `{}` |\n",
            if sha.is_empty() {
                "(the base itself)"
            } else {
                sha
            }
        ));
    }
    s.push_str("\nThe same recipe is in the safetensors header's metadata (`lerpscope.*`).\n");
    s
}

// -- GGUF ------------------------------------------------------------------------------------

/// Rewrite a safetensors file's header with its metadata keys in order. The writer takes the
/// metadata as a `HashMap`, whose order changes from run to run: without this, one export
/// twice gives two different files. The header keeps its length (the same JSON, reordered),
/// so it is rewritten in place.
fn sort_metadata(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let io = |e: std::io::Error| err!(Format, "{}: cannot write ({e})", path.display());
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io)?;
    let mut header = vec![0u8; u64::from_le_bytes(len) as usize];
    f.read_exact(&mut header).map_err(io)?;
    let mut top: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| {
            err!(
                Format,
                "{}: cannot read back its header ({e})",
                path.display()
            )
        })?;
    if let Some(m) = top.remove("__metadata__") {
        let sorted: BTreeMap<String, String> = serde_json::from_value(m).map_err(|e| {
            err!(
                Format,
                "{}: cannot read back its metadata ({e})",
                path.display()
            )
        })?;
        top.insert("__metadata__".into(), serde_json::to_value(sorted)?);
    }
    let mut sorted = serde_json::to_vec(&top)?;
    if sorted.len() > header.len() {
        return Ok(()); // not the writer's compact JSON: left as written
    }
    sorted.resize(header.len(), b' ');
    f.seek(SeekFrom::Start(8)).map_err(io)?;
    f.write_all(&sorted).map_err(io)?;
    Ok(())
}
