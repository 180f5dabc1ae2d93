//! Image references (`rootbox pull/run/tag NAME`): parsing never panics, and what parses
//! prints back (fully qualified and familiar) to the very same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rootbox_core::image::reference::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Reference::parse_name_tag_digest(s);
    let Ok(r) = Reference::parse(s) else {
        return;
    };
    assert!(
        r.tag.is_some() || r.digest.is_some(),
        "{s:?}: no tag or digest: {r:?}"
    );
    let full = r.to_string();
    match Reference::parse(&full) {
        Ok(again) => assert_eq!(again, r, "{s:?} -> {full:?} parses to another reference"),
        Err(e) => panic!("{s:?} -> {full:?} does not parse again: {e}"),
    }
    let familiar = r.familiar();
    match Reference::parse(&familiar) {
        Ok(again) => assert_eq!(
            again, r,
            "{s:?} -> familiar {familiar:?} parses to another reference"
        ),
        Err(e) => panic!("{s:?} -> familiar {familiar:?} does not parse again: {e}"),
    }
    let _ = r.familiar_name();
});
