//! Path normalization, which routes (and so limits) are matched on.
//!
//! Properties: nothing panics; an `Ok` path starts with `/`, has no `//` and no `.` or `..`
//! segment, and normalizing it again gives it back unchanged (else two spellings of one path
//! could still meet different routes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use seawall::routing::normalize_path;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(n) = normalize_path(raw) else {
        return;
    };
    assert!(n.starts_with('/'), "{raw:?} -> {n:?}");
    assert!(!n.contains("//"), "{raw:?} -> {n:?}");
    assert!(
        !n.split('/').any(|s| s == "." || s == ".."),
        "{raw:?} -> {n:?}"
    );
    assert_eq!(normalize_path(&n).as_deref(), Ok(&*n), "{raw:?}");
});
