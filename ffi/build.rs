//! Links libcontainer.so with a version script (only `rootbox_*` exported) and its soname.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rerun-if-changed=rootbox.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/rootbox.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcontainer.so.{major}");
}
