//! Random quantized GGUF files of a model shape, for benchmarks: timings and memory do not
//! depend on the values, so each block is random bytes with small finite scales. Written
//! streaming, tensor by tensor, so an 8B-parameter file never sits in memory.
//!
//! A matrix whose rows do not divide into the type's blocks (k-quants take rows of 256)
//! falls back to Q8_0 where rows divide by 32, else F32, as llama.cpp's quantizer falls back
//! per tensor; vectors (norms) are F32 near 1, as llama.cpp keeps them. The file has no
//! tokenizer (`tokenizer.ggml.model = no_vocab`, as llama.cpp reads such files): ids go in
//! directly, or a tokenizer.json is passed beside it.

use super::QType;
use crate::error::{bail, Context, Result};
use crate::export::gguf::Gguf;
use crate::formats::config::ModelConfig;
use half::f16;
use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};
use std::io::Write;
use std::path::Path;

/// What a random file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// One type for every matrix: Q4_0, Q4_K or Q8_0 (the blocks' scale fields are known).
    One(QType),
    /// llama.cpp's Q4_K_M: Q4_K, with Q6_K for the output head and for `attn_v` and
    /// `ffn_down` in the layers llama.cpp gives more bits (its `use_more_bits`).
    Q4KM,
}

/// llama.cpp's `use_more_bits(i, n)`: the first and last eighth of the layers, and every
/// third between.
fn more_bits(i: usize, n: usize) -> bool {
    // The first clause keeps i − n/8 from underflowing.
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// How one tensor (GGUF name) is stored: a quantized type, or F32.
fn stored_type(name: &str, shape: &[usize], scheme: Scheme, layers: usize) -> Option<QType> {
    let cols = *shape.last()?;
    if shape.len() != 2 {
        return None;
    }
    let want = match scheme {
        Scheme::One(t) => t,
        Scheme::Q4KM => {
            let layer = name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next()?.parse::<usize>().ok());
            let more = match layer {
                Some(i) => {
                    (name.ends_with("attn_v.weight") || name.ends_with("ffn_down.weight"))
                        && more_bits(i, layers)
                }
                None => name == "output.weight",
            };
            if more {
                QType::Q6K
            } else {
                QType::Q4K
            }
        }
    };
    [want, QType::Q8_0]
        .into_iter()
        .find(|t| cols.is_multiple_of(t.block_values()))
}

fn ggml_id(t: Option<QType>) -> u32 {
    match t {
        None => 0,
        Some(QType::Q4_0) => 2,
        Some(QType::Q8_0) => 8,
        Some(QType::Q4K) => 12,
        Some(QType::Q6K) => 14,
        Some(other) => unreachable!("{} is not written here", other.name()),
    }
}

fn byte_len(shape: &[usize], t: Option<QType>) -> usize {
    let n: usize = shape.iter().product();
    match t {
        None => 4 * n,
        Some(t) => n / t.block_values() * t.block_bytes(),
    }
}

/// Random blocks of `t`, their f16 scales (d, and Q4_K's dmin) set small and finite.
fn random_blocks(t: QType, bytes: &mut [u8], rng: &mut StdRng) {
    rng.fill_bytes(bytes);
    let (scales, d): (&[usize], f32) = match t {
        QType::Q4_0 => (&[0], 0.004),
        QType::Q8_0 => (&[0], 0.0004),
        // d·scale(≤ 63)·q(≤ 15) − dmin·m(≤ 63): values within about ±0.05.
        QType::Q4K => (&[0, 2], 0.00005),
        // d·scale(≤ 128)·(q − 32)(≤ 32): within about ±0.06.
        QType::Q6K => (&[208], 0.00001),
        other => unreachable!("{} is not written here", other.name()),
    };
    for block in bytes.chunks_mut(t.block_bytes()) {
        for &at in scales {
            let v = f16::from_f32(d * (0.5 + rng.random::<f32>()));
            block[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Write a GGUF of `config`'s tensors in `scheme` (with the per-tensor fallbacks above) to
/// `path`, llama.cpp's metadata for the family but no tokenizer (pass one beside it).
pub fn write(config: &ModelConfig, scheme: Scheme, path: &Path, seed: u64) -> Result<()> {
    if let Scheme::One(t) = scheme {
        if ![QType::Q4_0, QType::Q4K, QType::Q8_0].contains(&t) {
            bail!(
                Unsupported,
                "random {} files are not written; types: Q4_0, Q4_K, Q8_0, or Q4_K_M",
                t.name()
            );
        }
    }
    let mut w = Gguf::new();
    for (k, v) in &crate::arch::gguf::metadata(config)?.0 {
        w.value(k, v);
    }
    w.u32("general.alignment", 32);
    // No tokenizer, as llama.cpp reads a file that has none (the metadata has the vocabulary's
    // size): ids go in directly.
    w.value(
        "tokenizer.ggml.model",
        &crate::formats::gguf::Value::Str("no_vocab".into()),
    );
    let tensors: Vec<(String, Vec<usize>, Option<QType>)> = crate::arch::gguf::tensor_names(config)
        .into_iter()
        .map(|n| {
            let t = stored_type(&n.gguf, &n.hf_shape, scheme, config.layers());
            (n.gguf, n.hf_shape, t)
        })
        .collect();
    let pad = |n: usize| n.div_ceil(32) * 32 - n;
    let head = w.header(tensors.iter().map(|(name, shape, t)| {
        (
            name.as_str(),
            shape.as_slice(),
            ggml_id(*t),
            byte_len(shape, *t),
        )
    }));
    let partial = path.with_extension("gguf.partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("{}: cannot create", partial.display()))?;
    let mut f = std::io::BufWriter::with_capacity(1 << 22, file);
    let io =
        |r: std::io::Result<()>| r.with_context(|| format!("{}: cannot write", path.display()));
    io(f.write_all(&head))?;
    let mut rng = StdRng::seed_from_u64(seed);
    for (_, shape, t) in &tensors {
        let len = byte_len(shape, *t);
        let mut bytes = vec![0u8; len];
        match t {
            Some(t) => random_blocks(*t, &mut bytes, &mut rng),
            None => {
                // Norm gains near 1 (a matrix left in F32: small values).
                let (base, spread) = if shape.len() == 1 {
                    (1.0, 0.1)
                } else {
                    (0.0, 0.04)
                };
                for v in bytes.chunks_mut(4) {
                    let x: f32 = base + spread * (rng.random::<f32>() - 0.5);
                    v.copy_from_slice(&x.to_le_bytes());
                }
            }
        }
        io(f.write_all(&bytes))?;
        io(f.write_all(&vec![0u8; pad(len)]))?;
    }
    io(f.flush())?;
    io(f.get_ref().sync_all())?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("{}: cannot rename into place", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_file_reads_back_with_its_types_and_fallbacks() {
        let dir = tempfile::tempdir().unwrap();
        // Hidden 192 (not a multiple of 256), so Q4_K falls back to Q8_0.
        let config = ModelConfig::parse(
            r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 192,
                "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 6,
                "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 256,
                "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": true}"#,
        )
        .unwrap();
        for (want, matrices) in [(QType::Q4_0, QType::Q4_0), (QType::Q4K, QType::Q8_0)] {
            let path = dir.path().join(format!("{}.gguf", want.name()));
            write(&config, Scheme::One(want), &path, 1).unwrap();
            let files = crate::formats::source::resolve(&path.display().to_string()).unwrap();
            let c = crate::formats::checkpoint::Checkpoint::open(files).unwrap();
            let q = c
                .weights
                .quantized("model.layers.0.mlp.up_proj.weight")
                .unwrap()
                .unwrap();
            assert_eq!(q.qtype(), matrices);
            assert!(q
                .dequantize()
                .iter()
                .all(|x| x.is_finite() && x.abs() < 0.2));
            assert!(c.weights.quantized("model.norm.weight").unwrap().is_none());
        }
        assert!(write(
            &config,
            Scheme::One(QType::Q5K),
            &dir.path().join("x.gguf"),
            1
        )
        .is_err());
    }

    #[test]
    fn q4_k_m_gives_llama_cpps_layers_more_bits() {
        // Of 9 layers, llama.cpp's use_more_bits picks 0 (i < 9/8), 7 and 8 (i ≥ 7·9/8) and
        // 3 and 6 ((i − 1) % 3 = 2).
        let picked: Vec<usize> = (0..9).filter(|&i| more_bits(i, 9)).collect();
        assert_eq!(picked, [0, 3, 6, 7, 8]);
        let dir = tempfile::tempdir().unwrap();
        let config = ModelConfig::parse(
            r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 256,
                "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 256,
                "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": false}"#,
        )
        .unwrap();
        let path = dir.path().join("m.gguf");
        write(&config, Scheme::Q4KM, &path, 1).unwrap();
        let files = crate::formats::source::resolve(&path.display().to_string()).unwrap();
        let c = crate::formats::checkpoint::Checkpoint::open(files).unwrap();
        let t = |name: &str| c.weights.quantized(name).unwrap().unwrap();
        for (name, want) in [
            ("lm_head.weight", QType::Q6K),
            ("model.layers.1.mlp.down_proj.weight", QType::Q6K),
            ("model.layers.1.self_attn.v_proj.weight", QType::Q6K),
            ("model.layers.0.mlp.down_proj.weight", QType::Q4K),
            ("model.layers.1.mlp.up_proj.weight", QType::Q4K),
        ] {
            let q = t(name);
            assert_eq!(q.qtype(), want, "{name}");
            assert!(
                q.dequantize()
                    .iter()
                    .all(|x| x.is_finite() && x.abs() < 0.2),
                "{name}"
            );
        }
    }
}
