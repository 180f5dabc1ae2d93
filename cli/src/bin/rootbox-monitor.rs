//! `rootbox-monitor`: the per-container monitor of detached containers (see
//! `rootbox_core::container::monitor`). Started by `rootbox run -d`, `create`, `start`; not
//! meant to be run by hand.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(rootbox_core::container::monitor::main(&args));
}
