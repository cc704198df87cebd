//! GGUF files (llama.cpp's format): the header read here with every count and offset checked
//! against the file before anything is allocated, and tensors dequantised by candle into
//! Hugging Face's layout. What the metadata and names mean per family is the families' (see
//! `arch::gguf`).

use crate::error::{bail, err, Context, Result};
pub use crate::formats::layout::Layout;
use candle_core::quantized::GgmlDType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::UInt(x) => Some(x),
            Value::Int(x) if x >= 0 => Some(x as u64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(x) => Some(x),
            Value::UInt(x) => Some(x as f64),
            Value::Int(x) => Some(x as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One tensor as the file describes it.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// ggml's order: the fastest-varying dimension first.
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Byte range inside the file.
    pub range: std::ops::Range<u64>,
}

/// The parsed header of a GGUF file.
#[derive(Debug)]
pub struct Header {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
}

const MAGIC: &[u8; 4] = b"GGUF";
/// ggml tensors have at most four dimensions.
const MAX_DIMS: u64 = 4;
/// Array nesting deeper than this is not a model (and would recurse without bound).
const MAX_DEPTH: usize = 4;
/// The most entries the metadata's arrays may hold in all: a vocabulary's largest (a quarter
/// million tokens, as many merges, their types and scores) many times over. Past it the file
/// is corrupt, and its parsed values (32 bytes each) would grow to many times its size.
const MAX_ARRAY: u64 = 1 << 24;

/// A cursor over the header bytes that refuses to read past them.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
    /// Array entries read so far, against [`MAX_ARRAY`].
    entries: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            bail!(
                Format,
                "{}: truncated GGUF header: {what} needs {n} bytes at offset {}, the file has {left} left",
                self.path.display(),
                self.at
            );
        }
        let s = &self.bytes[self.at..self.at + n as usize];
        self.at += n as usize;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| err!(Format, "{}: {what} is not UTF-8", self.path.display()))
    }
    /// A count of items at least `min` bytes each, checked against the bytes left.
    fn count(&mut self, min: u64, what: &str) -> Result<u64> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(min) > left {
            bail!(
                Format,
                "{}: {what} claims {n} entries but only {left} bytes follow; the file is truncated or corrupt",
                self.path.display()
            );
        }
        Ok(n)
    }
    fn value(&mut self, kind: u32, key: &str, depth: usize) -> Result<Value> {
        let scalar = |b: &[u8]| -> u64 {
            let mut x = [0u8; 8];
            x[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(x)
        };
        Ok(match kind {
            0 => Value::UInt(self.take(1, key)?[0] as u64),
            1 => Value::Int(self.take(1, key)?[0] as i8 as i64),
            2 => Value::UInt(scalar(self.take(2, key)?)),
            3 => Value::Int(i16::from_le_bytes(self.take(2, key)?.try_into().expect("2")) as i64),
            4 => Value::UInt(self.u32(key)? as u64),
            5 => Value::Int(i32::from_le_bytes(self.take(4, key)?.try_into().expect("4")) as i64),
            // An f32 as the decimal it was written from (1e-5, not 9.999999747378752e-6), which
            // rounds back to the same f32.
            6 => Value::Float(
                f32::from_le_bytes(self.take(4, key)?.try_into().expect("4"))
                    .to_string()
                    .parse()
                    .expect("a float's own text"),
            ),
            7 => Value::Bool(self.take(1, key)?[0] != 0),
            8 => Value::Str(self.string(key)?),
            9 => {
                if depth >= MAX_DEPTH {
                    bail!(
                        Format,
                        "{}: {key}: arrays nested too deep",
                        self.path.display()
                    );
                }
                let inner = self.u32(key)?;
                let min = match inner {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    _ => 8, // strings (a length each), arrays, 64-bit values
                };
                let n = self.count(min, key)?;
                self.entries = self.entries.saturating_add(n);
                if self.entries > MAX_ARRAY {
                    bail!(
                        Format,
                        "{}: {key} is an array of {n} entries, which brings the metadata's arrays to {} in all, past the {MAX_ARRAY} lerpscope reads (the file is corrupt?)",
                        self.path.display(),
                        self.entries
                    );
                }
                let mut v = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    v.push(self.value(inner, key, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::UInt(self.u64(key)?),
            11 => Value::Int(self.u64(key)? as i64),
            12 => Value::Float(f64::from_le_bytes(
                self.take(8, key)?.try_into().expect("8"),
            )),
            other => bail!(
                Format,
                "{}: {key} has value type {other}, which GGUF does not define",
                self.path.display()
            ),
        })
    }
}

/// ggml's type ids, for the types candle dequantises.
fn ggml_dtype(t: u32) -> Option<GgmlDType> {
    Some(match t {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// ggml's name of a type id, for messages.
pub fn type_name(t: u32) -> String {
    // ggml's types that nothing here reads, by their id in ggml.h.
    const OTHERS: [(u32, &str); 16] = [
        (16, "IQ2_XXS"),
        (17, "IQ2_XS"),
        (18, "IQ3_XXS"),
        (19, "IQ1_S"),
        (20, "IQ4_NL"),
        (21, "IQ3_S"),
        (22, "IQ2_S"),
        (23, "IQ4_XS"),
        (24, "I8"),
        (25, "I16"),
        (26, "I32"),
        (27, "I64"),
        (28, "F64"),
        (29, "IQ1_M"),
        (34, "TQ1_0"),
        (35, "TQ2_0"),
    ];
    match (ggml_dtype(t), OTHERS.iter().find(|(id, _)| *id == t)) {
        (Some(d), _) => format!("{d:?}"),
        (None, Some((_, name))) => format!("{name} (ggml type {t})"),
        (None, None) => format!("ggml type {t}"),
    }
}

/// Whether `path` looks like a GGUF file (by name, or by its first four bytes).
pub fn is_gguf(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    has_gguf_magic(path)
}

/// Whether `path` is a file that starts as a GGUF file does.
pub fn has_gguf_magic(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    use std::io::Read;
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == MAGIC
}

impl Header {
    /// Read the header of `path` (the tensors' data stay on disk).
    pub fn read(path: &Path) -> Result<Self> {
        let p = path.display();
        let file = std::fs::File::open(path).with_context(|| format!("{p}: cannot open"))?;
        // SAFETY: a read-only map of a file we do not modify.
        let map =
            unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("{p}: cannot map"))?;
        let mut r = Reader {
            bytes: &map,
            at: 0,
            path,
            entries: 0,
        };
        if r.take(4, "the magic number")? != MAGIC {
            bail!(Format, "{p}: not a GGUF file (wrong magic number)");
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            bail!(
                Unsupported,
                "{p}: GGUF version {version} is not supported (2 or 3)"
            );
        }
        // A tensor info is at least a name length, a dimension count, a type and an offset.
        let n_tensors = r.count(8 + 4 + 4 + 8, "the tensor count")?;
        // A metadata entry is at least a key length and a value type.
        let n_kv = r.count(8 + 4 + 1, "the metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string("a metadata key")?;
            let kind = r.u32(&key)?;
            let value = r.value(kind, &key, 0)?;
            // As llama.cpp: which of two values a reader takes is not for a file to leave open.
            if metadata.insert(key.clone(), value).is_some() {
                bail!(Format, "{p}: metadata key {key} appears twice");
            }
        }
        // llama.cpp's LoRA files hold only the low-rank factors, named as no model's tensors.
        if metadata.get("general.type").and_then(Value::as_str) == Some("adapter") {
            bail!(
                Unsupported,
                "{p}: a llama.cpp LoRA adapter (general.type adapter), not a model; give the adapter as its PEFT folder (adapter_config.json and adapter_model.safetensors) and the model it adapts as --base"
            );
        }
        let mut infos = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string("a tensor name")?;
            let n_dims = r.u32(&name)? as u64;
            if n_dims == 0 || n_dims > MAX_DIMS {
                bail!(
                    Format,
                    "{p}: tensor {name} has {n_dims} dimensions (1 to 4 allowed)"
                );
            }
            let dims: Vec<u64> = (0..n_dims).map(|_| r.u64(&name)).collect::<Result<_>>()?;
            let ggml_type = r.u32(&name)?;
            let offset = r.u64(&name)?;
            infos.push((name, dims, ggml_type, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a <= 1 << 20 && a % 8 == 0 => a,
                _ => bail!(
                    Format,
                    "{p}: general.alignment must be a multiple of 8 from 8 to 1 MiB"
                ),
            },
        };
        let data_start = (r.at as u64).div_ceil(alignment) * alignment;
        let len = map.len() as u64;
        let mut tensors = BTreeMap::new();
        for (name, dims, ggml_type, offset) in infos {
            let numel = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    err!(
                        Format,
                        "{p}: tensor {name} has an impossible shape {dims:?}"
                    )
                })?;
            let dt = ggml_dtype(ggml_type).ok_or_else(|| {
                err!(
                    Unsupported,
                    "{p}: tensor {name} has type {}, which lerpscope cannot dequantise",
                    type_name(ggml_type)
                )
            })?;
            let block = dt.block_size() as u64;
            if dims[0] % block != 0 {
                bail!(
                    Format,
                    "{p}: tensor {name} ({dt:?}) has rows of {} values, not a multiple of its block of {block}",
                    dims[0]
                );
            }
            let bytes = (numel / block).checked_mul(dt.type_size() as u64);
            let start = data_start.checked_add(offset);
            let end = start
                .zip(bytes)
                .and_then(|(s, b)| s.checked_add(b).map(|e| s..e));
            let bytes = bytes.unwrap_or(u64::MAX);
            if offset % alignment != 0 {
                bail!(
                    Format,
                    "{p}: tensor {name} starts at data offset {offset}, not a multiple of the alignment {alignment}; the file is corrupt"
                );
            }
            let range = match end {
                Some(r) if r.end <= len => r,
                _ => bail!(
                    Format,
                    "{p}: tensor {name} lies outside the file ({bytes} bytes at data offset {offset}); the file is truncated or corrupt"
                ),
            };
            if tensors
                .insert(
                    name.clone(),
                    TensorInfo {
                        dims,
                        ggml_type,
                        range,
                    },
                )
                .is_some()
            {
                bail!(Format, "{p}: tensor {name} appears twice");
            }
        }
        // Two tensors over the same bytes are a corrupt file, read as if whole (llama.cpp
        // refuses any tensor not where the one before it ends).
        let mut spans: Vec<(&String, &std::ops::Range<u64>)> =
            tensors.iter().map(|(n, t)| (n, &t.range)).collect();
        spans.sort_by_key(|(_, r)| (r.start, r.end));
        for w in spans.windows(2) {
            let ((first, a), (second, b)) = (w[0], w[1]);
            if b.start < a.end {
                bail!(
                    Format,
                    "{p}: tensors {first} and {second} overlap in the file; it is corrupt"
                );
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
        })
    }

    /// A tensor's values as f32, in the file's layout: for the small tensors a config is
    /// read from (`rope_freqs.weight`).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let p = self.path.display();
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| err!(Format, "{p}: no tensor {name}"))?;
        let file = std::fs::File::open(&self.path).with_context(|| format!("{p}: cannot open"))?;
        // SAFETY: a read-only map of a file we do not modify.
        let map =
            unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("{p}: cannot map"))?;
        let raw = &map[info.range.start as usize..info.range.end as usize];
        let shape: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        dequantize(raw, info.ggml_type, &shape, Layout::AsIs)
            .map_err(|e| err!(Format, "{p}: tensor {name}: {e}"))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn need_u64(&self, key: &str) -> Result<u64> {
        self.get(key).and_then(Value::as_u64).ok_or_else(|| {
            err!(
                Format,
                "{}: metadata {key} is missing or not a whole number",
                self.path.display()
            )
        })
    }

    /// A count, or `default` where the key is absent. llama.cpp also takes some counts
    /// (heads, key-value heads, feed-forward width) as an array with one per layer; one
    /// whose layers all agree is that count, and a key of another type is refused rather
    /// than read as absent.
    pub(crate) fn usize_or(&self, key: &str, default: Option<u64>) -> Result<usize> {
        let p = self.path.display();
        let v = match (self.get(key), default) {
            (Some(Value::Array(items)), _) => {
                let counts: Option<Vec<u64>> = items.iter().map(Value::as_u64).collect();
                match counts.as_deref() {
                    Some([first, rest @ ..]) if rest.iter().all(|c| c == first) => *first,
                    Some([_, ..]) => bail!(
                        Unsupported,
                        "{p}: metadata {key} differs from layer to layer, which lerpscope does not support"
                    ),
                    _ => bail!(
                        Format,
                        "{p}: metadata {key} is an empty array or not of whole numbers"
                    ),
                }
            }
            (Some(x), _) => x
                .as_u64()
                .ok_or_else(|| err!(Format, "{p}: metadata {key} is not a whole number"))?,
            (None, Some(d)) => d,
            (None, None) => return self.need_u64(key).map(|v| v as usize),
        };
        if v > 1 << 40 {
            bail!(
                Format,
                "{}: metadata {key} = {v} is absurd",
                self.path.display()
            );
        }
        Ok(v as usize)
    }

    pub(crate) fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                err!(
                    Format,
                    "{}: metadata {key} is not a number",
                    self.path.display()
                )
            }),
        }
    }

    pub fn architecture(&self) -> Result<&str> {
        self.get("general.architecture")
            .and_then(Value::as_str)
            .ok_or_else(|| err!(Format, "{}: no general.architecture", self.path.display()))
    }
}

/// Dequantise `raw` (ggml type `t`) to f32 in Hugging Face's layout, whose shape (candle
/// order) is `hf_shape`.
pub fn dequantize(
    raw: &[u8],
    t: u32,
    hf_shape: &[usize],
    layout: Layout,
) -> candle_core::Result<Vec<f32>> {
    // Every layout's shape change is its own inverse.
    let stored = &layout.hf_shape(hf_shape)[..];
    let dt = ggml_dtype(t).ok_or_else(|| candle_core::Error::Msg(format!("ggml type {t}")))?;
    // candle reads blocks straight from the bytes: give it an aligned copy if they are not.
    let aligned;
    let raw = if (raw.as_ptr() as usize).is_multiple_of(8) {
        raw
    } else {
        let mut words = vec![0u64; raw.len().div_ceil(8)];
        // SAFETY: `words` has at least raw.len() bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, raw.len()) };
        bytes.copy_from_slice(raw);
        aligned = words;
        // SAFETY: the same bytes, read-only.
        unsafe { std::slice::from_raw_parts(aligned.as_ptr() as *const u8, raw.len()) }
    };
    let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
        dt,
        raw,
        stored.to_vec(),
        &candle_core::Device::Cpu,
    )?;
    let v = q
        .dequantize(&candle_core::Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(layout.to_hf(v, stored))
}

/// The ggml type's dtype as the blend holds it without loss (quantised types dequantise to f32).
pub fn native_dtype(t: u32) -> candle_core::DType {
    match t {
        1 => candle_core::DType::F16,
        30 => candle_core::DType::BF16,
        _ => candle_core::DType::F32,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// A GGUF file of metadata `kv` (each a value type and its bytes) and one-dimensional F32
    /// tensors `(name, values, data offset)` over `data` bytes of tensor data.
    pub(crate) fn file(
        kv: &[(&str, u32, Vec<u8>)],
        tensors: &[(&str, u64, u64)],
        data: usize,
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(MAGIC);
        b.extend(3u32.to_le_bytes());
        b.extend((tensors.len() as u64).to_le_bytes());
        b.extend((kv.len() as u64).to_le_bytes());
        for (k, kind, value) in kv {
            string(&mut b, k);
            b.extend(kind.to_le_bytes());
            b.extend(value);
        }
        for (name, n, offset) in tensors {
            string(&mut b, name);
            b.extend(1u32.to_le_bytes());
            b.extend(n.to_le_bytes());
            b.extend(0u32.to_le_bytes());
            b.extend(offset.to_le_bytes());
        }
        b.resize(b.len().div_ceil(32) * 32 + data, 0);
        b
    }

    pub(crate) fn read(bytes: &[u8]) -> Result<Header> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        Header::read(f.path())
    }

    pub(crate) fn u32_kv(k: &str, v: u32) -> (&str, u32, Vec<u8>) {
        (k, 4, v.to_le_bytes().to_vec())
    }

    /// An array of u32 values, as a metadata value of type 9.
    pub(crate) fn u32s(v: &[u32]) -> Vec<u8> {
        let mut a = 4u32.to_le_bytes().to_vec();
        a.extend((v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| a.extend(x.to_le_bytes()));
        a
    }

    #[test]
    fn corrupt_layouts_are_refused_by_name() {
        let two = [("x", 8, 0), ("y", 8, 32)];
        let ok = read(&file(&[u32_kv("a.b", 1)], &two, 64)).unwrap();
        assert_eq!(ok.tensors["y"].range.end - ok.tensors["x"].range.start, 64);
        let e = |bytes: Vec<u8>| read(&bytes).unwrap_err().to_string();
        let overlap = e(file(&[], &[("x", 8, 0), ("y", 8, 0)], 64));
        assert!(overlap.contains("tensors x and y overlap"), "{overlap}");
        let twice = e(file(&[u32_kv("a.b", 1), u32_kv("a.b", 2)], &two, 64));
        assert!(twice.contains("metadata key a.b appears twice"), "{twice}");
        let off = e(file(&[], &[("x", 8, 4)], 64));
        assert!(
            off.contains("offset 4, not a multiple of the alignment 32"),
            "{off}"
        );
        // Arrays of more entries than any model holds, whole in the file: refused before
        // their values are parsed (32 bytes each), one alone or two together.
        let array = |n: u64| {
            let mut a = 0u32.to_le_bytes().to_vec();
            a.extend(n.to_le_bytes());
            a.resize(a.len() + n as usize, 7);
            a
        };
        let big = e(file(&[("a.tokens", 9, array(MAX_ARRAY + 1))], &[], 0));
        assert!(
            big.contains("a.tokens is an array of 16777217 entries"),
            "{big}"
        );
        let half = MAX_ARRAY / 2;
        let two = [("a.x", 9, array(half)), ("a.y", 9, array(half + 1))];
        let big = e(file(&two, &[], 0));
        assert!(
            big.contains(
                "a.y is an array of 8388609 entries, which brings the metadata's arrays to 16777217"
            ),
            "{big}"
        );
    }

    /// A count given per layer (as llama.cpp allows for heads and key-value heads) is that
    /// count where the layers agree; a count of the wrong type is refused, not read as absent.
    #[test]
    fn counts_per_layer_are_read_where_the_layers_agree() {
        let kv = [
            ("a.same", 9, u32s(&[2, 2, 2])),
            ("a.differ", 9, u32s(&[2, 4])),
            ("a.empty", 9, u32s(&[])),
            ("a.text", 8, {
                let mut b = Vec::new();
                string(&mut b, "2");
                b
            }),
        ];
        let h = read(&file(&kv, &[], 0)).unwrap();
        assert_eq!(h.usize_or("a.same", Some(9)).unwrap(), 2);
        assert_eq!(h.usize_or("a.absent", Some(9)).unwrap(), 9);
        let e = |k: &str| h.usize_or(k, Some(9)).unwrap_err().to_string();
        assert!(e("a.differ").contains("a.differ differs from layer to layer"));
        assert!(e("a.empty").contains("a.empty is an empty array"));
        assert!(e("a.text").contains("a.text is not a whole number"));
    }
}
