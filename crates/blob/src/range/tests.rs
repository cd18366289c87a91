use super::*;

#[test]
fn ranges_parse_and_resolve() {
    assert_eq!(
        ByteRange::parse("bytes=0-99"),
        Some(ByteRange::From {
            start: 0,
            end: Some(99)
        })
    );
    assert_eq!(
        ByteRange::parse("bytes=100-"),
        Some(ByteRange::From {
            start: 100,
            end: None
        })
    );
    assert_eq!(ByteRange::parse("bytes=-500"), Some(ByteRange::Suffix(500)));
    assert_eq!(
        ByteRange::parse(" bytes= 5 - 6 "),
        Some(ByteRange::From {
            start: 5,
            end: Some(6)
        })
    );
    for bad in [
        "bytes=5-4",
        "bytes=0-1,3-4",
        "items=0-1",
        "bytes=-",
        "bytes=a-b",
        "bytes=+1-2",
        "bytes=1",
    ] {
        assert_eq!(ByteRange::parse(bad), None, "{bad}");
    }
    for r in [
        ByteRange::From {
            start: 1,
            end: Some(2),
        },
        ByteRange::From {
            start: 3,
            end: None,
        },
        ByteRange::Suffix(4),
    ] {
        assert_eq!(ByteRange::parse(&r.to_header()), Some(r));
    }
    assert_eq!(ByteRange::Suffix(10).resolve(4).expect("ok"), (0, 3));
    assert_eq!(
        ByteRange::From {
            start: 2,
            end: Some(99)
        }
        .resolve(4)
        .expect("ok"),
        (2, 3)
    );
    assert!(ByteRange::From {
        start: 0,
        end: None
    }
    .resolve(0)
    .is_err());
    assert!(ByteRange::Suffix(1).resolve(0).is_err());
    assert!(ByteRange::From {
        start: 4,
        end: None
    }
    .resolve(4)
    .is_err());
    assert_eq!(
        parse_content_range("bytes 0-99/1000"),
        Some((1000, (0, 99)))
    );
    assert_eq!(parse_content_range("bytes */1000"), None);
    assert_eq!(parse_content_range("bytes 5-4/1000"), None);
}
