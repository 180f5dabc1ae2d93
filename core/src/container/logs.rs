//! Container logs: what the monitor reads from the container's stdout and stderr, one JSON
//! object per line in `<state dir>/<id>/container.log`, like Docker's json-file driver:
//! `{"log":"tick\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}`.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::state;
use super::StateError;

pub const LOG_FILE: &str = "container.log";

/// Which output a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub stream: Stream,
    pub time: String,
    pub data: Vec<u8>,
}

/// Lines longer than this are split (Docker uses 16 KiB too).
const MAX_LINE: usize = 16 * 1024;

/// The monitor's writer: splits output into lines and appends one JSON object per line.
pub struct Writer {
    file: File,
    partial: [Vec<u8>; 2],
}

fn json_escape(out: &mut Vec<u8>, data: &[u8]) {
    // Invalid UTF-8 becomes U+FFFD, as Docker does.
    let text = String::from_utf8_lossy(data);
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

impl Writer {
    pub fn open(path: &Path) -> Result<Writer, StateError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StateError::io(path, e))?;
        Ok(Writer {
            file,
            partial: [Vec::new(), Vec::new()],
        })
    }

    fn entry(&mut self, stream: Stream, data: &[u8]) {
        let mut line = Vec::with_capacity(data.len() + 80);
        line.extend_from_slice(b"{\"log\":\"");
        json_escape(&mut line, data);
        line.extend_from_slice(b"\",\"stream\":\"");
        line.extend_from_slice(stream.as_str().as_bytes());
        line.extend_from_slice(b"\",\"time\":\"");
        line.extend_from_slice(state::now_rfc3339().as_bytes());
        line.extend_from_slice(b"\"}\n");
        // A full disk loses log lines, never the container.
        let _ = self.file.write_all(&line);
    }

    /// Adds output of `stream`; complete lines are written at once, a partial one is held
    /// until its newline (or `flush`).
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) {
        let i = stream as usize;
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[i]);
            line.extend_from_slice(&data[..=nl]);
            self.entry(stream, &line);
            data = &data[nl + 1..];
        }
        self.partial[i].extend_from_slice(data);
        if self.partial[i].len() >= MAX_LINE {
            let line = std::mem::take(&mut self.partial[i]);
            self.entry(stream, &line);
        }
    }

    /// Writes what is held of unfinished lines.
    pub fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.partial[stream as usize]);
            if !line.is_empty() {
                self.entry(stream, &line);
            }
        }
    }
}

#[derive(Deserialize)]
struct RawEntry {
    log: String,
    stream: String,
    time: String,
}

fn parse_line(line: &str) -> Option<Entry> {
    let raw: RawEntry = serde_json::from_str(line).ok()?;
    let stream = match raw.stream.as_str() {
        "stderr" => Stream::Stderr,
        _ => Stream::Stdout,
    };
    Some(Entry {
        stream,
        time: raw.time,
        data: raw.log.into_bytes(),
    })
}

/// `--since`/`--until`: an RFC 3339 time, Unix seconds (`1714564800.5`), or a duration before
/// now (`90s`, `5m`, `1h30m`).
pub fn parse_time_arg(s: &str) -> Result<Duration, StateError> {
    let bad = || {
        StateError::Other(format!(
            "invalid time {s:?}: use an RFC 3339 time (2024-05-01T12:00:00Z), Unix seconds, or a duration like 10s, 5m, 1h30m"
        ))
    };
    if let Some(t) = state::parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(bad());
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let c = rest.chars().next().ok_or_else(bad)?;
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else {
            match c {
                'h' => (3600.0, 1),
                'm' => (60.0, 1),
                's' => (1.0, 1),
                _ => return Err(bad()),
            }
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        total += n * unit;
        num.clear();
        rest = &rest[len..];
    }
    if !num.is_empty() {
        return Err(bad());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(now.saturating_sub(Duration::from_secs_f64(total)))
}

/// What `logs` shows.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only the last N entries (of those after `since`).
    pub tail: Option<usize>,
    pub since: Option<Duration>,
    pub until: Option<Duration>,
}

fn keep(e: &Entry, o: &LogOptions) -> bool {
    if o.since.is_none() && o.until.is_none() {
        return true;
    }
    let Some(t) = state::parse_rfc3339(&e.time) else {
        return true;
    };
    let after_since = match o.since {
        Some(s) => t >= s,
        None => true,
    };
    let before_until = match o.until {
        Some(u) => t <= u,
        None => true,
    };
    after_since && before_until
}

/// Reads the log of a container directory: the selected entries and the offset read up to.
pub fn read(dir: &Path, o: &LogOptions) -> Result<(Vec<Entry>, u64), StateError> {
    let path = dir.join(LOG_FILE);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(StateError::io(&path, e)),
    };
    let mut r = BufReader::new(f);
    let mut out = std::collections::VecDeque::new();
    let mut offset = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r
            .read_line(&mut line)
            .map_err(|e| StateError::io(&path, e))?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        offset += n as u64;
        if let Some(e) = parse_line(line.trim_end()) {
            if keep(&e, o) {
                out.push_back(e);
                if o.tail.is_some_and(|t| out.len() > t) {
                    out.pop_front();
                }
            }
        }
    }
    Ok((out.into(), offset))
}

/// Reads complete entries appended after `offset`; returns them and the new offset.
pub fn read_from(dir: &Path, offset: u64, o: &LogOptions) -> Result<(Vec<Entry>, u64), StateError> {
    let path = dir.join(LOG_FILE);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(StateError::io(&path, e)),
    };
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| StateError::io(&path, e))?;
    let mut r = BufReader::new(f);
    let mut out = Vec::new();
    let mut off = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r
            .read_line(&mut line)
            .map_err(|e| StateError::io(&path, e))?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        off += n as u64;
        if let Some(e) = parse_line(line.trim_end()) {
            if o.until.is_none() || keep(&e, o) {
                out.push(e);
            }
        }
    }
    Ok((out, off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_escapes_and_tail() {
        let d = std::env::temp_dir().join(format!("rb-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let mut w = Writer::open(&d.join(LOG_FILE)).unwrap();
        w.write(Stream::Stdout, b"one\ntw");
        w.write(Stream::Stderr, b"err \"q\"\t\x01\n");
        w.write(Stream::Stdout, b"o\nthree");
        w.flush();
        let (all, off) = read(&d, &LogOptions::default()).unwrap();
        let got: Vec<(Stream, &[u8])> = all.iter().map(|e| (e.stream, &e.data[..])).collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, &b"one\n"[..]),
                (Stream::Stderr, &b"err \"q\"\t\x01\n"[..]),
                (Stream::Stdout, &b"two\n"[..]),
                (Stream::Stdout, &b"three"[..]),
            ]
        );
        let (last, _) = read(
            &d,
            &LogOptions {
                tail: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(last[0].data, b"three");
        w.write(Stream::Stdout, b"four\n");
        let (more, _) = read_from(&d, off, &LogOptions::default()).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].data, b"four\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn time_args() {
        assert_eq!(
            parse_time_arg("2024-05-01T12:00:00Z").unwrap(),
            Duration::from_secs(1_714_564_800)
        );
        assert_eq!(
            parse_time_arg("100.5").unwrap(),
            Duration::from_millis(100_500)
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let t = parse_time_arg("1h30m").unwrap();
        let ago = now - t;
        assert!(ago >= Duration::from_secs(5399) && ago <= Duration::from_secs(5410));
        assert!(parse_time_arg("soon").is_err());
        assert!(parse_time_arg("5x").is_err());
    }
}
