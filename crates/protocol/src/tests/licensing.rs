//! §6: tier limits.

use serde_json::json;

use crate::Tier;

#[test]
fn tier_limits_match_section_6() {
    assert_eq!(Tier::Free.platforms(), vec!["macos"]);
    assert_eq!(
        Tier::Pro.platforms(),
        vec!["macos", "ios", "android", "windows", "linux"]
    );
    assert_eq!((Tier::Free.priority(), Tier::Pro.priority()), (1, 10));
    assert_eq!(
        (
            Tier::Free.monthly_publish_limit(),
            Tier::Pro.monthly_publish_limit()
        ),
        (15, 50)
    );
    assert_eq!(
        (
            Tier::Free.hourly_build_limit(),
            Tier::Pro.hourly_build_limit()
        ),
        (5, 30)
    );
    assert_eq!(
        (Tier::Free.verify_limit(), Tier::Pro.verify_limit()),
        (2, 20)
    );
    assert_eq!(Tier::Free.tarball_cap_bytes(), 52_428_800);
    assert_eq!(Tier::Pro.tarball_cap_bytes(), 209_715_200);
    assert_eq!(Tier::parse("free"), Some(Tier::Free));
    assert_eq!(Tier::parse("pro"), Some(Tier::Pro));
    assert_eq!(Tier::parse("enterprise"), None);
    assert_eq!(Tier::parse("PRO"), None);
    for t in [Tier::Free, Tier::Pro] {
        assert_eq!(Tier::parse(t.as_str()), Some(t));
        assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
    }
}
