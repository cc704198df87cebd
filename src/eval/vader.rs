//! VADER sentiment (Hutto & Gilbert, 2014), ported rule for rule from the reference Python
//! implementation vaderSentiment 3.3.2, with its lexicons (MIT; assets/vader/). Quirks of the
//! reference are kept on purpose — the "but" rule's first-equal-value lookup, the operator
//! precedence of the three-words-back negation check — because matching its scores is the point.

use std::collections::HashMap;
use std::sync::OnceLock;

const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
const C_INCR: f64 = 0.733;
const N_SCALAR: f64 = -0.74;

const NEGATE: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

const BOOSTERS_UP: &[&str] = &[
    "absolutely",
    "amazingly",
    "awfully",
    "completely",
    "considerable",
    "considerably",
    "decidedly",
    "deeply",
    "effing",
    "enormous",
    "enormously",
    "entirely",
    "especially",
    "exceptional",
    "exceptionally",
    "extreme",
    "extremely",
    "fabulously",
    "flipping",
    "flippin",
    "frackin",
    "fracking",
    "fricking",
    "frickin",
    "frigging",
    "friggin",
    "fully",
    "fuckin",
    "fucking",
    "fuggin",
    "fugging",
    "greatly",
    "hella",
    "highly",
    "hugely",
    "incredible",
    "incredibly",
    "intensely",
    "major",
    "majorly",
    "more",
    "most",
    "particularly",
    "purely",
    "quite",
    "really",
    "remarkably",
    "so",
    "substantially",
    "thoroughly",
    "total",
    "totally",
    "tremendous",
    "tremendously",
    "uber",
    "unbelievably",
    "unusually",
    "utter",
    "utterly",
    "very",
];

const BOOSTERS_DOWN: &[&str] = &[
    "almost",
    "barely",
    "hardly",
    "just enough",
    "kind of",
    "kinda",
    "kindof",
    "kind-of",
    "less",
    "little",
    "marginal",
    "marginally",
    "occasional",
    "occasionally",
    "partly",
    "scarce",
    "scarcely",
    "slight",
    "slightly",
    "somewhat",
    "sort of",
    "sorta",
    "sortof",
    "sort-of",
];

const SPECIAL_CASES: &[(&str, f64)] = &[
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("bus stop", 0.0),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
    ("beating heart", 3.5),
];

const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

struct Tables {
    lexicon: HashMap<String, f64>,
    emojis: HashMap<char, String>,
    boosters: HashMap<&'static str, f64>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let lexicon = include_str!("../../assets/vader/vader_lexicon.txt")
            .lines()
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let mut f = l.trim().split('\t');
                let (w, m) = (f.next()?, f.next()?);
                Some((w.to_string(), m.parse().ok()?))
            })
            .collect();
        // The reference looks up one character at a time, so only single-character entries
        // can ever match.
        let emojis = include_str!("../../assets/vader/emoji_utf8_lexicon.txt")
            .lines()
            .filter_map(|l| {
                let mut f = l.trim().split('\t');
                let (e, d) = (f.next()?, f.next()?);
                let mut cs = e.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => Some((c, d.to_string())),
                    _ => None,
                }
            })
            .collect();
        let boosters = BOOSTERS_UP
            .iter()
            .map(|w| (*w, B_INCR))
            .chain(BOOSTERS_DOWN.iter().map(|w| (*w, B_DECR)))
            .collect();
        Tables {
            lexicon,
            emojis,
            boosters,
        }
    })
}

/// Python's `str.isupper()`: at least one cased character, and no lowercase one.
fn is_upper(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_lowercase() {
            return false;
        }
        if c.is_uppercase() {
            cased = true;
        }
    }
    cased
}

fn negated(word: &str) -> bool {
    NEGATE.contains(&word) || word.contains("n't")
}

fn normalize(score: f64) -> f64 {
    (score / (score * score + 15.0).sqrt()).clamp(-1.0, 1.0)
}

/// Tokens with leading and trailing punctuation stripped, unless that leaves two characters
/// or fewer (then it was probably an emoticon such as ":)").
fn words_and_emoticons(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|t| {
            let stripped = t.trim_matches(|c| PUNCTUATION.contains(c));
            if stripped.chars().count() <= 2 {
                t.to_string()
            } else {
                stripped.to_string()
            }
        })
        .collect()
}

/// The compound score in [−1, 1], rounded to 4 decimals as the reference does.
pub fn compound(text: &str) -> f64 {
    let t = tables();
    let mut no_emoji = String::with_capacity(text.len());
    let mut prev_space = true;
    for c in text.chars() {
        if let Some(desc) = t.emojis.get(&c) {
            if !prev_space {
                no_emoji.push(' ');
            }
            no_emoji.push_str(desc);
            prev_space = false;
        } else {
            no_emoji.push(c);
            prev_space = c == ' ';
        }
    }
    let text = no_emoji.trim();
    let words = words_and_emoticons(text);
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let uppers = words.iter().filter(|w| is_upper(w)).count();
    let cap_diff = uppers > 0 && uppers < words.len();

    let mut sentiments: Vec<f64> = Vec::with_capacity(words.len());
    for i in 0..words.len() {
        if t.boosters.contains_key(lower[i].as_str())
            || (i + 1 < words.len() && lower[i] == "kind" && lower[i + 1] == "of")
        {
            sentiments.push(0.0);
            continue;
        }
        sentiments.push(valence(t, &words, &lower, i, cap_diff));
    }
    but_check(&lower, &mut sentiments);
    if sentiments.is_empty() {
        return 0.0;
    }
    let mut sum: f64 = sentiments.iter().sum();
    let amp = punctuation_emphasis(text);
    if sum > 0.0 {
        sum += amp;
    } else if sum < 0.0 {
        sum -= amp;
    }
    (normalize(sum) * 1e4).round() / 1e4
}

fn scalar_inc_dec(t: &Tables, word: &str, valence: f64, cap_diff: bool) -> f64 {
    let Some(&b) = t.boosters.get(word.to_lowercase().as_str()) else {
        return 0.0;
    };
    let mut s = if valence < 0.0 { -b } else { b };
    if is_upper(word) && cap_diff {
        s += if valence > 0.0 { C_INCR } else { -C_INCR };
    }
    s
}

fn valence(t: &Tables, words: &[String], lower: &[String], i: usize, cap_diff: bool) -> f64 {
    let Some(&base) = t.lexicon.get(&lower[i]) else {
        return 0.0;
    };
    let in_lex = |j: usize| t.lexicon.contains_key(&lower[j]);
    let mut v = base;
    if lower[i] == "no" && i + 1 < words.len() && in_lex(i + 1) {
        v = 0.0;
    }
    if (i > 0 && lower[i - 1] == "no")
        || (i > 1 && lower[i - 2] == "no")
        || (i > 2 && lower[i - 3] == "no" && (lower[i - 1] == "or" || lower[i - 1] == "nor"))
    {
        v = base * N_SCALAR;
    }
    if is_upper(&words[i]) && cap_diff {
        v += if v > 0.0 { C_INCR } else { -C_INCR };
    }
    for start in 0..3 {
        if i > start && !in_lex(i - (start + 1)) {
            let mut s = scalar_inc_dec(t, &words[i - (start + 1)], v, cap_diff);
            if start == 1 && s != 0.0 {
                s *= 0.95;
            }
            if start == 2 && s != 0.0 {
                s *= 0.9;
            }
            v += s;
            v = negation_check(v, lower, start, i);
            if start == 2 {
                v = special_idioms_check(t, v, lower, i);
            }
        }
    }
    least_check(v, lower, i, &in_lex)
}

fn negation_check(v: f64, w: &[String], start: usize, i: usize) -> f64 {
    match start {
        0 if negated(&w[i - 1]) => v * N_SCALAR,
        1 => {
            if w[i - 2] == "never" && (w[i - 1] == "so" || w[i - 1] == "this") {
                v * 1.25
            } else if w[i - 2] == "without" && w[i - 1] == "doubt" {
                v
            } else if negated(&w[i - 2]) {
                v * N_SCALAR
            } else {
                v
            }
        }
        2 => {
            // Precedence as in the reference: (never ∧ (so ∨ this)) ∨ (so ∨ this).
            if (w[i - 3] == "never" && (w[i - 2] == "so" || w[i - 2] == "this"))
                || (w[i - 1] == "so" || w[i - 1] == "this")
            {
                v * 1.25
            } else if w[i - 3] == "without" && (w[i - 2] == "doubt" || w[i - 1] == "doubt") {
                v
            } else if negated(&w[i - 3]) {
                v * N_SCALAR
            } else {
                v
            }
        }
        _ => v,
    }
}

fn special_idioms_check(t: &Tables, mut v: f64, w: &[String], i: usize) -> f64 {
    let special = |s: &str| SPECIAL_CASES.iter().find(|(k, _)| *k == s).map(|(_, x)| *x);
    let onezero = format!("{} {}", w[i - 1], w[i]);
    let twoonezero = format!("{} {} {}", w[i - 2], w[i - 1], w[i]);
    let twoone = format!("{} {}", w[i - 2], w[i - 1]);
    let threetwoone = format!("{} {} {}", w[i - 3], w[i - 2], w[i - 1]);
    let threetwo = format!("{} {}", w[i - 3], w[i - 2]);
    for seq in [&onezero, &twoonezero, &twoone, &threetwoone, &threetwo] {
        if let Some(x) = special(seq) {
            v = x;
            break;
        }
    }
    if w.len() - 1 > i {
        if let Some(x) = special(&format!("{} {}", w[i], w[i + 1])) {
            v = x;
        }
    }
    if w.len() - 1 > i + 1 {
        if let Some(x) = special(&format!("{} {} {}", w[i], w[i + 1], w[i + 2])) {
            v = x;
        }
    }
    for n in [&threetwoone, &threetwo, &twoone] {
        if let Some(b) = t.boosters.get(n.as_str()) {
            v += b;
        }
    }
    v
}

fn least_check(v: f64, w: &[String], i: usize, in_lex: &dyn Fn(usize) -> bool) -> f64 {
    if i > 1 && !in_lex(i - 1) && w[i - 1] == "least" {
        if w[i - 2] != "at" && w[i - 2] != "very" {
            return v * N_SCALAR;
        }
    } else if i > 0 && !in_lex(i - 1) && w[i - 1] == "least" {
        return v * N_SCALAR;
    }
    v
}

/// The contrastive "but": halve what comes before the first "but", raise what follows by half.
/// Done exactly as the reference does it, which finds each value's index by its first equal
/// value in the list as it is being rewritten.
fn but_check(lower: &[String], s: &mut [f64]) {
    let Some(bi) = lower.iter().position(|w| w == "but") else {
        return;
    };
    for k in 0..s.len() {
        let value = s[k];
        let si = s
            .iter()
            .position(|x| *x == value)
            .expect("value is in the list");
        if si < bi {
            s[si] = value * 0.5;
        } else if si > bi {
            s[si] = value * 1.5;
        }
    }
}

fn punctuation_emphasis(text: &str) -> f64 {
    let ep = text.matches('!').count().min(4) as f64 * 0.292;
    let qm = match text.matches('?').count() {
        0 | 1 => 0.0,
        n @ 2..=3 => n as f64 * 0.18,
        _ => 0.96,
    };
    ep + qm
}
