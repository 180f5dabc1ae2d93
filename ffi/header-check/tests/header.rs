//! include/rootbox.h is what cbindgen makes of ffi/src: regenerate it and compare. With
//! ROOTBOX_BLESS=1 the header is rewritten instead (`make header`).

use std::path::PathBuf;

#[test]
fn committed_header_is_current() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let header = crate_dir.join("../include/rootbox.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("ffi/cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen: {e}"));
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("cbindgen writes UTF-8");
    if std::env::var_os("ROOTBOX_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(header.parent().expect("include/")).expect("mkdir include");
        std::fs::write(&header, &generated).expect("writing include/rootbox.h");
        return;
    }
    let committed = std::fs::read_to_string(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "include/rootbox.h is stale: it differs from what cbindgen generates from ffi/src; run `make header` and commit it"
    );
}
