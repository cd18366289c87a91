use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use std::io;

use super::*;

/// Deterministic pseudo-random bytes (xorshift), no extra crate needed.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn chunked(data: &[u8], cuts: &[usize]) -> Vec<io::Result<Bytes>> {
    let mut out = Vec::new();
    let mut prev = 0;
    for &c in cuts {
        out.push(Ok(Bytes::copy_from_slice(&data[prev..c])));
        prev = c;
    }
    out.push(Ok(Bytes::copy_from_slice(&data[prev..])));
    out
}

async fn collect<S>(s: S) -> io::Result<Vec<u8>>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    let mut s = s;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk?;
        assert!(!chunk.is_empty(), "empty chunks must not be yielded");
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn decode_chunks(chunks: Vec<io::Result<Bytes>>) -> io::Result<Vec<u8>> {
    collect(decode_stream(stream::iter(chunks))).await
}

async fn decode(text: &[u8]) -> io::Result<Vec<u8>> {
    decode_chunks(vec![Ok(Bytes::copy_from_slice(text))]).await
}

async fn encode_chunks(chunks: Vec<io::Result<Bytes>>) -> Vec<u8> {
    collect(encode_stream(stream::iter(chunks)))
        .await
        .expect("encode")
}

fn err_offset(err: &io::Error) -> u64 {
    assert!(is_decode_error(err), "not a decode error: {err}");
    err.get_ref()
        .and_then(|e| e.downcast_ref::<DecodeError>())
        .expect("DecodeError")
        .offset()
}

#[tokio::test]
async fn round_trip_every_split_of_every_small_length() {
    for len in 0..=20usize {
        let data = random_bytes(len, 7 + len as u64);
        let expected = STANDARD.encode(&data);
        // Every single split point, and every pair of split points.
        for a in 0..=len {
            for b in a..=len {
                let enc = encode_chunks(chunked(&data, &[a, b])).await;
                assert_eq!(enc, expected.as_bytes(), "encode len={len} cuts={a},{b}");
            }
        }
        let elen = expected.len();
        for a in 0..=elen {
            for b in a..=elen {
                let dec = decode_chunks(chunked(expected.as_bytes(), &[a, b]))
                    .await
                    .expect("decode");
                assert_eq!(dec, data, "decode len={len} cuts={a},{b}");
            }
        }
        assert_eq!(encoded_len(len as u64), elen as u64);
    }
}

#[tokio::test]
async fn round_trip_one_byte_chunks_and_large_random() {
    let data = random_bytes(100_003, 42);
    let expected = STANDARD.encode(&data);
    let one_byte: Vec<_> = data
        .iter()
        .map(|b| Ok(Bytes::copy_from_slice(&[*b])))
        .collect();
    assert_eq!(encode_chunks(one_byte).await, expected.as_bytes());
    let one_char: Vec<_> = expected
        .bytes()
        .map(|b| Ok(Bytes::copy_from_slice(&[b])))
        .collect();
    assert_eq!(decode_chunks(one_char).await.expect("decode"), data);

    // Irregular chunk sizes, both directions.
    let cuts: Vec<usize> = (1..)
        .scan(0usize, |acc, i| {
            *acc += (i * 7919) % 4099 + 1;
            Some(*acc)
        })
        .take_while(|&c| c < data.len())
        .collect();
    let enc = encode_chunks(chunked(&data, &cuts)).await;
    assert_eq!(enc, expected.as_bytes());
    let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < expected.len()).collect();
    let dec = decode_chunks(chunked(expected.as_bytes(), &cuts))
        .await
        .expect("decode");
    assert_eq!(dec, data);
    assert_eq!(encoded_len(data.len() as u64), expected.len() as u64);
}

#[tokio::test]
async fn leading_and_trailing_whitespace_is_ignored() {
    assert_eq!(
        decode(b"  \r\n\tSGVsbG8=\r\n  ").await.expect("decode"),
        b"Hello"
    );
    // Whitespace split over chunks and in chunks of its own.
    let chunks = vec![
        Ok(Bytes::from_static(b"\n ")),
        Ok(Bytes::from_static(b" SGVs")),
        Ok(Bytes::from_static(b"bG8=\r")),
        Ok(Bytes::from_static(b"\n")),
        Ok(Bytes::from_static(b"   ")),
    ];
    assert_eq!(decode_chunks(chunks).await.expect("decode"), b"Hello");
    assert_eq!(decode(b"QUJD\n").await.expect("decode"), b"ABC");
}

#[tokio::test]
async fn interior_whitespace_is_rejected() {
    let err = decode(b"SGVs\nbG8=").await.expect_err("interior newline");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(err_offset(&err), 4);
    assert!(
        err.to_string().starts_with("invalid base64 at byte 4"),
        "{err}"
    );

    // The whitespace ends one chunk; data follows in the next one.
    let chunks = vec![
        Ok(Bytes::from_static(b"SGVs\r\n")),
        Ok(Bytes::from_static(b"bG8=")),
    ];
    let err = decode_chunks(chunks)
        .await
        .expect_err("interior newline across chunks");
    assert_eq!(err_offset(&err), 4);

    // Whitespace in a chunk of its own, between data.
    let chunks = vec![
        Ok(Bytes::from_static(b"SGVs")),
        Ok(Bytes::from_static(b" ")),
        Ok(Bytes::from_static(b"bG8=")),
    ];
    assert_eq!(
        err_offset(&decode_chunks(chunks).await.expect_err("space")),
        4
    );
    // Wrapped (MIME-style) base64 is not accepted either.
    assert!(decode(b"QUJD\r\nQUJD").await.is_err());
}

#[tokio::test]
async fn bad_characters_and_padding_are_rejected() {
    let err = decode(b"SGV*bG8=").await.expect_err("bad char");
    assert_eq!(err_offset(&err), 3);
    assert_eq!(
        err.to_string(),
        "invalid base64 at byte 3: invalid character"
    );
    // URL-safe alphabet is not the standard one.
    assert_eq!(err_offset(&decode(b"ab-_").await.expect_err("url-safe")), 2);
    // Padding in the wrong place, data after padding, too much padding.
    assert_eq!(err_offset(&decode(b"S===").await.expect_err("pad at 1")), 1);
    assert_eq!(
        err_offset(&decode(b"SG=V").await.expect_err("data after pad")),
        3
    );
    assert_eq!(
        err_offset(&decode(b"SGVsbG8=QUJD").await.expect_err("after pad")),
        8
    );
    assert_eq!(
        err_offset(&decode(b"QUJD====").await.expect_err("extra pad")),
        4
    );
    assert!(decode(b"SGVsbG8==").await.is_err());
    // Non-canonical trailing bits ("QR==" encodes the same byte as "QQ==").
    assert_eq!(
        err_offset(&decode(b"QUJDQR==").await.expect_err("trailing bits")),
        5
    );
    // Padding split across chunks is fine; data after it in the next chunk is not.
    let ok = vec![Ok(Bytes::from_static(b"QQ=")), Ok(Bytes::from_static(b"="))];
    assert_eq!(decode_chunks(ok).await.expect("decode"), b"A");
    let bad = vec![
        Ok(Bytes::from_static(b"QQ==")),
        Ok(Bytes::from_static(b"QQ==")),
    ];
    assert_eq!(
        err_offset(&decode_chunks(bad).await.expect_err("after pad")),
        4
    );
}

#[tokio::test]
async fn truncated_input_is_rejected() {
    for text in [&b"S"[..], b"SG", b"SGV", b"SGVsbG8", b"SG=", b"SGVsbG8\n"] {
        let err = decode(text).await.expect_err("truncated");
        assert!(is_decode_error(&err));
        assert!(err.to_string().contains("truncated"), "{err}");
    }
    let err = decode(b"SGVsbG8\n").await.expect_err("truncated");
    assert_eq!(err_offset(&err), 7);
}

#[tokio::test]
async fn empty_input_gives_empty_output() {
    assert_eq!(decode_chunks(vec![]).await.expect("decode"), b"");
    assert_eq!(decode(b"").await.expect("decode"), b"");
    assert_eq!(decode(b" \r\n\t ").await.expect("decode"), b"");
    assert_eq!(encode_chunks(vec![]).await, b"");
    assert_eq!(
        encode_chunks(vec![Ok(Bytes::new()), Ok(Bytes::new())]).await,
        b""
    );
    assert_eq!(encoded_len(0), 0);
    assert_eq!(encoded_len(u64::MAX), u64::MAX);
}

#[tokio::test]
async fn agrees_with_base64_standard_on_random_texts() {
    // Differential check: short random texts over a small alphabet that hits every rule.
    const ALPHABET: &[u8] = b"AQgw+/=  \nR";
    let noise = random_bytes(60_000, 99);
    let mut accepted = 0;
    for (n, case) in noise.chunks(12).enumerate() {
        let len = (case[0] % 12) as usize;
        let text: Vec<u8> = case[..len]
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()])
            .collect();
        let expected = STANDARD.decode(text.trim_ascii());
        let cut = n % (text.len() + 1);
        let got = decode_chunks(chunked(&text, &[cut])).await;
        match (&expected, &got) {
            (Ok(e), Ok(g)) => {
                assert_eq!(e, g, "{:?}", String::from_utf8_lossy(&text));
                accepted += 1;
            }
            (Err(_), Err(err)) => assert!(is_decode_error(err)),
            _ => panic!(
                "disagree on {:?}: {expected:?} vs {got:?}",
                String::from_utf8_lossy(&text)
            ),
        }
    }
    assert!(accepted > 100, "too few valid cases: {accepted}");
}

#[tokio::test]
async fn input_errors_pass_through_and_end_the_stream() {
    let chunks = vec![
        Ok(Bytes::from_static(b"QUJD")),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer gone")),
        Ok(Bytes::from_static(b"QUJD")),
    ];
    let mut s = decode_stream(stream::iter(chunks));
    assert_eq!(s.next().await.expect("item").expect("ok"), &b"ABC"[..]);
    let err = s.next().await.expect("item").expect_err("error");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(!is_decode_error(&err));
    assert!(s.next().await.is_none());

    let other = io::Error::new(io::ErrorKind::InvalidData, "something else");
    assert!(!is_decode_error(&other));
}

/// Found by `props::arbitrary_text_decodes_like_one_shot_and_like_the_reference`: an error
/// before interior whitespace was reported at the whitespace when both were in one chunk, and
/// at the error when a cut fell between them.
#[tokio::test]
async fn the_error_offset_is_the_first_offending_byte_wherever_the_chunks_are_cut() {
    let text = b"AAAAAA=AAAAAA\x0eAAAAAAAAAAAAAAAAAAAAA AAA";
    for cut in 0..=text.len() {
        let err = decode_chunks(chunked(text, &[cut]))
            .await
            .expect_err("invalid");
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<DecodeError>());
        assert_eq!(inner.map(DecodeError::offset), Some(7), "cut at {cut}");
    }
}

/// Found by the same property: a non-canonical padded quantum (`AAF=`, trailing bits set)
/// followed by more data was reported at the data after the padding unless a cut fell between.
#[tokio::test]
async fn a_non_canonical_quantum_is_reported_before_the_data_after_it() {
    let text = b"AAAAAAAAAAAAAAF=A";
    for cut in 0..=text.len() {
        let err = decode_chunks(chunked(text, &[cut]))
            .await
            .expect_err("invalid");
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<DecodeError>());
        assert_eq!(inner.map(DecodeError::offset), Some(14), "cut at {cut}");
    }
}
