//! A blend as one GGUF file: the family's metadata and tensor names from its unit
//! (`arch::gguf`), llama.cpp's layouts, the tokenizer as `tokenizer.ggml.*` metadata.

use super::{io, write_point, Snapshot};
use crate::error::{bail, err, Context, Result};
use crate::formats::config::ModelConfig;
use candle_core::DType;
use std::path::Path;

/// A little-endian GGUF writer (version 3): the metadata's key/value bytes so far.
pub(crate) struct Gguf {
    pub(crate) kv: Vec<u8>,
    pub(crate) n_kv: u64,
}

impl Gguf {
    pub(crate) fn new() -> Self {
        Self {
            kv: Vec::new(),
            n_kv: 0,
        }
    }
    pub(crate) fn str_bytes(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn key(&mut self, k: &str, ty: u32) {
        Self::str_bytes(&mut self.kv, k);
        self.kv.extend(ty.to_le_bytes());
        self.n_kv += 1;
    }
    /// The file's header: magic, version, counts, the metadata, and each tensor's info
    /// (name, Hugging Face-order shape, ggml type, byte length) at offsets aligned to 32,
    /// padded to 32 itself. The tensors' data follows, each padded to 32.
    pub(crate) fn header<'a>(
        &self,
        tensors: impl ExactSizeIterator<Item = (&'a str, &'a [usize], u32, usize)>,
    ) -> Vec<u8> {
        let mut head = Vec::new();
        head.extend(b"GGUF");
        head.extend(3u32.to_le_bytes());
        head.extend((tensors.len() as u64).to_le_bytes());
        head.extend(self.n_kv.to_le_bytes());
        head.extend(&self.kv);
        let mut offset = 0u64;
        for (name, shape, ty, len) in tensors {
            Self::str_bytes(&mut head, name);
            head.extend((shape.len() as u32).to_le_bytes());
            for d in shape.iter().rev() {
                head.extend((*d as u64).to_le_bytes());
            }
            head.extend(ty.to_le_bytes());
            head.extend(offset.to_le_bytes());
            offset += (len as u64).div_ceil(32) * 32;
        }
        head.extend(std::iter::repeat_n(
            0u8,
            head.len().div_ceil(32) * 32 - head.len(),
        ));
        head
    }

    pub(crate) fn u32(&mut self, k: &str, v: u32) {
        self.key(k, 4);
        self.kv.extend(v.to_le_bytes());
    }
    fn f32(&mut self, k: &str, v: f32) {
        self.key(k, 6);
        self.kv.extend(v.to_le_bytes());
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k, 7);
        self.kv.push(v as u8);
    }
    fn string(&mut self, k: &str, v: &str) {
        self.key(k, 8);
        Self::str_bytes(&mut self.kv, v);
    }
    pub(crate) fn value(&mut self, k: &str, v: &crate::formats::gguf::Value) {
        use crate::formats::gguf::Value;
        match v {
            Value::UInt(x) if *x <= u32::MAX as u64 => self.u32(k, *x as u32),
            Value::UInt(x) => {
                self.key(k, 10);
                self.kv.extend(x.to_le_bytes());
            }
            Value::Int(x) => {
                self.key(k, 11);
                self.kv.extend(x.to_le_bytes());
            }
            Value::Float(x) => self.f32(k, *x as f32),
            Value::Bool(b) => self.bool(k, *b),
            Value::Str(s) => self.string(k, s),
            Value::Array(a) => self.array(k, a),
        }
    }
    fn array(&mut self, k: &str, a: &[crate::formats::gguf::Value]) {
        use crate::formats::gguf::Value;
        self.key(k, 9);
        let (ty, ok): (u32, fn(&Value) -> bool) = match a.first() {
            Some(Value::Str(_)) => (8, |v| matches!(v, Value::Str(_))),
            Some(Value::Float(_)) => (6, |v| matches!(v, Value::Float(_))),
            Some(Value::Int(_)) => (5, |v| matches!(v, Value::Int(_))),
            Some(Value::Bool(_)) => (7, |v| matches!(v, Value::Bool(_))),
            _ => (5, |v| matches!(v, Value::UInt(_) | Value::Int(_))),
        };
        self.kv.extend(ty.to_le_bytes());
        let items: Vec<&Value> = a.iter().filter(|v| ok(v)).collect();
        self.kv.extend((items.len() as u64).to_le_bytes());
        for v in items {
            match (ty, v) {
                (8, Value::Str(s)) => Self::str_bytes(&mut self.kv, s),
                (6, Value::Float(x)) => self.kv.extend((*x as f32).to_le_bytes()),
                (7, Value::Bool(b)) => self.kv.push(*b as u8),
                (_, Value::Int(x)) => self.kv.extend((*x as i32).to_le_bytes()),
                (_, Value::UInt(x)) => self.kv.extend((*x as i32).to_le_bytes()),
                _ => {}
            }
        }
    }
}

/// A tensor's bytes in `dtype` as f32 values.
fn f32_values(b: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

fn transpose_bytes(b: &[u8], rows: usize, cols: usize, size: usize) -> Vec<u8> {
    match size {
        2 => transpose_elements::<2>(b, rows, cols),
        _ => transpose_elements::<4>(b, rows, cols),
    }
}

fn transpose_elements<const N: usize>(b: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let elems: Vec<[u8; N]> = b
        .chunks_exact(N)
        .map(|c| c.try_into().expect("N"))
        .collect();
    crate::formats::layout::transpose(&elems, rows, cols).concat()
}

/// The tokenizer as `tokenizer.ggml.*` metadata: the GGUF source's own keys, or a byte-level
/// BPE tokenizer.json converted.
fn tokenizer_metadata(snap: &Snapshot, w: &mut Gguf) -> Result<()> {
    use crate::formats::gguf::Value;
    let src = &snap.model_files;
    if crate::formats::gguf::is_gguf(&src.config) {
        let h = crate::formats::gguf::Header::read(&src.config)?;
        for (k, v) in &h.metadata {
            if k.starts_with("tokenizer.") {
                w.value(k, v);
            }
        }
        return Ok(());
    }
    let p = src.tokenizer.display();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&src.tokenizer).with_context(|| format!("{p}: cannot read"))?,
    )?;
    let model = &json["model"];
    if model["type"] != "BPE" || !json["decoder"].to_string().contains("ByteLevel") {
        bail!(
            Unsupported,
            "{p}: --format gguf writes byte-level BPE tokenizers (GPT-2, Llama 3, SmolLM); this one is not; use --format hf"
        );
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| err!(Format, "{p}: no model.vocab"))?;
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        let i = id
            .as_u64()
            .filter(|&i| (i as usize) < tokens.len())
            .ok_or_else(|| err!(Format, "{p}: vocabulary ids are not 0..n"))?;
        tokens[i as usize] = t.clone();
    }
    let mut types = vec![1i64; tokens.len()];
    for a in json["added_tokens"].as_array().into_iter().flatten() {
        if let Some(i) = a["id"].as_u64().filter(|&i| (i as usize) < types.len()) {
            types[i as usize] = if a["special"].as_bool().unwrap_or(false) {
                3
            } else {
                4
            };
        }
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            other => other
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
        })
        .collect();
    w.string("tokenizer.ggml.model", "gpt2");
    w.string(
        "tokenizer.ggml.pre",
        pre_tokenizer_name(&json["pre_tokenizer"].to_string()),
    );
    w.array(
        "tokenizer.ggml.tokens",
        &tokens.into_iter().map(Value::Str).collect::<Vec<_>>(),
    );
    w.array(
        "tokenizer.ggml.token_type",
        &types.into_iter().map(Value::Int).collect::<Vec<_>>(),
    );
    w.array(
        "tokenizer.ggml.merges",
        &merges.into_iter().map(Value::Str).collect::<Vec<_>>(),
    );
    if let Some(b) = snap.config.bos_token_id() {
        w.u32("tokenizer.ggml.bos_token_id", b);
    }
    if let Some(e) = snap.config.eos_ids().first() {
        w.u32("tokenizer.ggml.eos_token_id", *e);
    }
    w.bool(
        "tokenizer.ggml.add_bos_token",
        json["post_processor"]
            .to_string()
            .contains("TemplateProcessing"),
    );
    let template = snap.beyond_model.chat_template.clone();
    // The model's own, as prompts read it (one that cannot be read, which only
    // --no-chat-template lets through, is left out).
    let own = || {
        crate::generate::chat::ChatTemplate::of_model(&src.tokenizer, &src.config)
            .ok()
            .flatten()
            .map(|t| t.source().to_string())
    };
    if let Some(t) = template.or_else(own) {
        w.string("tokenizer.chat_template", &t);
    }
    Ok(())
}

/// llama.cpp's name for a byte-level BPE pre-tokenizer (its `tokenizer.ggml.pre`, which
/// llama.cpp refuses to load where it does not know the name) from the tokenizer.json's
/// `pre_tokenizer`: SmolLM's splits digits one by one, Llama 3's split regex takes digits
/// three at a time, Qwen's one at a time, and the rest is GPT-2's byte-level split.
fn pre_tokenizer_name(pre_tokenizer: &str) -> &'static str {
    if pre_tokenizer.contains("Digits") {
        "smollm"
    } else if pre_tokenizer.contains("Split") && pre_tokenizer.contains("{1,3}") {
        "llama-bpe"
    } else if pre_tokenizer.contains("Split") {
        "qwen2"
    } else {
        "gpt-2"
    }
}

/// One GGUF file at `path`: llama.cpp's metadata, names and layout.
/// A tensor as written: its GGUF name, shape (candle order), ggml type and bytes.
type Stored<'a> = (String, Vec<usize>, u32, std::borrow::Cow<'a, [u8]>);

pub(super) fn write_gguf(snap: &Snapshot, path: &Path, progress: &dyn Fn(u64, u64)) -> Result<()> {
    use crate::formats::layout::{group_qkv_rows, permute_rows, Layout};
    use std::borrow::Cow;
    use std::io::Write;
    let mut w = Gguf::new();
    let metadata = crate::arch::gguf::metadata(&snap.config)?;
    for (k, v) in &metadata.0 {
        w.value(k, v);
    }
    w.string(
        "general.name",
        &format!("lerpscope blend at alpha {}", snap.recipe.alpha),
    );
    w.u32("general.alignment", 32);
    tokenizer_metadata(snap, &mut w)?;
    for (k, v) in snap.recipe.entries() {
        w.string(&k, &v);
    }
    let dtype = snap.recipe.dtype;
    let (ty, size): (u32, usize) = match dtype {
        DType::F16 => (1, 2),
        DType::BF16 => (30, 2),
        _ => (0, 4),
    };
    let names: std::collections::BTreeMap<String, crate::arch::gguf::Named> =
        crate::arch::gguf::tensor_names(&snap.config)
            .into_iter()
            .map(|n| (n.hf.clone(), n))
            .collect();
    let is_gpt2 = matches!(snap.config, ModelConfig::Gpt2(_));
    // The tensors in llama.cpp's names and layouts, each with its ggml type: vectors in F32 as
    // llama.cpp's converter keeps them (and Gemma's gains plus one, in f32), the rest in the
    // export's dtype. GPT-2's head is written out again, as the converter does.
    let mut tensors: Vec<Stored> = Vec::new();
    for (name, shape, bytes) in &snap.tensors {
        let n = names.get(name).ok_or_else(|| {
            // The names cover every tensor the config's model reads: this one it never reads
            // (a bias the config turns off, say), and it has no place in the file.
            err!(
                Unsupported,
                "--format gguf: tensor {name} has no llama.cpp name: the model its config.json describes does not use it; use --format hf"
            )
        })?;
        let (ty, data, shape) = if shape.len() == 1 || n.layout == Layout::PlusOne {
            let v = f32_values(bytes, dtype);
            let (v, stored) = n.layout.to_gguf(v, shape);
            let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (0, Cow::Owned(b), stored)
        } else {
            match n.layout {
                Layout::AsIs => (ty, Cow::Borrowed(bytes.as_slice()), shape.clone()),
                Layout::RopeInterleaved { heads } => (
                    ty,
                    permute_rows(bytes, heads, shape[0]).into(),
                    shape.clone(),
                ),
                Layout::QkvByHead { heads } => (
                    ty,
                    group_qkv_rows(bytes, heads, shape[0]).into(),
                    shape.clone(),
                ),
                Layout::Transposed => (
                    ty,
                    transpose_bytes(bytes, shape[0], shape[1], size).into(),
                    vec![shape[1], shape[0]],
                ),
                Layout::PlusOne => unreachable!("handled in f32 above"),
            }
        };
        if is_gpt2 && n.gguf == "token_embd.weight" {
            tensors.push(("output.weight".into(), shape.clone(), ty, data.clone()));
        }
        tensors.push((n.gguf.clone(), shape, ty, data));
    }
    for (name, f) in crate::arch::gguf::rope_tensors(&snap.config) {
        let b: Vec<u8> = f.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((name.into(), vec![f.len()], 0, b.into()));
    }
    let f = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, f);
    let head = w.header(
        tensors
            .iter()
            .map(|(name, shape, ty, data)| (name.as_str(), shape.as_slice(), *ty, data.len())),
    );
    let pad = |n: usize| (n.div_ceil(32) * 32) - n;
    write_point(path)?;
    io(f.write_all(&head), path)?;
    let total: u64 = tensors.iter().map(|t| t.3.len() as u64).sum();
    let mut done = 0;
    for (_, _, _, data) in &tensors {
        write_point(path)?;
        io(f.write_all(data), path)?;
        io(f.write_all(&vec![0u8; pad(data.len())]), path)?;
        done += data.len() as u64;
        progress(done, total);
    }
    write_point(path)?;
    io(f.flush(), path)?;
    io(f.get_ref().sync_all(), path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pre_tokenizer_name;

    /// Each tokenizer family gets the name llama.cpp's `llama-vocab.cpp` loads (it refuses a
    /// name it does not know, such as `gpt2` for GPT-2's split).
    #[test]
    fn pre_tokenizers_get_llama_cpps_names() {
        let byte_level = r#"{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true}"#;
        let smollm = r#"{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"ByteLevel"}]}"#;
        let llama3 = r#"{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\p{N}{1,3}"}},{"type":"ByteLevel"}]}"#;
        let qwen2 = r#"{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\p{N}"}},{"type":"ByteLevel"}]}"#;
        for (json, name) in [
            (byte_level, "gpt-2"),
            (smollm, "smollm"),
            (llama3, "llama-bpe"),
            (qwen2, "qwen2"),
        ] {
            assert_eq!(pre_tokenizer_name(json), name, "{json}");
        }
    }
}
