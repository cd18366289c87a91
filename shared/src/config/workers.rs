//! [`WorkerSecrets`]: individual worker secrets, each bound to the capabilities it may claim
//! (`PERRY_HUB_WORKER_SECRETS`, issue 15 item 10, DEC-25).

use std::fmt;

use super::{ConfigError, Secret};

/// One worker secret and what it allows.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerSecret {
    /// Name of the entry (logs only; the worker keeps the name it sends).
    pub name: String,
    /// The secret itself.
    pub secret: Secret,
    /// Capabilities a worker holding it may claim (lower-case).
    pub capabilities: Vec<String>,
}

impl fmt::Debug for WorkerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSecret")
            .field("name", &self.name)
            .field("secret", &self.secret)
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

/// Every individual worker secret: `name:secret:cap1,cap2;name2:secret2:cap3`. Empty: none.
/// Parsing never fails (clap would print the value, secrets included): a malformed entry is
/// remembered by position and refused by [`WorkerSecrets::validate`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSecrets {
    /// The entries.
    pub entries: Vec<WorkerSecret>,
    malformed: Option<usize>,
}

impl std::str::FromStr for WorkerSecrets {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Self::default();
        for (i, entry) in s.split(';').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            // Never echo the entry: it holds a secret.
            let mut fields = entry.splitn(3, ':');
            let (Some(name), Some(secret), Some(caps)) =
                (fields.next(), fields.next(), fields.next())
            else {
                out.malformed.get_or_insert(i + 1);
                continue;
            };
            let capabilities: Vec<String> = caps
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty())
                .collect();
            out.entries.push(WorkerSecret {
                name: name.trim().to_owned(),
                secret: Secret::new(secret.trim()),
                capabilities,
            });
        }
        Ok(out)
    }
}

impl WorkerSecrets {
    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.malformed.is_none()
    }

    /// The entry whose secret is `presented`, compared in constant time against every entry
    /// (the loop does not stop at a match).
    pub fn find(&self, presented: &str) -> Option<&WorkerSecret> {
        let mut found = None;
        for entry in &self.entries {
            if entry.secret.matches(presented) && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }

    /// Every entry named, at least 16 characters of secret, known capabilities only, no secret
    /// used twice.
    pub fn validate(&self, known: &[&str]) -> Result<(), ConfigError> {
        const VAR: &str = "PERRY_HUB_WORKER_SECRETS";
        if let Some(n) = self.malformed {
            return Err(ConfigError::new(
                VAR,
                format!("entry {n} is not name:secret:capability,capability"),
            ));
        }
        for (i, entry) in self.entries.iter().enumerate() {
            let n = i + 1;
            if entry.name.is_empty() {
                return Err(ConfigError::new(VAR, format!("entry {n} has no name")));
            }
            if entry.secret.expose().len() < 16 {
                return Err(ConfigError::new(
                    VAR,
                    format!(
                        "the secret of {:?} must be at least 16 characters",
                        entry.name
                    ),
                ));
            }
            if entry.capabilities.is_empty() {
                return Err(ConfigError::new(
                    VAR,
                    format!("{:?} allows no capability", entry.name),
                ));
            }
            if let Some(bad) = entry
                .capabilities
                .iter()
                .find(|c| !known.contains(&c.as_str()))
            {
                return Err(ConfigError::new(
                    VAR,
                    format!("{:?}: unknown capability {bad:?}", entry.name),
                ));
            }
            if self.entries[..i]
                .iter()
                .any(|other| other.secret == entry.secret)
            {
                return Err(ConfigError::new(
                    VAR,
                    format!("{:?} reuses the secret of another entry", entry.name),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["linux", "android", "ios-sign", "macos-sign", "windows-sign"];

    #[test]
    fn entries_parse_and_match_their_secret_only() {
        let s: WorkerSecrets =
            "linux-1:linux-secret-0123456789:linux,Android; mac:mac-secret-0123456789:ios-sign,macos-sign;"
                .parse()
                .unwrap();
        s.validate(KNOWN).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries[0].capabilities, vec!["linux", "android"]);
        assert_eq!(
            s.find("mac-secret-0123456789").map(|e| e.name.as_str()),
            Some("mac")
        );
        assert!(s.find("mac-secret-012345678").is_none());
        assert!(s.find("").is_none());
        assert!(!format!("{s:?}").contains("secret-0123456789"));
    }

    #[test]
    fn bad_entries_are_refused_without_echoing_the_secret() {
        let err = "x:short:linux"
            .parse::<WorkerSecrets>()
            .unwrap()
            .validate(KNOWN)
            .unwrap_err();
        assert!(!err.to_string().contains("short"), "{err}");
        let err = "nocolons-secret-0123456789"
            .parse::<WorkerSecrets>()
            .unwrap()
            .validate(KNOWN)
            .unwrap_err();
        assert!(!err.to_string().contains("0123456789"), "{err}");
        assert!("a:aaaaaaaaaaaaaaaa:bogus"
            .parse::<WorkerSecrets>()
            .unwrap()
            .validate(KNOWN)
            .is_err());
        assert!("a:aaaaaaaaaaaaaaaa:linux;b:aaaaaaaaaaaaaaaa:android"
            .parse::<WorkerSecrets>()
            .unwrap()
            .validate(KNOWN)
            .is_err());
        assert!("a:aaaaaaaaaaaaaaaa:"
            .parse::<WorkerSecrets>()
            .unwrap()
            .validate(KNOWN)
            .is_err());
        assert!("".parse::<WorkerSecrets>().unwrap().is_empty());
    }
}
