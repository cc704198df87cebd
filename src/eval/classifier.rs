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
use candle_transformers::models::distilbert::{Config as DistilBertConfig, DistilBertModel};
use candle_transformers::models::xlm_roberta::{
    Config as RobertaConfig, XLMRobertaForSequenceClassification,
};
use tokenizers::Tokenizer;

enum Encoder {
    /// BERT: the [CLS] state through the tanh pooler.
    Bert { model: BertModel, pooler: Linear },
    /// DistilBERT: the [CLS] state through the ReLU pre-classifier.
    DistilBert { model: DistilBertModel, pre: Linear },
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
        let mut labels: Vec<(usize, String)> = value["id2label"]
            .as_object()
            .with_context(|| format!("{}: no id2label", files.config.display()))?
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.parse::<usize>()?,
                    v.as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect::<Result<_>>()
            .with_context(|| format!("{}: malformed id2label", files.config.display()))?;
        labels.sort();
        let labels: Vec<String> = labels.into_iter().map(|(_, l)| l).collect();
        let Some(index) = labels.iter().position(|l| l.eq_ignore_ascii_case(label)) else {
            bail!(
                "--label {label:?} is not a label of {} (its labels: {})",
                files.label,
                labels.join(", ")
            );
        };
        // RoBERTa's positions start after the padding index (1): two fewer are usable.
        let reserved = if arch.contains("Roberta") { 2 } else { 0 };
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
                let cfg: BertConfig = serde_json::from_value(value.clone()).with_context(invalid)?;
                let h = cfg.hidden_size;
                let model = BertModel::load(vb.clone(), &cfg).with_context(cannot)?;
                let pooler = candle_nn::linear(h, h, vb.pp("bert.pooler.dense"))?;
                (Encoder::Bert { model, pooler }, h, cfg.max_position_embeddings)
            }
            "DistilBertForSequenceClassification" => {
                let cfg: DistilBertConfig =
                    serde_json::from_value(value.clone()).with_context(invalid)?;
                let h = cfg.dim;
                let model = DistilBertModel::load(vb.pp("distilbert"), &cfg).with_context(cannot)?;
                let pre = candle_nn::linear(h, h, vb.pp("pre_classifier"))?;
                let max_len = value["max_position_embeddings"].as_u64().unwrap_or(512) as usize;
                (Encoder::DistilBert { model, pre }, h, max_len)
            }
            "RobertaForSequenceClassification" | "XLMRobertaForSequenceClassification" => {
                // Newer transformers leave out fields that have their default value.
                let mut v = value.clone();
                if let Some(o) = v.as_object_mut() {
                    o.entry("position_embedding_type").or_insert("absolute".into());
                }
                let cfg: RobertaConfig = serde_json::from_value(v).with_context(invalid)?;
                let model = XLMRobertaForSequenceClassification::new(labels.len(), &cfg, vb.clone())
                    .with_context(cannot)?;
                let max_len = cfg.max_position_embeddings - reserved as usize;
                (Encoder::Roberta(model), 0, max_len)
            }
            other => bail!(
                "{}: architecture {other:?} is not supported as a classifier (supported: Bert-, DistilBert-, Roberta- and XLMRobertaForSequenceClassification)",
                files.config.display()
            ),
        };
        let head = match encoder {
            Encoder::Roberta(_) => None,
            _ => Some(candle_nn::linear(h, labels.len(), vb.pp("classifier"))?),
        };
        Ok(Self {
            encoder,
            head,
            tokenizer: load_tokenizer(&files.tokenizer)?,
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
            Encoder::DistilBert { model, pre } => {
                // candle's DistilBERT masks where the mask is non-zero: nothing is padding.
                let mask = Tensor::zeros((1, 1, 1, t), DType::U8, &self.device)?;
                pre.forward(&cls(model.forward(&ids, &mask)?)?)?.relu()?
            }
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
