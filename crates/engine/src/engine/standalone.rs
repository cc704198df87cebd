//! One model on its own, with no blending.

use super::text_spec::eos_ids;
use crate::error::{bail, Result};
use crate::formats::config::ModelConfig;
use crate::formats::source;
use crate::generate::{Generator, TextSpec};
use crate::model::Model;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

/// One model loaded on its own through candle's safetensors loader, with no blending: the
/// independent path that tests hold the blended engine to at α = 0 and α = 1.
pub struct Standalone {
    pub model: Model,
    text: TextSpec,
}

impl Standalone {
    pub fn load(spec: &str, dtype: DType, device: &Device) -> Result<Self> {
        let path = std::path::Path::new(spec);
        if crate::formats::gguf::is_gguf(path) {
            bail!(
                Invalid,
                "{spec}: a GGUF file cannot be a judge; give a Hugging Face model (a directory \
                 with config.json and safetensors, or a Hub id)"
            );
        }
        if source::is_adapter_dir(path) {
            bail!(
                Invalid,
                "{spec}: an adapter cannot be a judge on its own; give a full Hugging Face model \
                 (or judge with an endpoint: a or b)"
            );
        }
        let files = source::resolve(spec)?;
        let config = ModelConfig::load(&files.config)?;
        let tokenizer = crate::formats::tokenizer::load_tokenizer(&files.tokenizer)?;
        // SAFETY: read-only maps of files we do not modify.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, dtype, device)? };
        let model = Model::load(&config, vb)?;
        Ok(Self {
            text: TextSpec {
                eos: eos_ids(&config, &tokenizer, &files.config),
                max_positions: config.max_positions(),
                memory: crate::generate::RowMemory::of(
                    &config,
                    crate::model::compute_dtype(dtype, device),
                ),
                tokenizer,
                stop: Vec::new(),
                chat: None,
            },
            model,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.text.tokenizer
    }

    pub fn generator(&self) -> Generator<'_> {
        self.text.generator(&self.model)
    }
}
