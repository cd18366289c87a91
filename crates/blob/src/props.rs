//! Property tests of what this crate reads from clients (issue 12 item 7): the streaming base64
//! decoder against a reference decoder under arbitrary chunking, `Range` headers, and
//! `Content-Disposition` values. Each property states its case count; together they run
//! 4 × 2048 + 3 × 1024 cases.

use std::io;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{stream, FutureExt, StreamExt};
use proptest::prelude::*;

use crate::b64::{decode_stream, encode_stream, is_decode_error, DecodeError};
use crate::{content_disposition, ByteRange};

/// Split `data` at the given cut points (taken modulo its length, sorted).
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<io::Result<Bytes>> {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .map(|c| if data.is_empty() { 0 } else { c % data.len() })
        .collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in cuts {
        out.push(Ok(Bytes::copy_from_slice(&data[prev..c])));
        prev = c;
    }
    out.push(Ok(Bytes::copy_from_slice(&data[prev..])));
    out
}

/// The decoder's result over these chunks: the bytes, or the error's offset.
fn decode(chunks: Vec<io::Result<Bytes>>) -> Result<Vec<u8>, u64> {
    let mut s = decode_stream(stream::iter(chunks));
    let mut out = Vec::new();
    loop {
        // Every input chunk is ready: the stream never waits.
        match s.next().now_or_never().expect("ready") {
            None => return Ok(out),
            Some(Ok(chunk)) => {
                assert!(!chunk.is_empty(), "an empty chunk was yielded");
                out.extend_from_slice(&chunk);
            }
            Some(Err(e)) => {
                assert!(is_decode_error(&e), "not a decode error: {e}");
                let offset = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<DecodeError>())
                    .map(DecodeError::offset)
                    .expect("a DecodeError inside");
                assert!(s.next().now_or_never().expect("ready").is_none());
                return Err(offset);
            }
        }
    }
}

fn encode(chunks: Vec<io::Result<Bytes>>) -> Vec<u8> {
    let mut s = encode_stream(stream::iter(chunks));
    let mut out = Vec::new();
    while let Some(chunk) = s.next().now_or_never().expect("ready") {
        out.extend_from_slice(&chunk.expect("encode"));
    }
    out
}

/// Text that is mostly base64 with some padding, whitespace and foreign bytes, so that valid,
/// nearly valid and invalid bodies are all common.
fn base64ish() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        12 => proptest::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".to_vec()
        ),
        2 => Just(b'='),
        1 => proptest::sample::select(b" \t\r\n".to_vec()),
        1 => any::<u8>(),
    ];
    proptest::collection::vec(byte, 0..64)
}

fn whitespace() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(b" \t\r\n".to_vec()), 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any bytes, encoded and wrapped in whitespace, decode back under any chunking.
    #[test]
    fn valid_bodies_decode_to_their_bytes_under_any_chunking(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        lead in whitespace(),
        trail in whitespace(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut text = lead;
        text.extend_from_slice(STANDARD.encode(&data).as_bytes());
        text.extend_from_slice(&trail);
        prop_assert_eq!(decode(chunks(&text, &cuts)), Ok(data));
    }

    /// Arbitrary text: chunked and one-shot decoding agree (bytes, or the error offset), and
    /// agree with a strict reference decoder on whether the body is valid and what it holds.
    #[test]
    fn arbitrary_text_decodes_like_one_shot_and_like_the_reference(
        text in base64ish(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let chunked = decode(chunks(&text, &cuts));
        let whole = decode(vec![Ok(Bytes::from(text.clone()))]);
        prop_assert_eq!(&chunked, &whole);
        let reference = STANDARD.decode(text.trim_ascii());
        match (&whole, reference) {
            (Ok(ours), Ok(theirs)) => prop_assert_eq!(ours, &theirs),
            (Err(offset), Err(_)) => prop_assert!(*offset <= text.len() as u64),
            (ours, theirs) => prop_assert!(false, "ours {:?}, reference {:?}", ours, theirs),
        }
    }

    /// Fully arbitrary bytes never panic and fail, if at all, with a decode error inside the body.
    #[test]
    fn arbitrary_bytes_never_panic(
        text in proptest::collection::vec(any::<u8>(), 0..256),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        if let Err(offset) = decode(chunks(&text, &cuts)) {
            prop_assert!(offset <= text.len() as u64);
        }
    }

    /// The encoder under any chunking gives the reference encoding.
    #[test]
    fn encoding_under_any_chunking_is_the_reference_encoding(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        prop_assert_eq!(encode(chunks(&data, &cuts)), STANDARD.encode(&data).into_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Any `Range` value: parsing never panics, a parsed range prints back to itself, and
    /// resolving it against any size selects bytes inside the object or is refused.
    #[test]
    fn range_headers_parse_print_back_and_resolve_inside_the_object(
        header in prop_oneof![
            any::<String>(),
            "bytes ?= ?[0-9 ]{0,22}-[0-9 ]{0,22}(,[0-9]{0,3}-)?",
        ],
        size in prop_oneof![Just(0u64), 0u64..4096, any::<u64>()],
    ) {
        if let Some(range) = ByteRange::parse(&header) {
            prop_assert_eq!(ByteRange::parse(&range.to_header()), Some(range));
            if let Ok((first, last)) = range.resolve(size) {
                prop_assert!(first <= last && last < size);
            }
        }
    }

    /// Well-formed single ranges are read exactly.
    #[test]
    fn well_formed_ranges_are_read_exactly(a in any::<u64>(), b in any::<u64>()) {
        let (start, end) = (a.min(b), a.max(b));
        prop_assert_eq!(
            ByteRange::parse(&format!("bytes={start}-{end}")),
            Some(ByteRange::From { start, end: Some(end) })
        );
        prop_assert_eq!(ByteRange::parse(&format!("bytes=-{a}")), Some(ByteRange::Suffix(a)));
    }

    /// Any file name gives a header value of printable ASCII whose `filename*` holds the name.
    #[test]
    fn any_file_name_gives_a_printable_ascii_disposition(name in any::<String>()) {
        let value = content_disposition(&name);
        prop_assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{}", value);
        let encoded = value.split("filename*=UTF-8''").nth(1).expect("filename*");
        let mut decoded = Vec::new();
        let mut bytes = encoded.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                decoded.push(u8::from_str_radix(&hex, 16).expect("hex"));
            } else {
                decoded.push(b);
            }
        }
        prop_assert_eq!(decoded, name.into_bytes());
    }
}
