//! `rootbox pull|push|login|logout` and `run --pull`: argument parsing and progress display;
//! the work is `rootbox_core::image::registry`.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rootbox_core::image::digest::Digest;
use rootbox_core::image::registry::{self, BlobOutcome, Options, Progress, RegistryError};
use rootbox_core::image::store::human_size;
use rootbox_core::image::Store;
use rootbox_core::Error;

/// Connection options shared by pull, push and login.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// Require HTTPS and verify certificates (default true; localhost may use plain HTTP).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: Option<bool>,
    /// Directory of CA certificates (*.crt) to trust for the registry.
    #[arg(long, value_name = "DIR", env = "ROOTBOX_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Credentials file (default: $XDG_RUNTIME_DIR/containers/auth.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

/// Transfer options of pull and push.
#[derive(Args, Debug, Clone, Default)]
pub struct TransferArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Use these credentials (USER[:PASSWORD]) instead of stored ones.
    #[arg(long, value_name = "USER[:PASS]")]
    pub creds: Option<String>,
    /// Blobs transferred in parallel.
    #[arg(long, default_value_t = 3)]
    pub jobs: usize,
    /// No progress output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

impl TransferArgs {
    fn options(&self, platform: Option<String>) -> Result<Options, Error> {
        let creds = match &self.creds {
            None => None,
            Some(c) => {
                let (u, p) = c.split_once(':').unwrap_or((c.as_str(), ""));
                if u.is_empty() {
                    return Err(RegistryError::Config(format!(
                        "--creds {c:?}: expected USER[:PASSWORD]"
                    ))
                    .into());
                }
                Some((u.to_string(), p.to_string()))
            }
        };
        if self.jobs == 0 {
            return Err(RegistryError::Config("--jobs must be at least 1".into()).into());
        }
        Ok(Options {
            tls_verify: self.conn.tls_verify,
            cert_dir: self.conn.cert_dir.clone(),
            creds,
            authfile: self.conn.authfile.clone(),
            platform,
            jobs: Some(self.jobs),
        })
    }
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference, e.g. registry.example:5000/team/app:1.0.
    pub reference: String,
    /// Platform to pick from a multi-arch image (OS/ARCH[/VARIANT]; default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Image in the store.
    pub source: String,
    /// Where to push (default: SOURCE as a reference).
    pub destination: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry (HOST[:PORT]; default docker.io).
    pub registry: Option<String>,
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry (HOST[:PORT]; default docker.io).
    pub registry: Option<String>,
    /// Credentials file (default: $XDG_RUNTIME_DIR/containers/auth.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

/// Progress lines for a pipe or a log: one line when a blob starts, one when it ends.
struct Lines;

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

impl Progress for Lines {
    fn message(&self, line: &str) {
        eprintln!("{line}");
    }
    fn start(&self, d: &Digest, total: u64) {
        eprintln!("Copying blob {} ({})", short(d), human_size(total));
    }
    fn advance(&self, _: &Digest, _: u64) {}
    fn done(&self, d: &Digest, how: BlobOutcome) {
        match how {
            BlobOutcome::Transferred => eprintln!("Copying blob {} done", short(d)),
            BlobOutcome::Exists => eprintln!("Copying blob {} skipped: already exists", short(d)),
            BlobOutcome::Mounted => {
                eprintln!("Copying blob {} mounted from another repository", short(d))
            }
        }
    }
}

/// A progress bar per blob on a terminal.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, d: &Digest) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(d).cloned()
    }
}

impl Progress for Bars {
    fn message(&self, line: &str) {
        let _ = self.multi.println(line);
    }
    fn start(&self, d: &Digest, total: u64) {
        let pb = self.multi.add(ProgressBar::new(total));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_prefix(format!("Copying blob {}", short(d)));
        if let Ok(mut m) = self.bars.lock() {
            m.insert(d.clone(), pb);
        }
    }
    fn advance(&self, d: &Digest, n: u64) {
        if let Some(pb) = self.bar(d) {
            pb.inc(n);
        }
    }
    fn done(&self, d: &Digest, how: BlobOutcome) {
        match (self.bar(d), how) {
            (Some(pb), _) => pb.finish_with_message("done"),
            (None, BlobOutcome::Exists) => {
                let _ = self
                    .multi
                    .println(format!("Copying blob {} skipped: already exists", short(d)));
            }
            (None, _) => {
                let _ = self
                    .multi
                    .println(format!("Copying blob {} mounted", short(d)));
            }
        }
    }
}

fn progress(quiet: bool) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(registry::Quiet)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::new())
    } else {
        Arc::new(Lines)
    }
}

/// `rootbox pull`: prints the image id.
pub fn pull(store: &Store, a: PullArgs) -> Result<i32, Error> {
    let opts = a.transfer.options(a.platform.clone())?;
    let p = progress(a.transfer.quiet);
    let pulled = registry::pull(store, &a.reference, &opts, true, p.as_ref())?;
    println!("{}", pulled.image.id());
    Ok(0)
}

/// `rootbox push`.
pub fn push(store: &Store, a: PushArgs) -> Result<i32, Error> {
    let opts = a.transfer.options(None)?;
    let p = progress(a.transfer.quiet);
    let pushed = registry::push(store, &a.source, a.destination.as_deref(), &opts, p)?;
    if a.transfer.quiet {
        println!("{}", pushed.digest);
    }
    Ok(0)
}

fn prompt(what: &str, echo: bool) -> Result<String, Error> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(RegistryError::Config(format!(
            "login: no {what} given (use -u/-p, or --password-stdin)"
        ))
        .into());
    }
    eprint!("{what}: ");
    let _ = std::io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is a terminal (checked above) and `old` is a valid termios.
    let have = unsafe { libc::tcgetattr(fd, &mut old) } == 0;
    if !echo && have {
        let mut t = old;
        t.c_lflag &= !libc::ECHO;
        // SAFETY: setting attributes read from the same terminal, echo off.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
    let mut line = String::new();
    let res = stdin.lock().read_line(&mut line);
    if !echo && have {
        // SAFETY: restores the attributes read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
        eprintln!();
    }
    res.map_err(|e| RegistryError::Config(format!("login: reading the {what}: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `rootbox login`.
pub fn login(a: LoginArgs) -> Result<i32, Error> {
    let registry = a.registry.unwrap_or_else(|| "docker.io".into());
    if a.password.is_some() && a.password_stdin {
        return Err(RegistryError::Config(
            "login: --password and --password-stdin are mutually exclusive".into(),
        )
        .into());
    }
    let user = match a.username {
        Some(u) => u,
        None if a.password_stdin => {
            return Err(
                RegistryError::Config("login: --password-stdin needs --username".into()).into(),
            )
        }
        None => prompt("Username", true)?,
    };
    let pass = match (a.password, a.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut s)
                .map_err(|e| RegistryError::Config(format!("login: reading the password: {e}")))?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => prompt("Password", false)?,
    };
    let opts = Options {
        tls_verify: a.conn.tls_verify,
        cert_dir: a.conn.cert_dir,
        authfile: a.conn.authfile,
        ..Default::default()
    };
    registry::login(&registry, &user, &pass, &opts)?;
    println!("Login Succeeded!");
    Ok(0)
}

/// `rootbox logout`.
pub fn logout(a: LogoutArgs) -> Result<i32, Error> {
    let registry = a.registry.unwrap_or_else(|| "docker.io".into());
    let opts = Options {
        authfile: a.authfile,
        ..Default::default()
    };
    registry::logout(&registry, &opts)?;
    println!(
        "Removed login credentials for {}",
        registry::auth::registry_key(&registry)?
    );
    Ok(0)
}

/// `run --pull`: always, missing (default) or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Missing,
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(PullPolicy::Always),
            "missing" => Ok(PullPolicy::Missing),
            "never" => Ok(PullPolicy::Never),
            other => Err(format!(
                "invalid --pull {other:?} (expected always, missing or never)"
            )),
        }
    }
}

/// Before `run IMAGE`: pulls the image when the policy asks for it. Progress goes to stderr.
pub fn ensure_image(
    store_root: &std::path::Path,
    reference: &str,
    policy: PullPolicy,
    quiet: bool,
) -> Result<(), Error> {
    if policy == PullPolicy::Never {
        return Ok(());
    }
    let store = Store::open(Some(store_root.to_path_buf()))?;
    if policy == PullPolicy::Missing {
        match store.resolve(reference) {
            Ok(_) => return Ok(()),
            Err(rootbox_core::image::ImageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // An id (prefix) that is not in the store is not something to pull.
        if rootbox_core::image::Reference::parse(reference).is_err() {
            return Ok(());
        }
    }
    let p = progress(quiet);
    let opts = Options {
        cert_dir: std::env::var_os("ROOTBOX_CERT_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        ..Default::default()
    };
    match registry::pull(&store, reference, &opts, false, p.as_ref()) {
        Ok(_) => Ok(()),
        // Not in the store and not pullable: still "no such image", with the reason.
        Err(e) if policy == PullPolicy::Missing => Err(rootbox_core::image::ImageError::NotFound(
            format!("{reference} (not in the store, and pulling it failed: {e})"),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}
