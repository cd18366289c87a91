//! `<NAME>_FILE`: every secret variable may instead name a file holding the value, as the
//! official MySQL and RabbitMQ images allow, so Docker and Kubernetes secrets can be mounted
//! rather than put in the environment. [`export`] runs before the command line is parsed (and
//! before any thread exists) and copies each file's content into `<NAME>`, without its trailing
//! newline.

use std::path::Path;

use super::ConfigError;

/// Every variable that holds a secret, and so also has a `_FILE` form.
pub const SECRET_VARIABLES: &[&str] = &[
    "PERRY_HUB_WORKER_SECRET",
    "PERRY_HUB_WORKER_SECRETS",
    "PERRY_HUB_LICENSE_PEPPER",
    "PERRY_HUB_ADMIN_SECRET",
    "PERRY_HUB_CREDENTIALS_KEY",
    "PERRY_DB_PASSWORD",
    "DATABASE_URL",
    "AMQP_URL",
    "PERRY_S3_ACCESS_KEY_ID",
    "PERRY_S3_SECRET_ACCESS_KEY",
    "POLAR_ACCESS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "PERRY_LEGACY_DATABASE_URL",
];

/// For each secret variable with a `<NAME>_FILE` set, read the file into `<NAME>`. Setting both
/// `<NAME>` and `<NAME>_FILE` is an error, as is an unreadable file.
///
/// Call it first thing in `main`, before starting the runtime: it changes the environment.
pub fn export() -> Result<(), ConfigError> {
    for (name, value) in resolve(|var| std::env::var_os(var).map(|v| v.into()), read)? {
        std::env::set_var(name, value);
    }
    Ok(())
}

fn read(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// The values to export, from an environment lookup and a file reader (separate for tests).
fn resolve(
    env: impl Fn(&str) -> Option<std::path::PathBuf>,
    read: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let mut values = Vec::new();
    for &name in SECRET_VARIABLES {
        let Some(path) = env(&format!("{name}_FILE")).filter(|p| !p.as_os_str().is_empty()) else {
            continue;
        };
        if env(name).is_some() {
            return Err(ConfigError::new(
                name,
                format!("set either {name} or {name}_FILE, not both"),
            ));
        }
        // The path is not secret; the content is, so it never appears in an error.
        let content = read(&path).map_err(|e| {
            ConfigError::new(
                name,
                format!("cannot read {name}_FILE {}: {e}", path.display()),
            )
        })?;
        let value = content.trim_end_matches(['\n', '\r']).to_owned();
        values.push((name, value));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, path::PathBuf};

    use super::resolve;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<PathBuf> {
        let vars: HashMap<String, PathBuf> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), PathBuf::from(v)))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn files(path: &std::path::Path) -> std::io::Result<String> {
        match path.to_str() {
            Some("/run/secrets/db") => Ok("s3cret\n".into()),
            Some("/run/secrets/key") => Ok("a2V5\r\n".into()),
            _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        }
    }

    #[test]
    fn a_file_variable_is_read_without_its_trailing_newline() {
        let got = resolve(
            env(&[
                ("PERRY_DB_PASSWORD_FILE", "/run/secrets/db"),
                ("PERRY_HUB_CREDENTIALS_KEY_FILE", "/run/secrets/key"),
                ("PERRY_HUB_ADMIN_SECRET", "direct"),
            ]),
            files,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("PERRY_HUB_CREDENTIALS_KEY", "a2V5".to_owned()),
                ("PERRY_DB_PASSWORD", "s3cret".to_owned())
            ]
        );
    }

    #[test]
    fn both_forms_set_is_refused_and_names_the_variable() {
        let err = resolve(
            env(&[
                ("PERRY_DB_PASSWORD_FILE", "/run/secrets/db"),
                ("PERRY_DB_PASSWORD", "x"),
            ]),
            files,
        )
        .unwrap_err();
        assert_eq!(err.variable, "PERRY_DB_PASSWORD");
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_the_path_not_a_value() {
        let err = resolve(env(&[("AMQP_URL_FILE", "/nope")]), files).unwrap_err();
        assert_eq!(err.variable, "AMQP_URL");
        assert!(err.reason.contains("/nope"), "{}", err.reason);
    }

    #[test]
    fn variables_that_are_not_secrets_have_no_file_form() {
        let got = resolve(env(&[("PERRY_DB_HOST_FILE", "/run/secrets/db")]), files).unwrap();
        assert!(got.is_empty());
    }
}
