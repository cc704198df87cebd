//! One endpoint on disk: its config, its tokenizer, and the headers of its tensor files
//! (safetensors shards, or one GGUF file), validated up front; tensor data is read (converted,
//! dequantised) on demand from memory maps.

use crate::error::{bail, err, Context, Result};
use crate::formats::config::ModelConfig;
use crate::formats::files::ModelFiles;
use crate::weights::blend::Element;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where one tensor lives and what it is.
#[derive(Debug, Clone)]
pub struct TensorMeta {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    shard: usize,
    /// Byte range inside the shard's memory map.
    range: std::ops::Range<usize>,
    /// In a GGUF file: the ggml type, and how the stored tensor becomes this one.
    ggml: Option<(u32, crate::formats::layout::Layout)>,
}

impl TensorMeta {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_float(&self) -> bool {
        matches!(
            self.dtype,
            Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64
        )
    }
}

struct Shard {
    path: PathBuf,
    map: std::sync::Arc<Mmap>,
}

/// One model's config and tensors.
pub struct Checkpoint {
    pub files: ModelFiles,
    pub config: ModelConfig,
    pub weights: TensorFiles,
}

impl Checkpoint {
    /// Parse config.json and every shard's header. A truncated or malformed file fails here,
    /// naming the file.
    pub fn open(files: ModelFiles) -> Result<Self> {
        if let [one] = files.weights.as_slice() {
            if crate::formats::gguf::is_gguf(one) {
                let mut header = crate::formats::gguf::Header::read(one)?;
                crate::arch::gguf::normalize(&mut header)?;
                let config = crate::arch::gguf::config(&header)?;
                let weights = TensorFiles::from_gguf(&header, &config)?;
                return Ok(Self {
                    files,
                    config,
                    weights,
                });
            }
        }
        let mut config = ModelConfig::load(&files.config)?;
        let mut weights = TensorFiles::open(&files.weights)?;
        settle_a_tied_head(&mut config, &mut weights)?;
        Ok(Self {
            files,
            config,
            weights,
        })
    }

    pub fn label(&self) -> &str {
        &self.files.label
    }

    /// A tied head as a head of its own: the embeddings' tensor read again under the head's
    /// name, so that this model blends with one whose head is its own (each of its heads is
    /// its embeddings). Nothing where the head is not tied.
    pub fn untie(&mut self) {
        let ModelConfig::Decoder(c) = &mut self.config else {
            return;
        };
        if !c.tie_word_embeddings {
            return;
        }
        let n = crate::arch::tensors::Names::of(c);
        let embed = format!("{}.{}.weight", n.model, n.embed);
        if let Some(t) = self.weights.tensors.get(&embed).cloned() {
            c.tie_word_embeddings = false;
            self.weights.tensors.insert(format!("{}.weight", n.head), t);
        }
    }
}

/// A config that ties the head to the embeddings, beside a checkpoint that stores the head, as
/// transformers 5 reads it:
/// - with the embeddings too, of other values: run untied, with the checkpoint's head ("both
///   are present in the checkpoints with different values, so we will NOT tie them"), so that
///   an export's config says what was run; a head equal to the embeddings stays tied;
/// - in place of the embeddings (safetensors' `save_model` keeps one name of a shared tensor,
///   and it may be the head's): the head's values are the embeddings.
fn settle_a_tied_head(config: &mut ModelConfig, weights: &mut TensorFiles) -> Result<()> {
    let ModelConfig::Decoder(c) = config else {
        return Ok(());
    };
    if !c.tie_word_embeddings {
        return Ok(());
    }
    let n = crate::arch::tensors::Names::of(c);
    let head = format!("{}.weight", n.head);
    let embed = format!("{}.{}.weight", n.model, n.embed);
    let has = |name: &str| weights.tensors.contains_key(name);
    match (has(&head), has(&embed)) {
        (true, true) if !weights.same_values(&head, &embed)? => c.tie_word_embeddings = false,
        (true, false) => {
            let stored = weights.tensors.remove(&head).expect("present");
            weights.tensors.insert(embed, stored);
        }
        _ => {}
    }
    Ok(())
}

/// The tensors of one or more safetensors files: headers validated up front, data read (and
/// converted) on demand from memory maps.
pub struct TensorFiles {
    pub tensors: BTreeMap<String, TensorMeta>,
    shards: Vec<Shard>,
}

impl TensorFiles {
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        let mut shards = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let file = std::fs::File::open(path)
                .with_context(|| format!("{}: cannot open", path.display()))?;
            // SAFETY: the map is read-only; a file changed underneath us while loading is
            // outside what we can defend against (as with every mmap-based loader).
            let map = unsafe { Mmap::map(&file) }
                .with_context(|| format!("{}: cannot map", path.display()))?;
            let (header_len, meta) = SafeTensors::read_metadata(&map).map_err(|e| {
                err!(
                    Format,
                    "{}: not a valid safetensors file ({e}); it may be truncated or corrupt",
                    path.display()
                )
            })?;
            let base = 8 + header_len;
            for (name, info) in meta.tensors() {
                let (s, e) = info.data_offsets;
                let t = TensorMeta {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    shard: i,
                    range: base + s..base + e,
                    ggml: None,
                };
                if tensors.insert(name.clone(), t).is_some() {
                    bail!(
                        Format,
                        "{}: tensor {name} appears in more than one shard",
                        path.display()
                    );
                }
            }
            shards.push(Shard {
                path: path.clone(),
                map: std::sync::Arc::new(map),
            });
        }
        Ok(Self { tensors, shards })
    }

    /// The tensors of a GGUF file under their Hugging Face names and shapes.
    pub fn from_gguf(h: &crate::formats::gguf::Header, config: &ModelConfig) -> Result<Self> {
        let file = std::fs::File::open(&h.path)
            .with_context(|| format!("{}: cannot open", h.path.display()))?;
        // SAFETY: a read-only map of a file we do not modify.
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("{}: cannot map", h.path.display()))?;
        let mut tensors = BTreeMap::new();
        for (hf, named) in crate::arch::gguf::hf_names(h, config)? {
            let info = &h.tensors[&named.gguf];
            let dtype = match crate::formats::gguf::native_dtype(info.ggml_type) {
                candle_core::DType::F16 => Dtype::F16,
                candle_core::DType::BF16 => Dtype::BF16,
                _ => Dtype::F32,
            };
            tensors.insert(
                hf,
                TensorMeta {
                    dtype,
                    shape: named.hf_shape,
                    shard: 0,
                    range: info.range.start as usize..info.range.end as usize,
                    ggml: Some((info.ggml_type, named.layout)),
                },
            );
        }
        Ok(Self {
            tensors,
            shards: vec![Shard {
                path: h.path.clone(),
                map: std::sync::Arc::new(map),
            }],
        })
    }

    pub fn file_of(&self, name: &str) -> &Path {
        let t = &self.tensors[name];
        &self.shards[t.shard].path
    }

    pub fn meta(&self, name: &str) -> Result<&TensorMeta> {
        self.tensors.get(name).ok_or_else(|| {
            let file = self.shards.first().map(|s| s.path.display().to_string());
            err!(NotFound, "{}: no tensor {name}", file.unwrap_or_default())
        })
    }

    /// The GGUF quantization type tensor `name` could be kept in, if it is a matrix of one
    /// (a type with a kernel, in a layout whose rows can be read where they lie).
    pub fn quantized_type(&self, name: &str) -> Option<crate::quantized::QType> {
        use crate::formats::layout::Layout;
        let t = self.tensors.get(name)?;
        let (ty, layout) = t.ggml?;
        let rows_readable = matches!(
            layout,
            Layout::AsIs | Layout::RopeInterleaved { .. } | Layout::QkvByHead { .. }
        );
        (t.shape.len() == 2 && rows_readable)
            .then(|| crate::quantized::QType::from_ggml(ty))
            .flatten()
    }

    /// The quantization types of a GGUF's tensors, largest share of bytes first ("Q4_1 +
    /// Q8_0"); None where no tensor is quantized.
    pub fn quantization(&self) -> Option<String> {
        let parts: Vec<(String, usize)> = self
            .tensors
            .values()
            .filter_map(|t| {
                let (ty, _) = t.ggml.filter(|(ty, _)| ![0, 1, 30].contains(ty))?;
                let name = crate::quantized::QType::from_ggml(ty)
                    .map_or_else(|| crate::formats::gguf::type_name(ty), |q| q.name().into());
                Some((name, t.range.len()))
            })
            .collect();
        (!parts.is_empty()).then(|| crate::quantized::by_share(parts))
    }

    /// Tensor `name`'s blocks, viewed where they lie in the mapped file, if it can be kept
    /// quantized ([`TensorFiles::quantized_type`]); a truncated or misshapen tensor fails
    /// naming the file and tensor.
    pub fn quantized(&self, name: &str) -> Result<Option<crate::quantized::QMatrix>> {
        let Some(qtype) = self.quantized_type(name) else {
            return Ok(None);
        };
        let t = &self.tensors[name];
        let shard = &self.shards[t.shard];
        let fail = |e: String| err!(Format, "{}: tensor {name}: {e}", shard.path.display());
        let (rows, cols) = (t.shape[0], t.shape[1]);
        crate::quantized::QMatrix::mapped(
            qtype,
            (rows, cols),
            shard.map.clone(),
            t.range.clone(),
            t.ggml.and_then(|(_, l)| l.stored_row_order(rows)),
        )
        .map(Some)
        .map_err(fail)
    }

    /// Convert tensor `name` into `out` (its element count), refusing non-finite values.
    pub fn read_into<T: Element>(&self, name: &str, out: &mut [T]) -> Result<()> {
        let t = self.meta(name)?;
        let shard = &self.shards[t.shard];
        let bytes = &shard.map[t.range.clone()];
        let bad = match t.ggml {
            None => decode(bytes, t.dtype, out),
            Some((ty, transform)) => dequantize(bytes, ty, &t.shape, transform, out),
        }
        .with_context(|| format!("{}: tensor {name}", shard.path.display()))?;
        // The bytes are copied out: loading a pair never holds the files and the buffers at
        // once.
        super::pages::release(&shard.map, t.range.clone());
        if let Some(i) = bad {
            let flat = i;
            bail!(
                Format,
                "{}: tensor {name} holds a non-finite value (element {flat}); refusing to blend it",
                shard.path.display()
            );
        }
        Ok(())
    }

    /// Whether tensors `a` and `b` hold the same values: their bytes where they share a dtype,
    /// else their values as f32.
    pub fn same_values(&self, a: &str, b: &str) -> Result<bool> {
        let (ta, tb) = (self.meta(a)?, self.meta(b)?);
        if ta.shape != tb.shape {
            return Ok(false);
        }
        if ta.dtype != tb.dtype || ta.ggml.is_some() || tb.ggml.is_some() {
            return Ok(self.read_f32(a)? == self.read_f32(b)?);
        }
        let (sa, sb) = (&self.shards[ta.shard], &self.shards[tb.shard]);
        let same = sa.map[ta.range.clone()] == sb.map[tb.range.clone()];
        super::pages::release(&sa.map, ta.range.clone());
        super::pages::release(&sb.map, tb.range.clone());
        Ok(same)
    }

    /// Tensor `name` as f32 (tests and tools).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let mut v = vec![0f32; self.meta(name)?.numel()];
        self.read_into(name, &mut v)?;
        Ok(v)
    }
}

/// Dequantise a GGUF tensor into `out`; returns the index of the first non-finite value.
fn dequantize<T: Element>(
    bytes: &[u8],
    ty: u32,
    shape: &[usize],
    transform: crate::formats::layout::Layout,
    out: &mut [T],
) -> Result<Option<usize>> {
    let v = crate::formats::gguf::dequantize(bytes, ty, shape, transform).map_err(|e| {
        err!(
            Format,
            "cannot dequantise {} data ({e})",
            crate::formats::gguf::type_name(ty)
        )
    })?;
    if v.len() != out.len() {
        bail!(Format, "holds {} values, expected {}", v.len(), out.len());
    }
    let mut first_bad = None;
    for (i, (o, x)) in out.iter_mut().zip(v).enumerate() {
        if !x.is_finite() && first_bad.is_none() {
            first_bad = Some(i);
        }
        *o = T::from_f32(x);
    }
    Ok(first_bad)
}

/// Decode little-endian `bytes` of `dtype` into `out`; returns the index of the first
/// non-finite value, if any.
fn decode<T: Element>(bytes: &[u8], dtype: Dtype, out: &mut [T]) -> Result<Option<usize>> {
    let size = match dtype {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        Dtype::F64 => 8,
        other => bail!(
            Unsupported,
            "dtype {other:?} cannot be blended (expected F32, F16, BF16 or F64)"
        ),
    };
    if bytes.len() != out.len() * size {
        bail!(
            Format,
            "holds {} bytes, expected {} for its shape",
            bytes.len(),
            out.len() * size
        );
    }
    let mut first_bad = None;
    let mut put = |i: usize, x: f32, o: &mut T| {
        if !x.is_finite() && first_bad.is_none() {
            first_bad = Some(i);
        }
        *o = T::from_f32(x);
    };
    match dtype {
        Dtype::F32 => {
            for (i, (c, o)) in bytes.chunks_exact(4).zip(out.iter_mut()).enumerate() {
                put(i, f32::from_le_bytes([c[0], c[1], c[2], c[3]]), o);
            }
        }
        Dtype::F16 => {
            for (i, (c, o)) in bytes.chunks_exact(2).zip(out.iter_mut()).enumerate() {
                put(i, half::f16::from_le_bytes([c[0], c[1]]).to_f32(), o);
            }
        }
        Dtype::BF16 => {
            for (i, (c, o)) in bytes.chunks_exact(2).zip(out.iter_mut()).enumerate() {
                put(i, half::bf16::from_le_bytes([c[0], c[1]]).to_f32(), o);
            }
        }
        _ => {
            for (i, (c, o)) in bytes.chunks_exact(8).zip(out.iter_mut()).enumerate() {
                let x = f64::from_le_bytes(c.try_into().expect("8 bytes"));
                put(i, x as f32, o);
            }
        }
    }
    Ok(first_bad)
}

/// The candle dtype that holds a safetensors dtype without loss, for the float types we blend.
pub fn native_dtype(d: Dtype) -> Option<candle_core::DType> {
    match d {
        Dtype::F32 | Dtype::F64 => Some(candle_core::DType::F32),
        Dtype::F16 => Some(candle_core::DType::F16),
        Dtype::BF16 => Some(candle_core::DType::BF16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// A decoder config that ties its head, and a checkpoint of `tensors` (each
    /// `(name, dtype, bytes)`, 2 × 2).
    fn tied_beside(tensors: &[(&str, (Dtype, Vec<u8>))]) -> (ModelConfig, TensorFiles) {
        let config = ModelConfig::parse(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":2,"intermediate_size":4,
            "num_hidden_layers":1,"num_attention_heads":1,"vocab_size":2,
            "tie_word_embeddings":true}"#,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let views = tensors
            .iter()
            .map(|(n, (d, b))| (*n, TensorView::new(*d, vec![2, 2], b).unwrap()));
        safetensors::serialize_to_file(views, None, &path).unwrap();
        let files = TensorFiles::open(&[path]).unwrap();
        (config, files)
    }

    fn f32s(v: [f32; 4]) -> (Dtype, Vec<u8>) {
        (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// Whether the config still ties, and the checkpoint after.
    fn settled(tensors: &[(&str, (Dtype, Vec<u8>))]) -> (bool, TensorFiles) {
        let (mut config, mut files) = tied_beside(tensors);
        settle_a_tied_head(&mut config, &mut files).unwrap();
        match config {
            ModelConfig::Decoder(c) => (c.tie_word_embeddings, files),
            _ => unreachable!(),
        }
    }

    fn ties(head: (Dtype, Vec<u8>), embed: (Dtype, Vec<u8>)) -> bool {
        settled(&[
            ("lm_head.weight", head),
            ("model.embed_tokens.weight", embed),
        ])
        .0
    }

    /// As transformers 5 decides: a head of other values runs untied; one equal to the
    /// embeddings, in the same dtype or another, stays tied.
    #[test]
    fn a_tied_config_unties_only_a_head_of_other_values() {
        let e = [0.5, -1.0, 2.0, 0.25];
        assert!(!ties(f32s([0.5, -1.0, 2.0, 0.5]), f32s(e)));
        assert!(ties(f32s(e), f32s(e)));
        let bf16: Vec<u8> = e
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect();
        assert!(ties((Dtype::BF16, bf16), f32s(e)));
    }

    /// A tied checkpoint that stores the shared tensor under the head's name only: its values
    /// are the embeddings.
    #[test]
    fn a_tied_head_stored_alone_is_read_as_the_embeddings() {
        let e = [0.5, -1.0, 2.0, 0.25];
        let (tied, files) = settled(&[("lm_head.weight", f32s(e))]);
        assert!(tied);
        assert!(!files.tensors.contains_key("lm_head.weight"));
        assert_eq!(files.read_f32("model.embed_tokens.weight").unwrap(), e);
    }
}
