//! Chat templates: an instruction-tuned model is prompted through its own template (the Jinja
//! text in tokenizer_config.json's `chat_template`, or a GGUF's `tokenizer.chat_template`), so a
//! plain prompt reaches it as a user turn followed by the start of the assistant's reply.

use crate::error::{err, Result};

/// A model's chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    pub fn new(source: String, bos: String, eos: String) -> Self {
        Self { source, bos, eos }
    }

    /// The template of a Hugging Face model folder (beside its tokenizer.json: the file
    /// chat_template.jinja, which transformers writes and prefers, else tokenizer_config.json's
    /// `chat_template`) or of a GGUF file; None when it has none.
    pub fn of(tokenizer_file: &std::path::Path) -> Option<Self> {
        if crate::formats::gguf::is_gguf(tokenizer_file) {
            use crate::formats::gguf::Value;
            let h = crate::formats::gguf::Header::read(tokenizer_file).ok()?;
            let source = h.get("tokenizer.chat_template")?.as_str()?.to_string();
            // Templates write `{{ bos_token }}` themselves (Gemma, Llama 3): its text, from
            // the token list.
            let token = |key: &str| -> String {
                let id = h.get(key).and_then(Value::as_u64);
                match (h.get("tokenizer.ggml.tokens"), id) {
                    (Some(Value::Array(tokens)), Some(id)) => tokens
                        .get(id as usize)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    _ => String::new(),
                }
            };
            let (bos, eos) = (
                token("tokenizer.ggml.bos_token_id"),
                token("tokenizer.ggml.eos_token_id"),
            );
            return Some(Self::new(source, bos, eos));
        }
        let source = template_source(tokenizer_file)?;
        let v = tokenizer_config(tokenizer_file).unwrap_or_default();
        let token = |k: &str| match &v[k] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => o
                .get("content")
                .and_then(|c| c.as_str())
                .unwrap_or("")
                .to_string(),
            _ => String::new(),
        };
        Some(Self::new(source, token("bos_token"), token("eos_token")))
    }

    /// The template's Jinja text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `prompt` as one user turn, with the assistant's turn opened.
    pub fn render(&self, prompt: &str) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_function("strftime_now", |_fmt: String| String::new());
        env.add_template("chat", &self.source).map_err(|e| {
            err!(
                Format,
                "the chat template does not parse ({e}); pass --no-chat-template"
            )
        })?;
        let ctx = minijinja::context! {
            messages => vec![minijinja::context! { role => "user", content => prompt }],
            add_generation_prompt => true,
            bos_token => self.bos.clone(),
            eos_token => self.eos.clone(),
        };
        env.get_template("chat")
            .and_then(|t| t.render(ctx))
            .map_err(|e| {
                err!(
                    Format,
                    "the chat template fails on this prompt ({e}); pass --no-chat-template"
                )
            })
    }
}

/// Whether `prompt` is already in a chat format: it opens with a turn marker a template
/// writes (after a BOS written out, if any). A prompt that only mentions a marker ("what does
/// <|im_start|> mean?") is plain text, and goes through the template.
pub fn is_formatted(prompt: &str) -> bool {
    let mut rest = prompt.trim_start();
    for bos in ["<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"] {
        rest = rest.strip_prefix(bos).unwrap_or(rest).trim_start();
    }
    [
        "<|im_start|>",
        "<|start_header_id|>",
        "[INST]",
        "<start_of_turn>",
        "<|user|>",
        "<|system|>",
    ]
    .iter()
    .any(|m| rest.starts_with(m))
}

/// The Jinja text of a Hugging Face folder's chat template, beside `tokenizer_file`:
/// chat_template.jinja where there is one (transformers writes it there and reads it first),
/// else tokenizer_config.json's `chat_template` (a string, or a list of named templates whose
/// "default" is taken).
pub fn template_source(tokenizer_file: &std::path::Path) -> Option<String> {
    let jinja = tokenizer_file.with_file_name(TEMPLATE_FILE);
    if let Ok(source) = std::fs::read_to_string(jinja) {
        return Some(source);
    }
    match &tokenizer_config(tokenizer_file)?["chat_template"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(
            a.iter().find(|t| t["name"] == "default").or(a.first())?["template"]
                .as_str()?
                .to_string(),
        ),
        _ => None,
    }
}

/// The file a chat template has to itself in a Hugging Face folder.
pub const TEMPLATE_FILE: &str = "chat_template.jinja";

fn tokenizer_config(tokenizer_file: &std::path::Path) -> Option<serde_json::Value> {
    let text =
        std::fs::read_to_string(tokenizer_file.with_file_name("tokenizer_config.json")).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_chatml_template_as_one_user_turn() {
        let t = ChatTemplate::new(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}".into(),
            String::new(),
            String::new(),
        );
        assert_eq!(
            t.render("Hi there").unwrap(),
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(is_formatted("<|im_start|>user\nx"));
        assert!(!is_formatted("The food was"));
        for formatted in [
            "  <|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nhi",
            "<s>[INST] hi [/INST]",
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi",
            "<bos><start_of_turn>user\nhi<end_of_turn>\n",
            "<|system|>\nBe brief<|end|>\n<|user|>\nhi",
        ] {
            assert!(is_formatted(formatted), "{formatted:?}");
        }
        // Mentioning a marker is not using one.
        assert!(!is_formatted(r#"What does "<|im_start|>" mean in ChatML?"#));
        assert!(!is_formatted("Explain [INST] tags"));
        let bad = ChatTemplate::new("{% if %}".into(), String::new(), String::new());
        assert!(bad
            .render("x")
            .unwrap_err()
            .to_string()
            .contains("--no-chat-template"));
    }
}
