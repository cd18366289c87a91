//! Importing into a hub whose licence keys are keyed with a pepper (DEC-26): imported keys are
//! stored keyed, repeat imports find them, and an import without the pepper is refused.

use perry_hub_tests::{HubOptions, TestHub};
use serde_json::json;
use shared::{
    auth::hash_token,
    config::Secret,
    license_hash::{self, LicenseHashing},
};

use super::{counts, import::seed, snapshot, LegacyDb};

const PEPPER: &str = "legacy-test-pepper-0123456789";

#[tokio::test]
async fn keys_imported_into_a_peppered_hub_are_stored_keyed_and_keep_working() {
    let hub = TestHub::start_with(HubOptions {
        hub: Some(Box::new(|h| h.license_pepper = Secret::new(PEPPER))),
        ..HubOptions::default()
    })
    .await;
    let hashing = LicenseHashing::new(&Secret::new(PEPPER));
    // A licence the hub stored before its pepper: the import converts it too.
    let (bare_key, _) = hub.insert_license("free").await;
    let db = LegacyDb::create(false).await;
    seed(&db).await;
    let mut args = db.args();
    args.allow_skips = true;
    args.license_pepper = Secret::new(PEPPER);

    let report = ::legacy::run(&args, hub.pool()).await.expect("import");

    assert_eq!(counts(&report, "licenses").0, 4);
    let pro = super::import::PRO_KEY;
    let keyed = hex::encode(hashing.hashes(pro).1);
    let bare = hex::encode(hash_token(pro));
    let db_hub = hub.db();
    assert_eq!(
        db_hub
            .count(
                "licenses",
                &format!("key_hash = UNHEX('{keyed}') AND key_hash_kind = 1")
            )
            .await,
        1
    );
    assert_eq!(
        db_hub
            .count("licenses", &format!("key_hash = UNHEX('{bare}')"))
            .await,
        0
    );
    assert_eq!(db_hub.count("licenses", "key_hash_kind = 0").await, 0);
    for key in [pro, bare_key.as_str()] {
        let (status, body) = hub
            .verify_license(&json!({ "license_key": key }), &[])
            .await;
        assert_eq!((status, &body["valid"]), (200, &json!(true)), "{body}");
    }
    // Again: everything is found by its keyed hash, nothing changes.
    let before = snapshot(hub.pool()).await;
    let again = ::legacy::run(&args, hub.pool())
        .await
        .expect("second import");
    assert_eq!(counts(&again, "licenses").0, 0);
    assert_eq!(snapshot(hub.pool()).await, before);
    // Without the pepper the import would duplicate every key: refused, nothing written.
    args.license_pepper = Secret::default();
    let err = ::legacy::run(&args, hub.pool())
        .await
        .expect_err("no pepper");
    assert!(
        err.to_string().contains("PERRY_HUB_LICENSE_PEPPER"),
        "{err}"
    );
    assert_eq!(snapshot(hub.pool()).await, before);
    // Nor may the hub start with another one.
    let other = LicenseHashing::new(&Secret::new("another-pepper-0123456789"));
    assert!(matches!(
        license_hash::seal_all(hub.pool(), &other).await,
        Err(license_hash::SealError::WrongPepper)
    ));
    db.drop_db().await;
    hub.stop().await;
}
