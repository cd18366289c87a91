//! Least privilege for workers (issue 15 item 10, DEC-25): a `job_assign` carries only the
//! credentials its target uses. The CLI sends one object of every signing secret it knows;
//! each worker reads only its own fields (builder-linux `BuildCredentials`: the Android keystore
//! and the Google Play service account; builder-macos: Apple; builder-windows: the PFX and
//! Azure Trusted Signing), so a build box never receives Apple or Windows signing material.

use serde_json::{Map, Value};

/// Key prefixes of the fields each kind of job may receive.
fn allowed_prefixes(target: &str) -> &'static [&'static str] {
    match target {
        // builder-linux: Android signing and the Play Store upload.
        "linux" | "android" => &["android", "google_play"],
        // builder-macos signs and notarises.
        "ios-sign" | "macos-sign" => &["apple", "provisioning_profile"],
        // builder-windows on the signing VM: PFX or Azure Trusted Signing.
        "windows-sign" => &["windows", "azure"],
        // Stage one of two-stage builds (windows, ios, macos), tvos, web, …: nothing to sign.
        _ => &[],
    }
}

/// The part of `credentials` that a job for `target` may receive (an object, possibly empty).
pub fn scope(target: &str, credentials: Value) -> Value {
    let prefixes = allowed_prefixes(target);
    let Value::Object(fields) = credentials else {
        return Value::Object(Map::new());
    };
    let kept: Map<String, Value> = fields
        .into_iter()
        .filter(|(key, _)| prefixes.iter().any(|p| key.starts_with(p)))
        .collect();
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn everything() -> Value {
        json!({
            "apple_team_id": "T", "apple_p8_key": "p8", "provisioning_profile_base64": "pp",
            "android_keystore_base64": "ks", "android_keystore_password": "pw",
            "android_key_alias": "a", "android_key_password": "kp",
            "google_play_service_account_json": "{}",
            "windows_pfx_base64": "pfx", "windows_pfx_password": "wp",
            "azure_client_secret": "az", "unknown_field": "x"
        })
    }

    #[test]
    fn the_linux_builder_gets_only_android_and_play_fields() {
        for target in ["linux", "android"] {
            let got = scope(target, everything());
            let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 5, "{target}: {got}");
            assert!(keys
                .iter()
                .all(|k| k.starts_with("android") || k.starts_with("google_play")));
        }
    }

    #[test]
    fn signing_material_goes_only_to_its_sign_target() {
        let apple = scope("ios-sign", everything());
        assert_eq!(apple.as_object().unwrap().len(), 3, "{apple}");
        assert_eq!(scope("macos-sign", everything()), apple);
        let windows = scope("windows-sign", everything());
        assert_eq!(windows.as_object().unwrap().len(), 3, "{windows}");
        for stage_one in ["windows", "ios", "macos", "tvos", "web"] {
            assert_eq!(scope(stage_one, everything()), json!({}), "{stage_one}");
        }
        assert_eq!(scope("linux", json!(null)), json!({}));
    }
}
