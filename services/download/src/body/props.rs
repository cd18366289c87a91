//! Property tests of the request headers a download reads (issue 12 item 7): `Accept`, `Range`
//! and the file name sent back in `Content-Disposition`. 3 × 1024 cases.

use axum::http::{header, HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::*;

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "(application/octet-stream|text/plain|\\*/\\*|[a-z/;=. ,]{0,12})(;q=[0-9.]{0,5})?(, ?[a-z/*]{0,20}(;q=[0-9.a-z]{0,5})?){0,3}"
            .prop_map(String::into_bytes),
        "bytes ?= ?[0-9 -]{0,30}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Any `Accept` and `Range` bytes a client can send: an encoding and a range or none,
    /// never a panic; base64 bodies never honour a range.
    #[test]
    fn any_accept_and_range_header_is_read_without_panicking(
        accept in header_value(),
        range in header_value(),
    ) {
        let mut headers = HeaderMap::new();
        for (name, bytes) in [(header::ACCEPT, &accept), (header::RANGE, &range)] {
            if let Ok(value) = HeaderValue::from_bytes(bytes) {
                headers.insert(name, value);
            }
        }
        let encoding = Encoding::negotiate(&headers);
        let _ = wants_raw(&String::from_utf8_lossy(&accept));
        let range = requested_range(&headers, encoding);
        prop_assert!(encoding == Encoding::Raw || range.is_none());
    }

    /// Any artifact name gives a non-empty safe file name and a valid header value.
    #[test]
    fn any_artifact_name_gives_a_safe_disposition(name in any::<String>()) {
        let safe = attachment_filename(&name);
        prop_assert!(!safe.is_empty());
        prop_assert!(safe.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        let value = content_disposition(&name);
        let expected = format!("attachment; filename=\"{safe}\"");
        prop_assert_eq!(value.to_str().ok(), Some(expected.as_str()));
    }

    /// Raw downloads honour exactly the ranges the blob store's parser accepts.
    #[test]
    fn raw_downloads_honour_well_formed_ranges(start in 0u64..1 << 40, len in 0u64..1 << 20) {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/octet-stream"));
        let value = format!("bytes={start}-{}", start + len);
        headers.insert(header::RANGE, HeaderValue::from_str(&value).expect("ascii"));
        prop_assert_eq!(
            requested_range(&headers, Encoding::negotiate(&headers)),
            Some(ByteRange::From { start, end: Some(start + len) })
        );
    }
}
