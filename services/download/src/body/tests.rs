use bytes::Bytes;
use futures_util::TryStreamExt;

use super::*;

#[test]
fn accept_negotiation_keeps_base64_unless_octet_stream_is_asked_for() {
    assert!(wants_raw("application/octet-stream"));
    assert!(wants_raw("Application/Octet-Stream; q=0.5"));
    assert!(wants_raw("text/plain;q=0.2, application/octet-stream"));
    assert!(wants_raw("text/plain, application/octet-stream"));
    assert!(!wants_raw("*/*"));
    assert!(!wants_raw("text/plain"));
    assert!(!wants_raw("application/*"));
    assert!(!wants_raw("application/octet-stream;q=0"));
    assert!(!wants_raw("application/octet-stream;q=0.1, text/plain"));
    assert!(!wants_raw("application/octet-stream;q=nonsense"));
    let mut headers = HeaderMap::new();
    assert_eq!(Encoding::negotiate(&headers), Encoding::Base64);
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    headers.append(
        header::ACCEPT,
        HeaderValue::from_static("application/octet-stream"),
    );
    assert_eq!(Encoding::negotiate(&headers), Encoding::Raw);
}

#[test]
fn ranges_apply_only_to_raw_bodies() {
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, HeaderValue::from_static("bytes=10-19"));
    assert_eq!(requested_range(&headers, Encoding::Base64), None);
    assert_eq!(
        requested_range(&headers, Encoding::Raw),
        Some(ByteRange::From {
            start: 10,
            end: Some(19)
        })
    );
    headers.insert(header::RANGE, HeaderValue::from_static("bytes=1-2,5-6"));
    assert_eq!(requested_range(&headers, Encoding::Raw), None);
}

#[test]
fn filenames_keep_only_safe_characters() {
    assert_eq!(attachment_filename("app-1.0_x.tar.gz"), "app-1.0_x.tar.gz");
    assert_eq!(attachment_filename("my app (1).exe"), "my_app__1_.exe");
    assert_eq!(attachment_filename("a\"b\r\nc/d\\é"), "a_b__c_d__");
    assert_eq!(attachment_filename(""), "artifact");
    assert_eq!(
        content_disposition("x y.zip"),
        HeaderValue::from_static("attachment; filename=\"x_y.zip\"")
    );
}

fn object(data: &'static [u8], chunk: usize, range: Option<(u64, u64)>) -> BlobObject {
    let chunks: Vec<io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::from_static(c)))
        .collect();
    BlobObject {
        size: data.len() as u64,
        range,
        body: Box::pin(futures_util::stream::iter(chunks)),
    }
}

async fn body_of(resp: Response) -> io::Result<Vec<u8>> {
    let stream = resp.into_body().into_data_stream();
    let chunks: Vec<Bytes> = stream.map_err(io::Error::other).try_collect().await?;
    Ok(chunks.concat())
}

#[tokio::test]
async fn base64_response_has_the_encoded_length_and_decodes_to_the_bytes() {
    use base64::Engine as _;
    let data: &'static [u8] = b"hello, perry hub \x00\x01\x02\xff";
    let resp = response(
        object(data, 5, None),
        Encoding::Base64,
        &Meta {
            kind: "artifact",
            filename: Some("a b"),
            sha256: Some((ARTIFACT_SHA256, "abc")),
        },
    );
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "text/plain");
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"a_b\""
    );
    assert_eq!(h[ARTIFACT_SHA256], "abc");
    assert!(h.get(header::ACCEPT_RANGES).is_none());
    let body = body_of(resp).await.expect("body");
    assert_eq!(
        h[header::CONTENT_LENGTH].to_str().ok(),
        Some(body.len().to_string().as_str())
    );
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .expect("base64");
    assert_eq!(decoded, data);
}

#[tokio::test]
async fn raw_range_response_is_206_with_content_range() {
    let data: &'static [u8] = b"0123456789";
    let mut obj = object(&data[2..6], 3, Some((2, 5)));
    obj.size = data.len() as u64;
    let resp = response(obj, Encoding::Raw, &Meta::default());
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()[header::CONTENT_RANGE], "bytes 2-5/10");
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], "4");
    assert_eq!(resp.headers()[header::ACCEPT_RANGES], "bytes");
    assert_eq!(body_of(resp).await.expect("body"), b"2345");
}

#[tokio::test]
async fn a_short_or_long_object_fails_the_body_instead_of_lying() {
    let mut short = object(b"abc", 2, None);
    short.size = 5;
    let err = body_of(response(short, Encoding::Raw, &Meta::default()))
        .await
        .expect_err("short");
    assert!(err.to_string().contains("ended early"), "{err}");
    let mut long = object(b"abcdef", 2, None);
    long.size = 3;
    let err = body_of(response(long, Encoding::Raw, &Meta::default()))
        .await
        .expect_err("long");
    assert!(err.to_string().contains("longer than announced"), "{err}");
}
