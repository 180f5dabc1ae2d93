//! The Dockerfile parser (`rootbox build`): parsing never panics, and neither does the word
//! expansion each instruction's arguments get when it runs (`$VAR`, `${VAR:-default}`,
//! quotes, the escape character), the ENV/LABEL/ARG pairs, durations of HEALTHCHECK, and
//! the context path cleaning of COPY/ADD/WORKDIR.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rootbox_core::build::context;
use rootbox_core::build::parse::{self, Command, Kind};

fn env(k: &str) -> Option<String> {
    match k {
        "A" => Some("a".into()),
        "EMPTY" => Some(String::new()),
        "SPACE" => Some("x y  z".into()),
        "DOLLAR" => Some("$A${A}".into()),
        _ => None,
    }
}

fn expand(s: &str, esc: char) {
    let _ = parse::word(s, &env, esc);
    let _ = parse::words(s, &env, esc);
    for ins in ["ENV", "LABEL", "ARG"] {
        let _ = parse::key_values(ins, s, &env, esc);
    }
    let _ = context::clean(s);
}

fn command(c: &Command, esc: char) {
    match c {
        Command::Shell(s) => expand(s, esc),
        Command::Exec(v) => v.iter().for_each(|s| expand(s, esc)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The expansion rules on their own, with both escape characters.
    if text.len() < 512 {
        expand(text, '\\');
        expand(text, '`');
    }
    let _ = parse::parse_duration(text);
    let Ok(df) = parse::parse(text) else {
        return;
    };
    assert!(!df.stages.is_empty(), "a parsed Dockerfile without a stage");
    let esc = df.escape;
    let stages = df.stages.iter();
    let all = df
        .global_args
        .iter()
        .chain(stages.flat_map(|s| std::iter::once(&s.from).chain(s.instructions.iter())));
    for ins in all {
        assert!(ins.line >= 1, "instruction without a line: {ins:?}");
        match &ins.kind {
            Kind::From {
                image,
                name,
                platform,
            } => {
                expand(image, esc);
                name.iter()
                    .chain(platform.iter())
                    .for_each(|s| expand(s, esc));
            }
            Kind::Run { cmd, .. } | Kind::Cmd(cmd) | Kind::Entrypoint(cmd) => command(cmd, esc),
            Kind::Shell(v) => v.iter().for_each(|s| expand(s, esc)),
            Kind::Copy(c) => {
                c.sources.iter().for_each(|s| expand(s, esc));
                expand(&c.dest, esc);
                for f in [&c.from, &c.chown, &c.chmod].into_iter().flatten() {
                    expand(f, esc);
                }
            }
            Kind::Healthcheck(h) => {
                if let Some(c) = &h.test {
                    command(c, esc);
                }
                for d in [&h.interval, &h.timeout, &h.start_period, &h.start_interval]
                    .into_iter()
                    .flatten()
                {
                    let _ = parse::parse_duration(d);
                }
            }
            Kind::Workdir(s)
            | Kind::Env(s)
            | Kind::Arg(s)
            | Kind::Label(s)
            | Kind::User(s)
            | Kind::Expose(s)
            | Kind::Volume(s)
            | Kind::StopSignal(s)
            | Kind::Maintainer(s)
            | Kind::Onbuild(s) => expand(s, esc),
        }
    }
});
