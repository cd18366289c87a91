use super::*;

#[test]
fn content_disposition_is_safe() {
    assert_eq!(
        content_disposition("app.tar.gz"),
        "attachment; filename=\"app.tar.gz\"; filename*=UTF-8''app.tar.gz"
    );
    assert_eq!(
        content_disposition("my \"app\" é.exe"),
        "attachment; filename=\"my _app_ _.exe\"; filename*=UTF-8''my%20%22app%22%20%C3%A9.exe"
    );
    assert!(content_disposition("").contains("filename=\"download\""));
    assert!(!content_disposition("a\r\nb").contains('\n'));
}
