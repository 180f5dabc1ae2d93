//! The Dockerfile syntax: parser directives (`# escape=`), comments, line continuations,
//! instructions with their `--flags`, the JSON (exec) and shell forms, and the word rules
//! (quotes, the escape character, `$VAR`/`${VAR}`/`${VAR:-default}`/`${VAR:+alt}`) that
//! Docker applies to ENV, ARG, LABEL, COPY, WORKDIR, ... — the same rules as Docker's
//! `shell.Lex`. Every error names the Dockerfile line.

use std::collections::HashMap;

use super::BuildError;

/// A command in its two forms: `RUN echo hi` (run by the SHELL) or `RUN ["echo", "hi"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// `COPY`/`ADD` sources and destination, with their flags (values still unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    pub add: bool,
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
}

/// `HEALTHCHECK [--flags] CMD ...` or `HEALTHCHECK NONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `None`: `HEALTHCHECK NONE`.
    pub test: Option<Command>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<u32>,
}

/// One instruction, its arguments as written (variables are expanded when it runs, against
/// the stage's ARGs and ENV at that point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Run {
        cmd: Command,
        network: Option<String>,
    },
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    Copy(CopySpec),
    Workdir(String),
    /// The raw argument text; see [`key_values`].
    Env(String),
    Arg(String),
    Label(String),
    User(String),
    Expose(String),
    /// The raw text: a JSON list or whitespace-separated paths.
    Volume(String),
    StopSignal(String),
    Healthcheck(Health),
    Maintainer(String),
    Onbuild(String),
}

/// An instruction with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line of the instruction's first line.
    pub line: usize,
    /// The instruction as written, continuations joined (for the history and the cache key).
    pub text: String,
    pub kind: Kind,
}

/// A build stage: a FROM and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub from: Instruction,
    pub instructions: Vec<Instruction>,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    /// ARG instructions before the first FROM (usable in FROM lines).
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

fn err(line: usize, message: impl Into<String>) -> BuildError {
    BuildError::Parse {
        line,
        message: message.into(),
    }
}

/// Reads parser directives (`# escape=`, `# syntax=`, `# check=`) from the top of the file:
/// returns the escape character and the index of the first line after them.
fn directives(lines: &[&str]) -> Result<(char, usize), BuildError> {
    let mut escape = '\\';
    let mut seen: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        let Some(body) = t.strip_prefix('#') else {
            return Ok((escape, i));
        };
        let Some((k, v)) = body.split_once('=') else {
            return Ok((escape, i));
        };
        let k = k.trim().to_ascii_lowercase();
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Ok((escape, i));
        }
        if seen.contains(&k) {
            return Err(err(
                i + 1,
                format!("only one {k} parser directive can be used"),
            ));
        }
        match k.as_str() {
            "escape" => {
                escape = match v.trim() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(err(
                            i + 1,
                            format!("invalid escape token {other:?}: it must be ` or \\"),
                        ))
                    }
                }
            }
            "syntax" | "check" => {}
            // An unknown directive is a comment, and ends the directives.
            _ => return Ok((escape, i)),
        }
        seen.push(k);
    }
    Ok((escape, lines.len()))
}

/// Joins continuation lines: (first line number, joined text) per logical line. Comment lines
/// and blank lines are dropped, also inside a continued instruction (as Docker does).
fn logical_lines(text: &str) -> Result<(char, Vec<(usize, String)>), BuildError> {
    let lines: Vec<&str> = text.lines().collect();
    let (escape, start) = directives(&lines)?;
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, raw) in lines.iter().enumerate().skip(start) {
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let t = l.trim_start();
        if t.starts_with('#') || (t.trim().is_empty() && cur.is_some()) {
            continue;
        }
        if t.trim().is_empty() {
            continue;
        }
        let trimmed_end = l.trim_end();
        let (body, continues) = match trimmed_end.strip_suffix(escape) {
            Some(b) => (b, true),
            None => (trimmed_end, false),
        };
        match &mut cur {
            Some((_, s)) => s.push_str(body),
            None => cur = Some((i + 1, body.trim_start().to_string())),
        }
        if !continues {
            if let Some(c) = cur.take() {
                out.push(c);
            }
        }
    }
    if let Some((line, s)) = cur {
        if s.trim().is_empty() {
            return Err(err(line, "the Dockerfile ends with a line continuation"));
        }
        out.push((line, s));
    }
    Ok((escape, out))
}

/// Splits leading `--name=value` / `--name` flags off an instruction's arguments.
fn flags<'a>(
    line: usize,
    ins: &str,
    mut rest: &'a str,
    allowed: &[&str],
) -> Result<(HashMap<String, String>, &'a str), BuildError> {
    let mut out = HashMap::new();
    loop {
        rest = rest.trim_start();
        let Some(f) = rest.strip_prefix("--") else {
            return Ok((out, rest));
        };
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let word = &f[..end];
        let (k, v) = match word.split_once('=') {
            Some((k, v)) => (k, v.to_string()),
            None => (word, String::new()),
        };
        if !allowed.contains(&k) {
            return Err(err(
                line,
                format!(
                    "unknown flag --{k} for {ins}{}",
                    if allowed.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (it takes {})",
                            allowed
                                .iter()
                                .map(|a| format!("--{a}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            ));
        }
        out.insert(k.to_string(), v);
        rest = &f[end..];
    }
}

/// The JSON form when the text is a JSON array of strings.
fn json_list(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

fn command(s: &str) -> Command {
    match json_list(s) {
        Some(v) => Command::Exec(v),
        None => Command::Shell(s.trim().to_string()),
    }
}

fn need(line: usize, ins: &str, rest: &str) -> Result<(), BuildError> {
    if rest.trim().is_empty() {
        return Err(err(line, format!("{ins} requires at least one argument")));
    }
    Ok(())
}

fn parse_instruction(line: usize, text: &str, escape: char) -> Result<Instruction, BuildError> {
    let t = text.trim();
    let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let ins = word.to_ascii_uppercase();
    let rest = rest.trim();
    let kind = match ins.as_str() {
        "FROM" => {
            let (f, rest) = flags(line, &ins, rest, &["platform"])?;
            let w: Vec<&str> = rest.split_whitespace().collect();
            let (image, name) = match w.as_slice() {
                [i] => (i.to_string(), None),
                [i, as_, n] if as_.eq_ignore_ascii_case("as") => {
                    let n = n.to_ascii_lowercase();
                    if !n
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic())
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                    {
                        return Err(err(line, format!("invalid stage name {n:?}: it must start with a letter and hold only letters, digits, '_', '-' and '.'")));
                    }
                    (i.to_string(), Some(n))
                }
                [] => return Err(err(line, "FROM requires an image (or scratch)")),
                _ => {
                    return Err(err(
                        line,
                        "FROM takes an image and optionally AS NAME: FROM IMAGE [AS NAME]",
                    ))
                }
            };
            Kind::From {
                image,
                name,
                platform: f.get("platform").cloned(),
            }
        }
        "RUN" => {
            let (f, rest) = flags(line, &ins, rest, &["network"])?;
            need(line, &ins, rest)?;
            Kind::Run {
                cmd: command(rest),
                network: f.get("network").cloned(),
            }
        }
        "CMD" => {
            need(line, &ins, rest)?;
            Kind::Cmd(command(rest))
        }
        "ENTRYPOINT" => {
            need(line, &ins, rest)?;
            Kind::Entrypoint(command(rest))
        }
        "SHELL" => match json_list(rest) {
            Some(v) if !v.is_empty() => Kind::Shell(v),
            _ => {
                return Err(err(
                    line,
                    "SHELL requires the arguments to be in JSON form: SHELL [\"executable\", \"parameters\"]",
                ))
            }
        },
        "COPY" | "ADD" => {
            let allowed: &[&str] = if ins == "COPY" {
                &["from", "chown", "chmod", "link"]
            } else {
                &["chown", "chmod", "link"]
            };
            let (f, rest) = flags(line, &ins, rest, allowed)?;
            let mut words = match json_list(rest) {
                Some(v) => v,
                None => split_unquoted(rest, escape),
            };
            if words.len() < 2 {
                return Err(err(
                    line,
                    format!("{ins} requires at least two arguments: {ins} SOURCE... DEST"),
                ));
            }
            let dest = words.pop().unwrap_or_default();
            if let Some(from) = f.get("from") {
                if from.is_empty() {
                    return Err(err(line, "--from needs a stage name, index or image"));
                }
            }
            Kind::Copy(CopySpec {
                add: ins == "ADD",
                sources: words,
                dest,
                from: f.get("from").cloned(),
                chown: f.get("chown").cloned().filter(|s| !s.is_empty()),
                chmod: f.get("chmod").cloned().filter(|s| !s.is_empty()),
            })
        }
        "WORKDIR" => {
            need(line, &ins, rest)?;
            Kind::Workdir(rest.to_string())
        }
        "ENV" | "ARG" | "LABEL" => {
            need(line, &ins, rest)?;
            match ins.as_str() {
                "ENV" => Kind::Env(rest.to_string()),
                "ARG" => Kind::Arg(rest.to_string()),
                _ => Kind::Label(rest.to_string()),
            }
        }
        "USER" => {
            need(line, &ins, rest)?;
            Kind::User(rest.to_string())
        }
        "EXPOSE" => {
            need(line, &ins, rest)?;
            Kind::Expose(rest.to_string())
        }
        "VOLUME" => {
            need(line, &ins, rest)?;
            Kind::Volume(rest.to_string())
        }
        "STOPSIGNAL" => {
            need(line, &ins, rest)?;
            Kind::StopSignal(rest.to_string())
        }
        "MAINTAINER" => {
            need(line, &ins, rest)?;
            Kind::Maintainer(rest.to_string())
        }
        "ONBUILD" => {
            need(line, &ins, rest)?;
            let inner = rest.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(err(line, format!("{inner} isn't allowed as an ONBUILD trigger")));
            }
            parse_instruction(line, rest, escape)?;
            Kind::Onbuild(rest.to_string())
        }
        "HEALTHCHECK" => {
            let (f, rest) = flags(
                line,
                &ins,
                rest,
                &[
                    "interval",
                    "timeout",
                    "start-period",
                    "start-interval",
                    "retries",
                ],
            )?;
            let (w, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let test = match w.to_ascii_uppercase().as_str() {
                "NONE" if cmd.trim().is_empty() => None,
                "NONE" => return Err(err(line, "HEALTHCHECK NONE takes no arguments")),
                "CMD" => {
                    need(line, "HEALTHCHECK CMD", cmd)?;
                    Some(command(cmd))
                }
                _ => {
                    return Err(err(
                        line,
                        "HEALTHCHECK takes CMD COMMAND... or NONE: HEALTHCHECK [--interval=..] CMD ...",
                    ))
                }
            };
            let retries = match f.get("retries") {
                Some(r) => Some(r.parse::<u32>().map_err(|_| {
                    err(line, format!("invalid HEALTHCHECK --retries {r:?}: not a count"))
                })?),
                None => None,
            };
            for k in ["interval", "timeout", "start-period", "start-interval"] {
                if let Some(v) = f.get(k) {
                    parse_duration(v).ok_or_else(|| {
                        err(
                            line,
                            format!("invalid HEALTHCHECK --{k} {v:?}: a duration like 30s, 1m30s or 500ms"),
                        )
                    })?;
                }
            }
            Kind::Healthcheck(Health {
                test,
                interval: f.get("interval").cloned(),
                timeout: f.get("timeout").cloned(),
                start_period: f.get("start-period").cloned(),
                start_interval: f.get("start-interval").cloned(),
                retries,
            })
        }
        "" => return Err(err(line, "empty instruction")),
        other => return Err(err(line, format!("unknown instruction: {other}"))),
    };
    Ok(Instruction {
        line,
        text: format!("{ins} {rest}").trim_end().to_string(),
        kind,
    })
}

/// A Go-style duration (`30s`, `1m30s`, `1.5h`, `500ms`) in nanoseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Some(total as u64)
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, BuildError> {
    let (escape, lines) = logical_lines(text)?;
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for (line, l) in lines {
        let ins = parse_instruction(line, &l, escape)?;
        match (&ins.kind, stages.last_mut()) {
            (Kind::From { name: Some(n), .. }, _) => {
                if stages.iter().any(|s| {
                    matches!(&s.from.kind, Kind::From { name: Some(m), .. } if m == n)
                }) {
                    return Err(err(line, format!("duplicate stage name {n:?}")));
                }
                stages.push(Stage {
                    from: ins,
                    instructions: Vec::new(),
                });
            }
            (Kind::From { .. }, _) => stages.push(Stage {
                from: ins,
                instructions: Vec::new(),
            }),
            (Kind::Arg(_), None) => global_args.push(ins),
            (_, None) => {
                return Err(err(
                    line,
                    format!(
                        "{} before the first FROM: a Dockerfile must start with FROM (only ARG may come before it)",
                        ins.text.split_whitespace().next().unwrap_or("")
                    ),
                ))
            }
            (_, Some(s)) => s.instructions.push(ins),
        }
    }
    if stages.is_empty() {
        return Err(err(
            0,
            "the Dockerfile has no FROM instruction (no build stage)",
        ));
    }
    Ok(Dockerfile {
        escape,
        global_args,
        stages,
    })
}

/// Splits on unquoted whitespace keeping quotes and escapes as written (for COPY's sources,
/// expanded one by one later).
fn split_unquoted(s: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            (c, None) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (c, None) if c == escape => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ('\'' | '"', None) => {
                quote = Some(c);
                cur.push(c);
            }
            (c, Some(q)) if c == q => {
                quote = None;
                cur.push(c);
            }
            (c, _) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The word rules of Docker's shell lexer: quotes removed, the escape character honoured,
/// variables expanded from `env`. Returns the words (split on unquoted whitespace).
pub fn words(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            if has {
                out.push(std::mem::take(&mut cur));
                has = false;
            }
            i += 1;
            continue;
        }
        has = true;
        if c == escape {
            if let Some(&n) = chars.get(i + 1) {
                cur.push(n);
            }
            i += 2;
        } else if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .ok_or_else(|| format!("unterminated single quote in {s:?}"))?;
            cur.extend(&chars[i + 1..i + 1 + end]);
            i += end + 2;
        } else if c == '"' {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated double quote in {s:?}")),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&e) if e == escape => {
                        match chars.get(i + 1) {
                            Some(&n) if n == '"' || n == '$' || n == escape => cur.push(n),
                            Some(&n) => {
                                cur.push(e);
                                cur.push(n);
                            }
                            None => cur.push(e),
                        }
                        i += 2;
                    }
                    Some('$') => {
                        let (v, n) = variable(&chars, i, env, escape)?;
                        cur.push_str(&v);
                        i = n;
                    }
                    Some(&x) => {
                        cur.push(x);
                        i += 1;
                    }
                }
            }
        } else if c == '$' {
            let (v, n) = variable(&chars, i, env, escape)?;
            cur.push_str(&v);
            i = n;
        } else {
            cur.push(c);
            i += 1;
        }
    }
    if has {
        out.push(cur);
    }
    Ok(out)
}

/// One word: [`words`] without splitting (whitespace kept as written).
pub fn word(s: &str, env: &dyn Fn(&str) -> Option<String>, escape: char) -> Result<String, String> {
    // Quote the whitespace so that `words` keeps it.
    let mut quoted = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            (c, None) if c == escape => {
                quoted.push(c);
                if let Some(n) = chars.next() {
                    quoted.push(n);
                }
            }
            (c, None) if c.is_whitespace() => {
                quoted.push(escape);
                quoted.push(c);
            }
            ('\'' | '"', None) => {
                quote = Some(c);
                quoted.push(c);
            }
            (c, Some(q)) if c == q => {
                quote = None;
                quoted.push(c);
            }
            (c, Some('"')) if c == escape => {
                quoted.push(c);
                if let Some(n) = chars.next() {
                    quoted.push(n);
                }
            }
            (c, _) => quoted.push(c),
        }
    }
    Ok(words(&quoted, env, escape)?.concat())
}

/// Expands the variable at `chars[i]` (a `$`): returns its value and the index after it.
fn variable(
    chars: &[char],
    i: usize,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<(String, usize), String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(i + 1) {
        Some('{') => {
            let start = i + 2;
            let mut j = start;
            while j < chars.len() && name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[start..j].iter().collect();
            if name.is_empty() {
                return Err("bad substitution: ${} needs a variable name".into());
            }
            match chars.get(j) {
                Some('}') => Ok((env(&name).unwrap_or_default(), j + 1)),
                Some(':') | Some('-') | Some('+') | Some('?') => {
                    let colon = chars[j] == ':';
                    let op_at = if colon { j + 1 } else { j };
                    let op = *chars
                        .get(op_at)
                        .ok_or_else(|| format!("bad substitution: unterminated ${{{name}"))?;
                    // The word runs to the matching `}`.
                    let mut depth = 1;
                    let mut k = op_at + 1;
                    while k < chars.len() {
                        match chars[k] {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        k += 1;
                    }
                    if k >= chars.len() {
                        return Err(format!("bad substitution: unterminated ${{{name}"));
                    }
                    let raw: String = chars[op_at + 1..k].iter().collect();
                    let val = env(&name);
                    let set = match (&val, colon) {
                        (Some(v), true) => !v.is_empty(),
                        (Some(_), false) => true,
                        (None, _) => false,
                    };
                    let expanded = match op {
                        '-' if set => val.unwrap_or_default(),
                        '-' => word(&raw, env, escape)?,
                        '+' if set => word(&raw, env, escape)?,
                        '+' => String::new(),
                        '?' if set => val.unwrap_or_default(),
                        '?' => {
                            return Err(format!(
                                "{name}: {}",
                                if raw.is_empty() {
                                    "is not set".to_string()
                                } else {
                                    raw
                                }
                            ))
                        }
                        o => {
                            return Err(format!(
                                "bad substitution: unsupported modifier {o:?} in ${{{name}...}}"
                            ))
                        }
                    };
                    Ok((expanded, k + 1))
                }
                _ => Err(format!("bad substitution: missing '}}' after ${{{name}")),
            }
        }
        Some(&c) if c.is_ascii_alphabetic() || c == '_' => {
            let mut j = i + 1;
            while j < chars.len() && name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            Ok((env(&name).unwrap_or_default(), j))
        }
        _ => Ok(("$".into(), i + 1)),
    }
}

/// `ENV`/`LABEL`/`ARG` arguments: `K=V K2="V 2"` pairs, or the legacy `K V with spaces` form
/// (ENV and LABEL only). `ARG NAME` without a value gives `None`.
pub fn key_values(
    ins: &str,
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<(String, Option<String>)>, String> {
    let first = split_unquoted(s, escape);
    let legacy = first.first().is_some_and(|w| !w.contains('='));
    if legacy && ins != "ARG" {
        let t = s.trim();
        let (k, v) = t
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{ins} names a key without a value: {ins} KEY=VALUE"))?;
        return Ok(vec![(
            word(k, env, escape)?,
            Some(word(v.trim(), env, escape)?),
        )]);
    }
    let mut out = Vec::new();
    for w in first {
        let (k, v) = match w.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (w.as_str(), None),
        };
        let k = word(k, env, escape)?;
        if k.is_empty() {
            return Err(format!("{ins}: a name cannot be empty in {w:?}"));
        }
        if ins != "LABEL" && !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{ins}: invalid name {k:?}"));
        }
        match v {
            Some(v) => out.push((k, Some(word(v, env, escape)?))),
            None if ins == "ARG" => out.push((k, None)),
            None => return Err(format!("{ins} {k} has no value: {ins} {k}=VALUE")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "NAME" => Some("World".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("a b".into()),
            _ => None,
        }
    }

    #[test]
    fn the_seed_dockerfile() {
        let df = parse(
            "# Use an official Python runtime as a parent image\n\
             FROM python:3.12-slim\n\
             \n\
             # Set the working directory\n\
             WORKDIR /app\n\
             ADD . /app\n\
             RUN pip install --trusted-host pypi.python.org -r requirements.txt\n\
             EXPOSE 80\n\
             ENV NAME World\n\
             CMD [\"python\", \"app.py\"]\n",
        )
        .expect("parses");
        assert_eq!(df.stages.len(), 1);
        let s = &df.stages[0];
        assert_eq!(s.from.line, 2);
        assert!(
            matches!(&s.from.kind, Kind::From { image, name: None, .. } if image == "python:3.12-slim")
        );
        let lines: Vec<usize> = s.instructions.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![5, 6, 7, 8, 9, 10]);
        assert_eq!(
            s.instructions[5].kind,
            Kind::Cmd(Command::Exec(vec!["python".into(), "app.py".into()]))
        );
        assert_eq!(
            s.instructions[2].kind,
            Kind::Run {
                cmd: Command::Shell(
                    "pip install --trusted-host pypi.python.org -r requirements.txt".into()
                ),
                network: None
            }
        );
        match &s.instructions[1].kind {
            Kind::Copy(c) => {
                assert!(c.add);
                assert_eq!(c.sources, vec!["."]);
                assert_eq!(c.dest, "/app");
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn continuations_comments_and_escape_directive() {
        let df = parse("FROM a\nRUN echo one \\\n  # a comment inside\n\n  two\nRUN x\n")
            .expect("parses");
        let i = &df.stages[0].instructions;
        assert_eq!(
            i[0].kind,
            Kind::Run {
                cmd: Command::Shell("echo one   two".into()),
                network: None
            }
        );
        assert_eq!(i[1].line, 6);
        let df = parse("# escape=`\nFROM a\nRUN dir c:\\ `\n  /w\nCOPY a\\b c\n").expect("parses");
        assert_eq!(df.escape, '`');
        let i = &df.stages[0].instructions;
        assert_eq!(
            i[0].kind,
            Kind::Run {
                cmd: Command::Shell("dir c:\\   /w".into()),
                network: None
            }
        );
        // A directive after a comment is just a comment.
        let df = parse("# hello\n# escape=`\nFROM a\nRUN a \\\n b\n").expect("parses");
        assert_eq!(df.escape, '\\');
        assert_eq!(
            df.stages[0].instructions[0].kind,
            Kind::Run {
                cmd: Command::Shell("a  b".into()),
                network: None
            }
        );
        assert!(parse("# escape=x\nFROM a\n")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }

    #[test]
    fn stages_and_global_args() {
        let df = parse(
            "ARG V=1\nFROM base:$V AS build\nRUN make\nFROM scratch\nCOPY --from=build /out /out\n",
        )
        .expect("parses");
        assert_eq!(df.global_args.len(), 1);
        assert_eq!(df.stages.len(), 2);
        assert!(
            matches!(&df.stages[0].from.kind, Kind::From { name: Some(n), .. } if n == "build")
        );
        match &df.stages[1].instructions[0].kind {
            Kind::Copy(c) => assert_eq!(c.from.as_deref(), Some("build")),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "FROM a\nFROBNICATE x\n",
                "line 2: unknown instruction: FROBNICATE",
            ),
            ("RUN x\n", "line 1: RUN before the first FROM"),
            (
                "FROM a\nCOPY onlyone\n",
                "line 2: COPY requires at least two arguments",
            ),
            (
                "FROM a\n\nCOPY --bogus=1 a b\n",
                "line 3: unknown flag --bogus for COPY",
            ),
            (
                "FROM a\nSHELL sh -c\n",
                "line 2: SHELL requires the arguments to be in JSON form",
            ),
            ("FROM a AS x\nFROM b AS x\n", "line 2: duplicate stage name"),
            (
                "FROM a\nHEALTHCHECK --interval=soon CMD true\n",
                "line 2: invalid HEALTHCHECK --interval",
            ),
            (
                "FROM a\nRUN\n",
                "line 2: RUN requires at least one argument",
            ),
            ("# just a comment\n", "no FROM instruction"),
            ("FROM a b c d\n", "line 1: FROM takes an image"),
        ];
        for (df, want) in cases {
            let e = parse(df).expect_err(want).to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn words_quotes_and_variables() {
        let w = |s: &str| words(s, &env, '\\').expect(s);
        assert_eq!(w("hello $NAME"), vec!["hello", "World"]);
        assert_eq!(
            w("'$NAME' \"$NAME\" \\$NAME"),
            vec!["$NAME", "World", "$NAME"]
        );
        assert_eq!(
            w("${NAME}x ${NOPE:-dflt} ${EMPTY:-e} ${EMPTY-f}x"),
            vec!["Worldx", "dflt", "e", "x"]
        );
        assert_eq!(w("${NAME:+set} ${NOPE:+set}z"), vec!["set", "z"]);
        assert_eq!(w("$SP"), vec!["a b"]);
        assert_eq!(w("\"a  b\" c\\ d"), vec!["a  b", "c d"]);
        assert_eq!(w("cost $ 5"), vec!["cost", "$", "5"]);
        assert!(words("\"open", &env, '\\').is_err());
        assert!(words("${NAME", &env, '\\').is_err());
        assert!(words("${NOPE:?must be set}", &env, '\\')
            .unwrap_err()
            .contains("must be set"));
        assert_eq!(
            word("two  spaces $NAME", &env, '\\').expect("word"),
            "two  spaces World"
        );
    }

    #[test]
    fn key_value_forms() {
        let kv = |i: &str, s: &str| key_values(i, s, &env, '\\').expect(s);
        assert_eq!(
            kv("ENV", "NAME World"),
            vec![("NAME".to_string(), Some("World".to_string()))]
        );
        assert_eq!(
            kv("ENV", "A=1 B=\"two words\" C=$NAME D=x\\ y"),
            vec![
                ("A".to_string(), Some("1".to_string())),
                ("B".to_string(), Some("two words".to_string())),
                ("C".to_string(), Some("World".to_string())),
                ("D".to_string(), Some("x y".to_string())),
            ]
        );
        assert_eq!(
            kv("ENV", "GREETING hello   big $NAME"),
            vec![(
                "GREETING".to_string(),
                Some("hello   big World".to_string())
            )]
        );
        assert_eq!(
            kv("ARG", "V X=1"),
            vec![
                ("V".to_string(), None),
                ("X".to_string(), Some("1".to_string()))
            ]
        );
        assert_eq!(
            kv("LABEL", "\"com.example.vendor\"=\"ACME Inc\" version=1.0"),
            vec![
                (
                    "com.example.vendor".to_string(),
                    Some("ACME Inc".to_string())
                ),
                ("version".to_string(), Some("1.0".to_string())),
            ]
        );
        assert!(key_values("ENV", "A=1 B", &env, '\\').is_err());
        assert!(key_values("ENV", "A", &env, '\\').is_err());
        assert!(key_values("ENV", "A-B=1", &env, '\\').is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("x"), None);
    }
}
