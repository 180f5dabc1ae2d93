//! `rootbox-monitor-supervise`: the supervision loop of a detached container's monitor, in a
//! binary of its own so that an idle monitor stays small (see
//! `rootbox_core::container::supervise`). Exec'd by `rootbox-monitor` once the container
//! runs; not meant to be run by hand.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(rootbox_core::container::supervise::main(&args));
}
