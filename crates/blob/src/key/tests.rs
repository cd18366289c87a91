use super::*;

#[test]
fn keys_are_validated() {
    for ok in [
        "tarballs/0b8f9d1e-6f0e-4c2a-9a57-1f2e3d4c5b6a",
        "artifacts/x",
        "a",
        "a.b/c_d-e",
        "x/y.tar.gz",
    ] {
        assert!(validate_key(ok).is_ok(), "{ok}");
    }
    let long = "a".repeat(MAX_KEY_LEN + 1);
    for bad in [
        "",
        "/abs",
        "a//b",
        "a/",
        "../x",
        "a/../b",
        "..",
        ".",
        "a/./b",
        ".tmp/x",
        "a/.hidden",
        "a b",
        "a\\b",
        "a\0b",
        "é",
        "a?b",
        "a%2e",
        long.as_str(),
    ] {
        assert!(
            matches!(validate_key(bad), Err(BlobError::InvalidKey(_))),
            "{bad:?}"
        );
    }
    assert!(validate_key(&"a".repeat(MAX_KEY_LEN)).is_ok());
    for ok in ["", "tarballs/", "tarballs/ab", "t"] {
        assert!(validate_prefix(ok).is_ok(), "{ok}");
    }
    for bad in ["/", "../", "a//", ".tmp/", "a b"] {
        assert!(validate_prefix(bad).is_err(), "{bad:?}");
    }
}
