//! A Hugging Face sequence classifier as an attribute scorer: the probability of a chosen
//! label. BertForSequenceClassification (encoder, tanh pooler, linear head) and
//! DistilBertForSequenceClassification (encoder, ReLU pre-classifier, linear head — the usual
//! SST-2 sentiment model) through candle-transformers' encoders.

use super::Scorer;
use crate::engine::{source, tokens::load_tokenizer};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use candle_transformers::models::xlm_roberta::{
    Config as RobertaConfig, XLMRobertaForSequenceClassification,
};
use std::collections::HashMap;
use std::path::PathBuf;
use tokenizers::{Tokenizer, TruncationParams};

enum Encoder {
    /// BERT: the [CLS] state through the tanh pooler.
    Bert { model: BertModel, pooler: Linear },
    /// DistilBERT (as BERT without token types): the [CLS] state through the ReLU
    /// pre-classifier.
    DistilBert { model: BertModel, pre: Linear },
    /// RoBERTa / XLM-R: candle's model carries its own head (dense, tanh, out_proj).
    Roberta(XLMRobertaForSequenceClassification),
}

pub struct Classifier {
    encoder: Encoder,
    /// The final linear layer (BERT, DistilBERT); RoBERTa's is inside its model.
    head: Option<Linear>,
    tokenizer: Tokenizer,
    labels: Vec<String>,
    label: usize,
    name: String,
    device: Device,
    max_len: usize,
}

impl Classifier {
    /// Load `src` (directory or Hub id) and score the probability of `label` (matched without
    /// regard to case against the config's id2label).
    pub fn load(src: &str, label: &str) -> Result<Self> {
        let files = source::resolve(src)?;
        let text = std::fs::read_to_string(&files.config)
            .with_context(|| format!("{}: cannot read", files.config.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: malformed JSON", files.config.display()))?;
        let arch = value["architectures"][0].as_str().unwrap_or("").to_string();
        const SUPPORTED: [&str; 4] = [
            "BertForSequenceClassification",
            "DistilBertForSequenceClassification",
            "RobertaForSequenceClassification",
            "XLMRobertaForSequenceClassification",
        ];
        if !SUPPORTED.contains(&arch.as_str()) {
            bail!(
                "{}: architecture {arch:?} is not supported as a classifier (supported: Bert-, DistilBert-, Roberta- and XLMRobertaForSequenceClassification)",
                files.config.display()
            );
        }
        let labels = labels_of(&value)
            .with_context(|| format!("{}: malformed id2label", files.config.display()))?;
        // The label as written first; in another case only where it names one label alone.
        let exact = labels.iter().position(|l| l == label);
        let folded: Vec<usize> = (0..labels.len())
            .filter(|&i| same_label(&labels[i], label))
            .collect();
        if exact.is_none() && folded.len() > 1 {
            bail!(
                "--label {label:?} matches {} labels of {} in another case ({}); give one as written",
                folded.len(),
                files.label,
                folded.iter().map(|&i| labels[i].as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        let Some(index) = exact.or(folded.first().copied()) else {
            bail!(
                "--label {label:?} is not a label of {} (its labels: {})",
                files.label,
                labels.join(", ")
            );
        };
        // RoBERTa numbers positions from the padding index + 1 (transformers'
        // create_position_ids_from_input_ids): that many fewer are usable (2 for pad 1).
        let reserved = match arch.contains("Roberta") {
            true => value["pad_token_id"].as_u64().unwrap_or(1) + 1,
            false => 0,
        };
        let positions = value["max_position_embeddings"].as_u64().unwrap_or(512);
        if positions <= reserved {
            bail!(
                "{}: max_position_embeddings = {positions} leaves no position for a token",
                files.config.display()
            );
        }
        let device = Device::Cpu;
        // SAFETY: read-only maps of files we do not modify.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, DType::F32, &device)? };
        let invalid = || format!("{}: invalid {arch} config", files.config.display());
        let cannot = || format!("{}: cannot build the {arch} encoder", files.label);
        let (encoder, h, max_len) = match arch.as_str() {
            "BertForSequenceClassification" => {
                let mut v = value.clone();
                v["hidden_act"] = bert_activation(&v["hidden_act"], "hidden_act")
                    .with_context(|| files.config.display().to_string())?;
                let cfg: BertConfig = serde_json::from_value(v).with_context(invalid)?;
                let h = cfg.hidden_size;
                let model = BertModel::load(vb.clone(), &cfg).with_context(cannot)?;
                let pooler = candle_nn::linear(h, h, vb.pp("bert.pooler.dense"))?;
                (
                    Encoder::Bert { model, pooler },
                    h,
                    cfg.max_position_embeddings,
                )
            }
            "DistilBertForSequenceClassification" => {
                let (cfg, tensors) =
                    distilbert_as_bert(&value, &files.weights, &device).with_context(invalid)?;
                let h = cfg.hidden_size;
                let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
                let model = BertModel::load(vb.clone(), &cfg).with_context(cannot)?;
                let pre = candle_nn::linear(h, h, vb.pp("pre_classifier"))?;
                (
                    Encoder::DistilBert { model, pre },
                    h,
                    cfg.max_position_embeddings,
                )
            }
            "RobertaForSequenceClassification" | "XLMRobertaForSequenceClassification" => {
                // Newer transformers leave out fields that have their default value.
                let mut v = value.clone();
                if let Some(o) = v.as_object_mut() {
                    o.entry("position_embedding_type")
                        .or_insert("absolute".into());
                }
                let cfg: RobertaConfig = serde_json::from_value(v).with_context(invalid)?;
                let model =
                    XLMRobertaForSequenceClassification::new(labels.len(), &cfg, vb.clone())
                        .with_context(cannot)?;
                let max_len = cfg.max_position_embeddings - reserved as usize;
                (Encoder::Roberta(model), 0, max_len)
            }
            _ => unreachable!("checked above"),
        };
        let head = match encoder {
            Encoder::Roberta(_) => None,
            _ => Some(candle_nn::linear(h, labels.len(), vb.pp("classifier"))?),
        };
        // transformers cuts at the tokenizer's model_max_length where that is the smaller.
        let max_len = max_len.min(model_max_length(&files.tokenizer).unwrap_or(usize::MAX));
        Ok(Self {
            encoder,
            head,
            tokenizer: truncating(load_tokenizer(&files.tokenizer)?, max_len, &files.tokenizer)?,
            name: format!("classifier:{}", labels[index]),
            labels,
            label: index,
            device,
            max_len,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn token_ids(&self, text: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let enc = crate::engine::guard::catch("cannot tokenise for the classifier", || {
            self.tokenizer.encode(text, true).map_err(|e| {
                crate::engine::Error::Format(format!("cannot tokenise for the classifier: {e}"))
            })
        })?;
        // The tokenizer truncates before its post-processor adds [CLS]/[SEP] (`<s>`/`</s>`):
        // the cut keeps the end marker. The min is a guard, never reached.
        let n = enc.get_ids().len().min(self.max_len);
        Ok((
            enc.get_ids()[..n].to_vec(),
            enc.get_type_ids()[..n].to_vec(),
        ))
    }

    /// Class probabilities for `text`, in label-id order.
    pub fn probabilities(&self, text: &str) -> Result<Vec<f32>> {
        let (ids, types) = self.token_ids(text)?;
        let ids = Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?;
        let types = Tensor::new(types.as_slice(), &self.device)?.unsqueeze(0)?;
        let cls = |hidden: Tensor| hidden.narrow(1, 0, 1)?.squeeze(1);
        let t = ids.dim(1)?;
        let features = match &self.encoder {
            Encoder::Bert { model, pooler } => pooler
                .forward(&cls(model.forward(&ids, &types, None)?)?)?
                .tanh()?,
            Encoder::DistilBert { model, pre } => pre
                .forward(&cls(model.forward(&ids, &types.zeros_like()?, None)?)?)?
                .relu()?,
            Encoder::Roberta(model) => {
                let mask = Tensor::ones((1, t), DType::U32, &self.device)?;
                model.forward(&ids, &mask, &types.zeros_like()?)?
            }
        };
        let logits = match &self.head {
            Some(head) => head.forward(&features)?,
            None => features,
        };
        Ok(candle_nn::ops::softmax(&logits, D::Minus1)?
            .squeeze(0)?
            .to_vec1()?)
    }
}

/// The labels by id: the config's id2label, or transformers' default names (`LABEL_0`, …)
/// for its num_labels (2 where absent), which it leaves out of a saved config.
fn labels_of(config: &serde_json::Value) -> Result<Vec<String>> {
    let Some(map) = config["id2label"].as_object() else {
        let n = config["num_labels"].as_u64().unwrap_or(2);
        return Ok((0..n).map(|i| format!("LABEL_{i}")).collect());
    };
    let mut labels: Vec<(usize, String)> = map
        .iter()
        .map(|(k, v)| {
            Ok((
                k.parse::<usize>()?,
                v.as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect::<Result<_>>()?;
    labels.sort();
    if labels.iter().enumerate().any(|(i, (id, _))| *id != i) {
        bail!("its ids are not 0, 1, … in order");
    }
    Ok(labels.into_iter().map(|(_, l)| l).collect())
}

/// A label as asked for matches one of the config's regardless of case (any script's).
fn same_label(label: &str, asked: &str) -> bool {
    label == asked || label.to_lowercase() == asked.to_lowercase()
}

/// `model_max_length` in the tokenizer_config.json beside `tokenizer`, where it names a real
/// length (transformers writes a huge sentinel, int(1e30), where there is none).
fn model_max_length(tokenizer: &std::path::Path) -> Option<usize> {
    let text = std::fs::read_to_string(tokenizer.with_file_name("tokenizer_config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let n = config["model_max_length"].as_u64()?;
    (n > 0 && n < 1 << 40).then_some(n as usize)
}

/// The tokenizer cutting what it encodes to `max_len` ids, special tokens included, as
/// transformers' `truncation=True, max_length=max_len` does; padding off (a tokenizer.json
/// may carry some, which would add ids the encoder reads as text).
fn truncating(
    mut tokenizer: Tokenizer,
    max_len: usize,
    path: &std::path::Path,
) -> Result<Tokenizer> {
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot truncate at {max_len} tokens ({e})",
                path.display()
            )
        })?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

/// DistilBERT is BERT without token types under other names: its weights renamed onto
/// candle's BERT, with one token-type row of zeros (adding it changes no bit). candle's own
/// DistilBERT computes the config's "gelu" by the tanh approximation; BERT's is the exact
/// erf form, as transformers computes it.
fn distilbert_as_bert(
    config: &serde_json::Value,
    weights: &[PathBuf],
    device: &Device,
) -> Result<(BertConfig, HashMap<String, Tensor>)> {
    let field = |k: &str| {
        config[k]
            .as_u64()
            .with_context(|| format!("no whole number {k}"))
    };
    let dim = field("dim")? as usize;
    let cfg: BertConfig = serde_json::from_value(serde_json::json!({
        "vocab_size": field("vocab_size")?,
        "hidden_size": dim,
        "num_hidden_layers": field("n_layers")?,
        "num_attention_heads": field("n_heads")?,
        "intermediate_size": field("hidden_dim")?,
        "hidden_act": bert_activation(&config["activation"], "activation")?,
        "hidden_dropout_prob": 0.0,
        "max_position_embeddings": config["max_position_embeddings"].as_u64().unwrap_or(512),
        "type_vocab_size": 1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": config["pad_token_id"].as_u64().unwrap_or(0),
        "classifier_dropout": null,
        "model_type": null,
    }))?;
    let mut tensors = HashMap::new();
    for file in weights {
        for (name, t) in candle_core::safetensors::load(file, device)
            .with_context(|| format!("{}: cannot read", file.display()))?
        {
            let name = bert_name(&name).unwrap_or(name);
            tensors.insert(name, t.to_dtype(DType::F32)?);
        }
    }
    tensors.insert(
        "embeddings.token_type_embeddings.weight".into(),
        Tensor::zeros((1, dim), DType::F32, device)?,
    );
    Ok((cfg, tensors))
}

/// A transformers activation name as candle's BERT reads it: "gelu" (erf), the tanh forms
/// ("gelu_new", "gelu_pytorch_tanh") as its approximate GELU, "relu"; "gelu" where absent.
fn bert_activation(name: &serde_json::Value, key: &str) -> Result<serde_json::Value> {
    let name = name.as_str().unwrap_or("gelu");
    Ok(match name {
        "gelu" => "gelu",
        "gelu_new" | "gelu_pytorch_tanh" => "geluapproximate",
        "relu" => "relu",
        other => bail!(
            "{key} {other:?} is not supported (supported: gelu, gelu_new, gelu_pytorch_tanh, relu)"
        ),
    }
    .into())
}

/// The BERT name of a DistilBERT tensor (None for its heads, which keep theirs).
fn bert_name(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("distilbert.embeddings.") {
        return Some(format!("embeddings.{rest}"));
    }
    let rest = name.strip_prefix("distilbert.transformer.layer.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, param) = rest.rsplit_once('.')?;
    let bert = match module {
        "attention.q_lin" => "attention.self.query",
        "attention.k_lin" => "attention.self.key",
        "attention.v_lin" => "attention.self.value",
        "attention.out_lin" => "attention.output.dense",
        "sa_layer_norm" => "attention.output.LayerNorm",
        "ffn.lin1" => "intermediate.dense",
        "ffn.lin2" => "output.dense",
        "output_layer_norm" => "output.LayerNorm",
        _ => return None,
    };
    Some(format!("encoder.layer.{layer}.{bert}.{param}"))
}

impl Scorer for Classifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn score(&self, text: &str) -> Result<f64> {
        Ok(self.probabilities(text)?[self.label] as f64)
    }
    fn range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
}
