//! Chat templates: an instruction-tuned model is prompted through its own template (the Jinja
//! text in tokenizer_config.json's `chat_template`, or a GGUF's `tokenizer.chat_template`), so a
//! plain prompt reaches it as a user turn followed by the start of the assistant's reply.

use crate::error::{err, Result};
use minijinja::Value;
use std::path::Path;

/// A model's chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    /// Where it was read (a file, or a GGUF's key), for messages.
    origin: String,
    /// The special tokens' texts a template may write (`bos_token`, `eos_token`, `pad_token`,
    /// …), as transformers passes them.
    tokens: Vec<(String, Value)>,
    /// How its prompts open, found by rendering one the first time it is asked (a template
    /// read but not used, under `--no-chat-template`, is never run).
    opening: std::sync::OnceLock<Opening>,
}

/// How a template's rendered prompts open.
#[derive(Debug, Clone, Default)]
struct Opening {
    /// The turn markers a rendered prompt opens with: a prompt that opens with one of them is
    /// already in this template's format.
    markers: Vec<String>,
    /// The BOS text the template writes first, if it writes one.
    bos: Option<String>,
}

/// Markers that open a turn, by chat format: ChatML, Llama 3, Mistral, Gemma, Phi-3/Zephyr.
const TURN_MARKERS: [&[&str]; 5] = [
    &["<|im_start|>"],
    &["<|start_header_id|>"],
    &["[INST]"],
    &["<start_of_turn>"],
    &["<|user|>", "<|system|>"],
];

/// BOS texts a formatted prompt may open with before its first marker.
const BOS_TEXTS: [&str; 4] = ["<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"];

/// Steps a template may take to render one prompt: real templates take thousands; a runaway
/// one stops with an error instead of holding the load.
const TEMPLATE_FUEL: u64 = 5_000_000;

impl ChatTemplate {
    pub fn new(source: String, bos: String, eos: String) -> Self {
        Self::with_tokens(
            source,
            "the chat template".into(),
            vec![
                ("bos_token".into(), bos.into()),
                ("eos_token".into(), eos.into()),
            ],
        )
    }

    fn with_tokens(source: String, origin: String, tokens: Vec<(String, Value)>) -> Self {
        // Jinja2 reads a template's line ends as "\n" (a file saved on Windows renders the same).
        let source = source.replace("\r\n", "\n");
        Self {
            source,
            origin,
            tokens,
            opening: std::sync::OnceLock::new(),
        }
    }

    fn opening(&self) -> &Opening {
        self.opening.get_or_init(|| self.find_opening())
    }

    /// The markers of the formats it writes: seen in a prompt it renders (a template may build
    /// them from parts, as `'<|' + role + '|>'`) or named in its text (a system turn's), and
    /// the tag its rendered prompt opens with (`[SYSTEM_PROMPT]`, `<|start_of_role|>`, …),
    /// also with its own BOS text before it, and that BOS text alone where the template
    /// writes it first.
    fn find_opening(&self) -> Opening {
        let rendered = self.render("\u{1}").unwrap_or_default();
        let seen = format!("{rendered}{}", self.source);
        let mut markers: Vec<String> = TURN_MARKERS
            .into_iter()
            .filter(|format| format.iter().any(|m| seen.contains(m)))
            .flatten()
            .map(|m| m.to_string())
            .collect();
        let bos = self.token("bos_token").filter(|b| !b.is_empty());
        let mut rest = rendered.trim_start();
        for b in BOS_TEXTS.iter().copied().chain(bos.as_deref()) {
            rest = rest.strip_prefix(b).unwrap_or(rest).trim_start();
        }
        let close = match rest.chars().next() {
            Some('<') => Some('>'),
            Some('[') => Some(']'),
            _ => None,
        };
        let opening = close
            .and_then(|c| rest.find(c).map(|i| &rest[..i + c.len_utf8()]))
            .filter(|m| m.chars().count() <= 48 && !m.contains('\u{1}'));
        if let Some(m) = opening {
            if !markers.iter().any(|x| x == m) {
                markers.push(m.to_string());
            }
        }
        let written = BOS_TEXTS
            .iter()
            .map(|b| b.to_string())
            .chain(bos.clone())
            .find(|b| rendered.trim_start().starts_with(b.as_str()));
        if let Some(b) = bos.filter(|b| !BOS_TEXTS.contains(&b.as_str())) {
            let with_bos: Vec<String> = markers.iter().map(|m| format!("{b}{m}")).collect();
            markers.extend(with_bos);
        }
        // A prompt that writes out the BOS this template opens with is raw model text, even
        // where plain text follows it (a system prompt DeepSeek-R1's template writes bare).
        if let Some(b) = written.as_ref().filter(|b| !markers.contains(b)) {
            markers.push(b.clone());
        }
        Opening {
            markers,
            bos: written,
        }
    }

    /// The text of a special token the template is given.
    fn token(&self, name: &str) -> Option<String> {
        self.tokens
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_str().map(str::to_string))
    }

    /// The template of a model: of its tokenizer file (a Hugging Face folder's, beside
    /// tokenizer.json, or a GGUF's), else of its model file (a GGUF whose tokenizer is given
    /// apart, by `--tokenizer`).
    pub fn of_model(tokenizer_file: &Path, model_file: &Path) -> Result<Option<Self>> {
        match Self::of(tokenizer_file)? {
            Some(t) => Ok(Some(t)),
            None if model_file != tokenizer_file => Self::of(model_file),
            None => Ok(None),
        }
    }

    /// The template of a Hugging Face model folder (beside its tokenizer.json: the file
    /// chat_template.jinja, which transformers writes and prefers, else tokenizer_config.json's
    /// `chat_template`) or of a GGUF file; None when it has none.
    pub fn of(tokenizer_file: &Path) -> Result<Option<Self>> {
        if crate::formats::gguf::is_gguf(tokenizer_file) {
            use crate::formats::gguf::Value as G;
            let Ok(h) = crate::formats::gguf::Header::read(tokenizer_file) else {
                return Ok(None);
            };
            let Some(source) = h.get("tokenizer.chat_template").and_then(G::as_str) else {
                return Ok(None);
            };
            let origin = format!("{} (tokenizer.chat_template)", tokenizer_file.display());
            let tokens = special_tokens(tokenizer_file);
            return Ok(Some(Self::with_tokens(source.to_string(), origin, tokens)));
        }
        let Some((source, origin)) = template_source(tokenizer_file)? else {
            return Ok(None);
        };
        Ok(Some(Self::with_tokens(
            source,
            origin,
            special_tokens(tokenizer_file),
        )))
    }

    /// The same template, with the special tokens of the model at `tokenizer_file` where its
    /// own folder names none (a template saved beside an adapter, whose base holds them).
    pub fn with_tokens_of(self, tokenizer_file: &Path) -> Self {
        let mut tokens = self.tokens;
        for (k, v) in special_tokens(tokenizer_file) {
            match tokens.iter_mut().find(|(name, _)| *name == k) {
                Some((_, old)) if old.as_str().is_some_and(str::is_empty) => *old = v,
                Some(_) => {}
                None => tokens.push((k, v)),
            }
        }
        Self::with_tokens(self.source, self.origin, tokens)
    }

    /// The template's Jinja text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The turn markers its prompts open with.
    pub fn markers(&self) -> &[String] {
        &self.opening().markers
    }

    /// Whether `prompt` is already in this template's format: it opens with a turn marker the
    /// template writes (after a BOS written out, if any), or with the BOS text the template
    /// writes first. A prompt that only mentions a marker ("what does <|im_start|> mean?"),
    /// or opens with another format's, is plain text.
    pub fn formats(&self, prompt: &str) -> bool {
        is_formatted(prompt, self.markers())
    }

    /// A prompt already in this format as the template would have written it: with the BOS
    /// text the template writes first where the prompt leaves it out, less the indentation
    /// before its first marker (pasted text's, not the format's).
    pub fn as_written(&self, prompt: &str) -> String {
        let text = prompt.trim_start();
        match &self.opening().bos {
            Some(b) if !text.starts_with(b.as_str()) => format!("{b}{text}"),
            _ => text.to_string(),
        }
    }

    /// `prompt` as one user turn, with the assistant's turn opened, rendered as transformers'
    /// `apply_chat_template` renders it: Jinja2's block trimming, Python's string and dict
    /// methods, `tojson` as Python's `json.dumps`, `strftime_now`, `raise_exception`, no tools
    /// and no documents.
    pub fn render(&self, prompt: &str) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(|state, value, method, args| {
            // Python strips its own whitespace, which counts U+001C…U+001F as well.
            match (value.as_str(), method, args) {
                (Some(s), "strip", []) => Ok(Value::from(s.trim_matches(python_space))),
                (Some(s), "lstrip", []) => Ok(Value::from(s.trim_start_matches(python_space))),
                (Some(s), "rstrip", []) => Ok(Value::from(s.trim_end_matches(python_space))),
                _ => {
                    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
                }
            }
        });
        env.add_filter("trim", |s: String, chars: Option<String>| match chars {
            Some(chars) => s.trim_matches(|c| chars.contains(c)).to_string(),
            None => s.trim_matches(python_space).to_string(),
        });
        // Jinja2's `sequence` is anything with a length and items: strings and dicts too.
        env.add_test("sequence", |v: Value| {
            use minijinja::value::ValueKind;
            matches!(
                v.kind(),
                ValueKind::Seq | ValueKind::Map | ValueKind::String
            )
        });
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_function("strftime_now", |format: String| {
            strftime(&format, std::time::SystemTime::now())
        });
        env.add_filter("tojson", tojson);
        let origin = &self.origin;
        env.add_template("chat", &self.source).map_err(|e| {
            err!(
                Format,
                "{origin}: the chat template does not parse ({e}); pass --no-chat-template"
            )
        })?;
        let mut ctx: Vec<(String, Value)> = self.tokens.clone();
        ctx.extend([
            (
                "messages".to_string(),
                Value::from_serialize(vec![
                    minijinja::context! { role => "user", content => prompt },
                ]),
            ),
            ("add_generation_prompt".to_string(), true.into()),
            ("tools".to_string(), Value::from(())),
            ("documents".to_string(), Value::from(())),
        ]);
        let ctx: Value = ctx.into_iter().collect();
        env.get_template("chat")
            .and_then(|t| t.render(ctx))
            .map_err(|e| {
                err!(
                    Format,
                    "{origin}: the chat template fails on this prompt ({e}); pass --no-chat-template"
                )
            })
    }
}

/// Whether `prompt` opens with one of `markers` (after a BOS written out, if any).
pub fn is_formatted(prompt: &str, markers: &[impl AsRef<str>]) -> bool {
    let whole = prompt.trim_start();
    let mut rest = whole;
    for bos in BOS_TEXTS {
        rest = rest.strip_prefix(bos).unwrap_or(rest).trim_start();
    }
    markers
        .iter()
        .any(|m| rest.starts_with(m.as_ref()) || whole.starts_with(m.as_ref()))
}

/// The special tokens' texts of the model at `tokenizer_file`, as transformers gives them to a
/// template: special_tokens_map.json's and tokenizer_config.json's `*_token` entries (strings
/// or added-token objects) and `additional_special_tokens`, the map's first where both name
/// one; a GGUF's from its token list. A file that cannot be read gives none.
fn special_tokens(tokenizer_file: &Path) -> Vec<(String, Value)> {
    if crate::formats::gguf::is_gguf(tokenizer_file) {
        use crate::formats::gguf::Value as G;
        let Ok(h) = crate::formats::gguf::Header::read(tokenizer_file) else {
            return Vec::new();
        };
        let text = |key: &str| -> Option<String> {
            let id = h.get(key).and_then(G::as_u64)?;
            match h.get("tokenizer.ggml.tokens") {
                Some(G::Array(tokens)) => Some(tokens.get(id as usize)?.as_str()?.to_string()),
                _ => None,
            }
        };
        return [
            ("bos_token", "tokenizer.ggml.bos_token_id"),
            ("eos_token", "tokenizer.ggml.eos_token_id"),
            ("unk_token", "tokenizer.ggml.unknown_token_id"),
            ("pad_token", "tokenizer.ggml.padding_token_id"),
        ]
        .into_iter()
        .map(|(name, key)| (name.to_string(), text(key).unwrap_or_default().into()))
        .collect();
    }
    let content = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => Some(o.get("content")?.as_str()?.to_string()),
        _ => None,
    };
    let read = |name: &str| -> serde_json::Map<String, serde_json::Value> {
        std::fs::read_to_string(tokenizer_file.with_file_name(name))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default()
    };
    let (config, map) = (
        read("tokenizer_config.json"),
        read("special_tokens_map.json"),
    );
    let mut tokens: Vec<(String, Value)> = Vec::new();
    // special_tokens_map.json's win, as transformers loads them over the config's.
    for k in ["bos_token", "eos_token"] {
        let text = map
            .get(k)
            .and_then(content)
            .or_else(|| config.get(k).and_then(content));
        tokens.push((k.to_string(), text.unwrap_or_default().into()));
    }
    for (k, v) in map.iter().chain(&config) {
        if k.ends_with("_token") && !tokens.iter().any(|(t, _)| t == k) {
            if let Some(text) = content(v) {
                tokens.push((k.clone(), text.into()));
            }
        }
    }
    let additional = map
        .get("additional_special_tokens")
        .or(config.get("additional_special_tokens"));
    if let Some(list) = additional.and_then(|v| v.as_array()) {
        let texts: Vec<String> = list.iter().filter_map(content).collect();
        tokens.push(("additional_special_tokens".into(), texts.into()));
    }
    tokens
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=…, separators=…, sort_keys=…)`, as
/// transformers' `tojson`: `", "` and `": "` between items without an indent, `","` and
/// `": "` with one, keys in the order the value holds them unless sorted.
fn tojson(
    value: Value,
    indent: Option<usize>,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<String, minijinja::Error> {
    let indent = kwargs.get::<Option<usize>>("indent")?.or(indent);
    let separators = kwargs.get::<Option<Vec<String>>>("separators")?;
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let (item, key) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let style = JsonStyle {
        indent,
        item,
        key,
        sort_keys,
        ascii,
    };
    let mut out = String::new();
    write_python_json(&value, &style, 0, &mut out)?;
    Ok(out)
}

struct JsonStyle {
    indent: Option<usize>,
    item: String,
    key: String,
    sort_keys: bool,
    /// Characters beyond ASCII written as `\uXXXX` escapes (`ensure_ascii=True`).
    ascii: bool,
}

impl JsonStyle {
    fn quoted(&self, s: &str) -> String {
        let json = serde_json::Value::String(s.to_string()).to_string();
        if !self.ascii {
            return json;
        }
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }
}

fn write_python_json(
    v: &Value,
    style: &JsonStyle,
    depth: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    use minijinja::value::ValueKind;
    let (open, close, is_map) = match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => ('[', ']', false),
        ValueKind::Map => ('{', '}', true),
        ValueKind::Undefined | ValueKind::None => {
            out.push_str("null");
            return Ok(());
        }
        ValueKind::String => {
            out.push_str(&style.quoted(v.as_str().unwrap_or_default()));
            return Ok(());
        }
        _ => {
            let leaf = serde_json::to_string(v).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })?;
            out.push_str(&leaf);
            return Ok(());
        }
    };
    let mut items: Vec<Value> = v.try_iter()?.collect();
    if is_map && style.sort_keys {
        items.sort_by_key(|k| k.to_string());
    }
    out.push(open);
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = style.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&style.item);
        }
        newline(out, depth + 1);
        if is_map {
            out.push_str(&style.quoted(&x.to_string()));
            out.push_str(&style.key);
            write_python_json(&v.get_item(x)?, style, depth + 1, out)?;
        } else {
            write_python_json(x, style, depth + 1, out)?;
        }
    }
    if !items.is_empty() {
        newline(out, depth);
    }
    out.push(close);
    Ok(())
}

/// Whitespace as Python's `str.isspace` has it: Unicode's, and the four separators
/// U+001C…U+001F.
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `datetime.now().strftime(format)` for the codes chat templates use (Llama 3's
/// "Today Date: %d %b %Y"), in UTC.
fn strftime(format: &str, now: std::time::SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday.
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // glibc's `-` flag: no padding (`%-d`, as Llama 3.1's date is sometimes written).
        let mut code = chars.next();
        let padded = code != Some('-');
        if !padded {
            code = chars.next();
        }
        let num = |out: &mut String, n: i64, width: usize| match padded {
            true => out.push_str(&format!("{n:0width$}")),
            false => out.push_str(&n.to_string()),
        };
        let hour = rem / 3600;
        match code {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => num(&mut out, year.rem_euclid(100), 2),
            Some('m') => num(&mut out, month, 2),
            Some('d') => num(&mut out, day, 2),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('j') => num(&mut out, doy_of_year(year, month, day), 3),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('H') => num(&mut out, hour, 2),
            Some('I') => num(&mut out, (hour + 11) % 12 + 1, 2),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('M') => num(&mut out, rem / 60 % 60, 2),
            Some('S') => num(&mut out, rem % 60, 2),
            Some('%') => out.push('%'),
            // The composite codes, as glibc spells them out in the C locale.
            Some(c @ ('D' | 'x' | 'F' | 'X' | 'T' | 'R' | 'r' | 'c')) => {
                let spelled = match c {
                    'D' | 'x' => "%m/%d/%y",
                    'F' => "%Y-%m-%d",
                    'X' | 'T' => "%H:%M:%S",
                    'R' => "%H:%M",
                    'r' => "%I:%M:%S %p",
                    _ => "%a %b %e %H:%M:%S %Y",
                };
                out.push_str(&strftime(spelled, now));
            }
            Some('h') => out.push_str(&month_name[..3]),
            Some('C') => num(&mut out, year.div_euclid(100), 2),
            Some('u') => out.push_str(&(weekday + 1).to_string()),
            Some('w') => out.push_str(&((weekday + 1) % 7).to_string()),
            Some('k') => out.push_str(&format!("{hour:>2}")),
            Some('l') => out.push_str(&format!("{:>2}", (hour + 11) % 12 + 1)),
            // Weeks of the year, from its first Sunday (U) or Monday (W).
            Some(c @ ('U' | 'W')) => {
                let yday = doy_of_year(year, month, day) - 1;
                let wday = match c {
                    'U' => (weekday as i64 + 1) % 7,
                    _ => weekday as i64,
                };
                num(&mut out, (yday + 7 - wday) / 7, 2);
            }
            Some(c @ ('G' | 'g' | 'V')) => {
                let (iso_year, week) = iso_week(year, doy_of_year(year, month, day), weekday);
                match c {
                    'G' => out.push_str(&iso_year.to_string()),
                    'g' => num(&mut out, iso_year.rem_euclid(100), 2),
                    _ => num(&mut out, week, 2),
                }
            }
            Some('z') => out.push_str("+0000"),
            Some('Z') => out.push_str("UTC"),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The ISO 8601 year and week of the `doy`th day (from 1) of `year`, a `weekday` (Monday 0).
fn iso_week(year: i64, doy: i64, weekday: usize) -> (i64, i64) {
    let weeks_in = |y: i64| {
        let p =
            |y: i64| (y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400)).rem_euclid(7);
        52 + i64::from(p(y) == 4 || p(y - 1) == 3)
    };
    let week = (doy - (weekday as i64 + 1) + 10) / 7;
    if week < 1 {
        (year - 1, weeks_in(year - 1))
    } else if week > weeks_in(year) {
        (year + 1, 1)
    } else {
        (year, week)
    }
}

/// The day of the year (1 on January 1st).
fn doy_of_year(year: i64, month: i64, day: i64) -> i64 {
    const BEFORE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    BEFORE[(month - 1) as usize] + day + i64::from(leap && month > 2)
}

/// The Jinja text of a Hugging Face folder's chat template, beside `tokenizer_file`, and the
/// file it is read from: chat_template.jinja where there is one (transformers writes it there
/// and reads it first), else tokenizer_config.json's `chat_template` (a string, or a list of
/// named templates whose "default" is taken).
fn template_source(tokenizer_file: &Path) -> Result<Option<(String, String)>> {
    let jinja = tokenizer_file.with_file_name(TEMPLATE_FILE);
    if let Ok(source) = std::fs::read_to_string(&jinja) {
        return Ok(Some((source, jinja.display().to_string())));
    }
    let Some(config) = tokenizer_config(tokenizer_file)? else {
        return Ok(None);
    };
    let origin = tokenizer_file
        .with_file_name("tokenizer_config.json")
        .display()
        .to_string();
    let source = match &config["chat_template"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => a
            .iter()
            .find(|t| t["name"] == "default")
            .or(a.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    };
    Ok(source.map(|s| (s, origin)))
}

/// The file a chat template has to itself in a Hugging Face folder.
pub const TEMPLATE_FILE: &str = "chat_template.jinja";

/// tokenizer_config.json beside `tokenizer_file`, if there is one. One that does not parse is
/// refused where it holds a chat template (the prompt would silently lose it), and read as
/// absent otherwise.
fn tokenizer_config(tokenizer_file: &Path) -> Result<Option<serde_json::Value>> {
    let path = tokenizer_file.with_file_name("tokenizer_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    match serde_json::from_str(&text) {
        Ok(v) => Ok(Some(v)),
        Err(e) if text.contains("chat_template") => Err(err!(
            Format,
            "{}: not valid JSON ({e}), and its chat template cannot be read; fix the file or pass --no-chat-template",
            path.display()
        )),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn template(source: &str) -> ChatTemplate {
        ChatTemplate::new(source.into(), "<s>".into(), "</s>".into())
    }

    #[test]
    fn renders_a_chatml_template_as_one_user_turn() {
        let t = template(CHATML);
        assert_eq!(
            t.render("Hi there").unwrap(),
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(t.formats("<|im_start|>user\nx"));
        assert!(t.formats("  <|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nhi"));
        assert!(!t.formats("The food was"));
        // Mentioning a marker is not using one, and another format's marker is plain text.
        assert!(!t.formats(r#"What does "<|im_start|>" mean in ChatML?"#));
        assert!(!t.formats("[INST] is a tag in some prompt formats. What does it do?"));
        let bad = template("{% if %}");
        assert!(bad
            .render("x")
            .unwrap_err()
            .to_string()
            .contains("--no-chat-template"));
    }

    /// Each format's markers, including those a template builds from parts (Phi-3).
    #[test]
    fn a_template_knows_the_markers_it_writes() {
        for (source, formatted) in [
            ("<s>{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}", "<s>[INST] hi [/INST]"),
            ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi"),
            ("{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}", "<bos><start_of_turn>user\nhi<end_of_turn>\n"),
            ("{% for m in messages %}{{ '<|' + m['role'] + '|>' + '\n' + m['content'] + '<|end|>\n' }}{% endfor %}", "<|system|>\nBe brief<|end|>\n<|user|>\nhi"),
        ] {
            let t = template(source);
            assert!(t.formats(formatted), "{formatted:?}");
            assert!(!t.formats("<|im_start|>user\nhi"), "{source}");
        }
        // A format beyond the known ones: the tag its prompt opens with, after its own BOS.
        let t = ChatTemplate::new(
            "{{ bos_token }}[SYSTEM_PROMPT]Be brief[/SYSTEM_PROMPT][INST]{{ messages[0]['content'] }}[/INST]".into(),
            "<|bos|>".into(),
            String::new(),
        );
        assert!(t.formats("[SYSTEM_PROMPT]x[/SYSTEM_PROMPT][INST]hi[/INST]"));
        assert!(t.formats("<|bos|>[SYSTEM_PROMPT]x[/SYSTEM_PROMPT]"));
        assert!(!t.formats("[SYSTEM] is not it"));
        // A format whose system text follows its BOS bare: the BOS written out marks it.
        let t = ChatTemplate::new(
            "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}{% else %}<｜User｜>{{ m['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}<｜Assistant｜>{% endif %}".into(),
            "<｜begin▁of▁sentence｜>".into(),
            String::new(),
        );
        assert!(t.formats("<｜begin▁of▁sentence｜>Be brief.<｜User｜>hi<｜Assistant｜>"));
        assert!(t.formats("<｜User｜>hi<｜Assistant｜>"));
        assert!(!t.formats("Be brief. Say hi."));
        // A runaway template stops with an error.
        let slow = template(
            "{% for i in range(100000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        );
        assert!(slow.render("x").is_err());
    }

    /// Rendered as transformers renders: block tags take their line's newline and indentation
    /// with them (Zephyr's template is written without `{%-`), Python's string methods work,
    /// `tojson` writes Python's JSON, `strftime_now` writes the date, line ends are "\n".
    #[test]
    fn renders_as_transformers_does() {
        let zephyr = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
        assert_eq!(
            template(zephyr).render("hello world").unwrap(),
            "<|user|>\nhello world</s>\n<|assistant|>\n"
        );
        let indented = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}";
        assert_eq!(template(indented).render("x").unwrap(), "[x]\n");
        // Qwen3's and Llama 2's templates call Python's methods.
        let methods = "{% set c = messages[0]['content'] %}{{ c.strip().upper() }}|{{ c.startswith(' a') }}|{{ c.split(',')|length }}|{{ messages[0].get('role') }}";
        assert_eq!(
            template(methods).render(" a,b ").unwrap(),
            "A,B|True|2|user"
        );
        let json = "{{ messages[0]|tojson }}|{{ {'a': [1, 'é']}|tojson(indent=2) }}";
        assert_eq!(
            template(json).render("q\"").unwrap(),
            "{\"role\": \"user\", \"content\": \"q\\\"\"}|{\n  \"a\": [\n    1,\n    \"é\"\n  ]\n}"
        );
        let more = "{{ {'b': 1, 'a': none}|tojson(separators=(',', ':')) }}|{{ {'b': 'é', 'a': 2}|tojson(sort_keys=true, ensure_ascii=true) }}|{{ tools is none }}|{{ documents is none }}";
        assert_eq!(
            template(more).render("x").unwrap(),
            "{\"b\":1,\"a\":null}|{\"a\": 2, \"b\": \"\\u00e9\"}|True|True"
        );
        let crlf = "{% for m in messages %}\r\n{{ m.content }}\r\n{% endfor %}";
        assert_eq!(template(crlf).render("x").unwrap(), "x\n");
        let date = template("{{ strftime_now('%d %b %Y') }}")
            .render("x")
            .unwrap();
        assert_eq!(date.len(), 11, "{date}");
        assert!(!date.contains('%'), "{date}");
    }

    #[test]
    fn strftime_writes_pythons_codes() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_709_211_909);
        assert_eq!(
            strftime("%d %b %Y|%B %A %a %m/%y %H:%M:%S %%", t),
            "29 Feb 2024|February Thursday Thu 02/24 13:05:09 %"
        );
        assert_eq!(strftime("%d %b %Y", std::time::UNIX_EPOCH), "01 Jan 1970");
        assert_eq!(strftime("%e|%-d|%j|%I %p|%-m", t), "29|29|060|01 PM|2");
        // Every other code Python's strftime takes, as it writes them (UTC, the C locale),
        // on days whose ISO year is not their own.
        let codes = "%D|%F|%x|%X|%T|%R|%r|%c|%h|%C|%u|%w|%U|%W|%G|%V|%g|%z|%Z|%n|%t|%k|%l";
        for (secs, python) in [
            (1_709_211_909, "02/29/24|2024-02-29|02/29/24|13:05:09|13:05:09|13:05|01:05:09 PM|Thu Feb 29 13:05:09 2024|Feb|20|4|4|08|09|2024|09|24|+0000|UTC|\n|\t|13| 1"),
            (1_609_459_200, "01/01/21|2021-01-01|01/01/21|00:00:00|00:00:00|00:00|12:00:00 AM|Fri Jan  1 00:00:00 2021|Jan|20|5|5|00|00|2020|53|20|+0000|UTC|\n|\t| 0|12"),
            (1_735_560_000, "12/30/24|2024-12-30|12/30/24|12:00:00|12:00:00|12:00|12:00:00 PM|Mon Dec 30 12:00:00 2024|Dec|20|1|1|52|53|2025|01|25|+0000|UTC|\n|\t|12|12"),
            (1_798_246_821, "12/26/26|2026-12-26|12/26/26|01:00:21|01:00:21|01:00|01:00:21 AM|Sat Dec 26 01:00:21 2026|Dec|20|6|6|51|51|2026|52|26|+0000|UTC|\n|\t| 1| 1"),
        ] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            assert_eq!(strftime(codes, t), python, "{secs}");
        }
    }

    /// Python's whitespace (U+001C…U+001F included) for `trim` and `.strip()`, and Jinja2's
    /// `sequence` test (strings and dicts are sequences), as transformers renders them.
    #[test]
    fn python_whitespace_and_jinja2_sequences() {
        let tmp = tempfile::tempdir().unwrap();
        let tok = tmp.path().join("tokenizer.json");
        let template = "{% set c = messages[0].content %}[{{ c|trim }}][{{ c.strip() }}]\
            [{{ c.lstrip() }}][{{ c.rstrip() }}][{{ c|trim('x') }}]\
            {% if c is sequence %}S{% endif %}{% if messages[0] is sequence %}M{% endif %}\
            {% if 3 is sequence %}N{% endif %}";
        let config = serde_json::json!({ "chat_template": template });
        std::fs::write(tmp.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        let t = ChatTemplate::of(&tok).unwrap().unwrap();
        assert_eq!(
            t.render("\u{1f} hi\u{1c}").unwrap(),
            "[hi][hi][hi\u{1c}][\u{1f} hi][\u{1f} hi\u{1c}]SM"
        );
    }

    #[test]
    fn a_template_in_a_broken_tokenizer_config_is_refused_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let tok = tmp.path().join("tokenizer.json");
        let config = tmp.path().join("tokenizer_config.json");
        std::fs::write(&config, r#"{"chat_template": "{{ x }}",}"#).unwrap();
        let e = ChatTemplate::of(&tok).unwrap_err().to_string();
        assert!(e.contains(&config.display().to_string()), "{e}");
        // Without a template in it, it holds nothing a prompt needs.
        std::fs::write(&config, r#"{"model_max_length": 1,}"#).unwrap();
        assert!(ChatTemplate::of(&tok).unwrap().is_none());
        // Every special token's text reaches the template; errors name the file.
        std::fs::write(
            &config,
            r#"{"chat_template": "{{ pad_token }}{{ unk_token }}{{ additional_special_tokens[0] }}{{ raise_exception('no') }}", "pad_token": {"content": "<pad>"}, "unk_token": "<unk>", "additional_special_tokens": ["<x>"]}"#,
        )
        .unwrap();
        let t = ChatTemplate::of(&tok).unwrap().unwrap();
        let e = t.render("hi").unwrap_err().to_string();
        assert!(
            e.contains("tokenizer_config.json: the chat template fails") && e.contains("no"),
            "{e}"
        );
        std::fs::write(
            &config,
            r#"{"chat_template": "{{ pad_token }}{{ unk_token }}{{ additional_special_tokens[0] }}", "pad_token": {"content": "<pad>"}, "unk_token": "<unk>", "additional_special_tokens": ["<x>"]}"#,
        )
        .unwrap();
        let t = ChatTemplate::of(&tok).unwrap().unwrap();
        assert_eq!(t.render("hi").unwrap(), "<pad><unk><x>");
        // A template alone in a folder (beside an adapter) takes its tokens from its model's.
        let alone = tmp.path().join("adapter");
        std::fs::create_dir(&alone).unwrap();
        std::fs::write(alone.join(TEMPLATE_FILE), "{{ bos_token }}{{ pad_token }}").unwrap();
        std::fs::write(&config, r#"{"bos_token": "<s>", "pad_token": "<pad>"}"#).unwrap();
        let t = ChatTemplate::of(&alone.join("tokenizer.json"))
            .unwrap()
            .unwrap();
        assert_eq!(t.render("hi").unwrap(), "");
        assert_eq!(t.with_tokens_of(&tok).render("hi").unwrap(), "<s><pad>");
        // special_tokens_map.json's win over the config's, as transformers loads them.
        std::fs::write(
            tmp.path().join("special_tokens_map.json"),
            r#"{"bos_token": {"content": "<m>"}}"#,
        )
        .unwrap();
        std::fs::write(&config, r#"{"bos_token": null, "pad_token": "<pad>"}"#).unwrap();
        let alone_t = ChatTemplate::of(&alone.join("tokenizer.json"))
            .unwrap()
            .unwrap();
        assert_eq!(
            alone_t.with_tokens_of(&tok).render("hi").unwrap(),
            "<m><pad>"
        );
        // A broken config beside a chat_template.jinja does not stop the template.
        std::fs::write(alone.join("tokenizer_config.json"), "{,").unwrap();
        assert!(ChatTemplate::of(&alone.join("tokenizer.json"))
            .unwrap()
            .is_some());
    }
}
