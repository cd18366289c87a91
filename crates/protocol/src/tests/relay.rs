//! §4.5: worker job events relayed to CLI subscribers.

use super::{
    parse_json, BUILD_COMPLETE, COMPLETE, ERROR, HELLO, LOG, PROGRESS, PUBLISHED, STAGE,
    UPDATE_RESULT,
};
use crate::relay::percent_to_u8;
use crate::{parse_incoming, Outgoing};

#[test]
fn relays_worker_events() {
    let relayed = |text: &str| Outgoing::from_worker_event(&parse_incoming(text).unwrap());
    assert_eq!(
        relayed(PROGRESS),
        Some(Outgoing::Progress {
            job_id: "j1".into(),
            stage: "compiling".into(),
            percent: 100,
            message: None,
        })
    );
    assert_eq!(
        parse_json(&relayed(STAGE).unwrap().to_json()),
        parse_json(STAGE)
    );
    assert_eq!(
        parse_json(&relayed(LOG).unwrap().to_json()),
        parse_json(LOG)
    );
    assert_eq!(
        parse_json(&relayed(PUBLISHED).unwrap().to_json()),
        parse_json(PUBLISHED)
    );
    assert_eq!(
        parse_json(&relayed(ERROR).unwrap().to_json()),
        parse_json(ERROR)
    );
    assert_eq!(
        relayed(r#"{"type":"queue_update","job_id":"j1"}"#),
        Some(Outgoing::QueueUpdate {
            job_id: "j1".into(),
            position: 0,
            message: String::new(),
            estimated_wait_secs: None,
        })
    );
    for (percent, expected) in [("49.5", 50), ("0.4", 0), ("99.6", 100), ("12", 12)] {
        let text =
            format!(r#"{{"type":"progress","job_id":"j1","stage":"s","percent":{percent}}}"#);
        match relayed(&text) {
            Some(Outgoing::Progress { percent, .. }) => assert_eq!(percent, expected),
            other => panic!("{other:?}"),
        }
    }
    for text in [
        HELLO,
        COMPLETE,
        UPDATE_RESULT,
        BUILD_COMPLETE,
        r#"{"type":"subscribe","job_id":"j1"}"#,
        r#"{"type":"cancel","job_id":"j1"}"#,
    ] {
        assert_eq!(relayed(text), None, "{text}");
    }
}

#[test]
fn percent_conversion_clamps() {
    assert_eq!(percent_to_u8(f64::NAN), 0);
    assert_eq!(percent_to_u8(-5.0), 0);
    assert_eq!(percent_to_u8(250.0), 100);
    assert_eq!(percent_to_u8(f64::INFINITY), 100);
}
