//! Finisher settings: sweep timing, wait and build timeouts, retention windows and the Azure
//! signing VM. Every field is a flag with an environment variable; the `AZURE_*` names are the
//! seed's.

mod azure;

use std::time::Duration;

pub use azure::AzureSettings;

/// Finisher settings.
#[derive(Debug, Clone, clap::Args)]
// Named explicitly: clap names the group after the struct, and every service has a `Settings`.
#[group(id = "finisher-settings")]
pub struct Settings {
    /// Seconds between sweeps (lost and overdue jobs, wait timeouts, stuck hand-overs, VM power,
    /// queue depth).
    #[arg(
        id = "sweep-secs",
        long = "sweep-secs",
        env = "PERRY_FINISHER_SWEEP_SECS",
        default_value_t = 2
    )]
    pub sweep_secs: u64,
    /// Seconds between retention sweeps (expired tarballs, artifacts, tokens, old events).
    #[arg(
        id = "retention-secs",
        long = "retention-secs",
        env = "PERRY_FINISHER_RETENTION_SECS",
        default_value_t = 60
    )]
    pub retention_secs: u64,
    /// A queued job that no worker takes within this many seconds fails (A8).
    #[arg(
        id = "queue-timeout-secs",
        long = "queue-timeout-secs",
        env = "PERRY_HUB_QUEUE_TIMEOUT_SECS",
        default_value_t = 3600
    )]
    pub queue_timeout_secs: u64,
    /// A stage-1 build held by a worker longer than this many seconds, counted from its
    /// assignment, fails ("Build timed out after …") and the worker is told to cancel it.
    #[arg(
        id = "build-timeout-secs",
        long = "build-timeout-secs",
        env = "PERRY_HUB_BUILD_TIMEOUT_SECS",
        default_value_t = 3600
    )]
    pub build_timeout_secs: u64,
    /// The same limit for stage 2 (signing and packaging on a sign worker).
    #[arg(
        id = "signing-timeout-secs",
        long = "signing-timeout-secs",
        env = "PERRY_HUB_SIGNING_TIMEOUT_SECS",
        default_value_t = 3600
    )]
    pub signing_timeout_secs: u64,
    /// A job still `finishing` this many seconds after its last event (hand-over message lost)
    /// is handed over to stage 2 by the sweep.
    #[arg(
        id = "finishing-grace-secs",
        long = "finishing-grace-secs",
        env = "PERRY_FINISHER_FINISHING_GRACE_SECS",
        default_value_t = 30
    )]
    pub finishing_grace_secs: u64,
    /// Days the events of a finished job are kept for replay.
    #[arg(
        id = "event-retention-days",
        long = "event-retention-days",
        env = "PERRY_HUB_EVENT_RETENTION_DAYS",
        default_value_t = 7
    )]
    pub event_retention_days: u64,
    /// Seconds a download token is kept after it expired or was used (so a late request still
    /// gets 410 rather than 404).
    #[arg(
        id = "token-grace-secs",
        long = "token-grace-secs",
        env = "PERRY_FINISHER_TOKEN_GRACE_SECS",
        default_value_t = 3600
    )]
    pub token_grace_secs: u64,
    /// Seconds published outbox rows are kept.
    #[arg(
        id = "outbox-retention-secs",
        long = "outbox-retention-secs",
        env = "PERRY_FINISHER_OUTBOX_RETENTION_SECS",
        default_value_t = 3600
    )]
    pub outbox_retention_secs: u64,
    /// Seconds rate-limit hits are kept (the longest window is one hour).
    #[arg(
        id = "rate-retention-secs",
        long = "rate-retention-secs",
        env = "PERRY_FINISHER_RATE_RETENTION_SECS",
        default_value_t = 7200
    )]
    pub rate_retention_secs: u64,
    /// Seconds rows of disconnected (or silent) workers are kept.
    #[arg(
        id = "worker-retention-secs",
        long = "worker-retention-secs",
        env = "PERRY_FINISHER_WORKER_RETENTION_SECS",
        default_value_t = 86_400
    )]
    pub worker_retention_secs: u64,
    /// A partial upload (a filesystem temporary file not written, an S3 multipart upload that
    /// got no part) for this many seconds was abandoned by a killed process and is removed by
    /// the retention sweep (DEC-31).
    #[arg(
        id = "partial-upload-age-secs",
        long = "partial-upload-age-secs",
        env = "PERRY_FINISHER_PARTIAL_UPLOAD_AGE_SECS",
        default_value_t = 900
    )]
    pub partial_upload_age_secs: u64,
    /// A worker row not refreshed for this many seconds is not counted as connected.
    #[arg(
        id = "worker-stale-secs",
        long = "worker-stale-secs",
        env = "PERRY_FINISHER_WORKER_STALE_SECS",
        default_value_t = 120
    )]
    pub worker_stale_secs: u64,
    /// A job queued this many seconds while its target's broker queue holds fewer messages
    /// than it has queued jobs (a purged queue, a lost publish) is announced again.
    #[arg(
        id = "reannounce-secs",
        long = "reannounce-secs",
        env = "PERRY_FINISHER_REANNOUNCE_SECS",
        default_value_t = 60
    )]
    pub reannounce_secs: u64,
    /// The Azure signing VM.
    #[command(flatten)]
    pub azure: AzureSettings,
}

impl Settings {
    /// Check the settings; the error names the variable.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("PERRY_FINISHER_SWEEP_SECS", self.sweep_secs),
            ("PERRY_FINISHER_RETENTION_SECS", self.retention_secs),
            ("PERRY_HUB_QUEUE_TIMEOUT_SECS", self.queue_timeout_secs),
            ("PERRY_HUB_BUILD_TIMEOUT_SECS", self.build_timeout_secs),
            ("PERRY_HUB_SIGNING_TIMEOUT_SECS", self.signing_timeout_secs),
            ("PERRY_FINISHER_WORKER_STALE_SECS", self.worker_stale_secs),
            ("PERRY_FINISHER_REANNOUNCE_SECS", self.reannounce_secs),
            (
                "PERRY_FINISHER_PARTIAL_UPLOAD_AGE_SECS",
                self.partial_upload_age_secs,
            ),
            (
                "PERRY_AZURE_HTTP_TIMEOUT_SECS",
                self.azure.http_timeout_secs,
            ),
            (
                "PERRY_AZURE_SIGN_TIMEOUT_SECS",
                self.azure.sign_timeout_secs,
            ),
        ];
        for (variable, value) in positive {
            anyhow::ensure!(
                value > 0,
                "invalid configuration: {variable}: must be at least 1"
            );
        }
        anyhow::ensure!(
            self.azure.max_attempts > 0,
            "invalid configuration: PERRY_AZURE_MAX_ATTEMPTS: must be at least 1"
        );
        if self.azure.enabled() {
            for (variable, url) in [
                ("PERRY_AZURE_LOGIN_URL", &self.azure.login_url),
                ("PERRY_AZURE_MANAGEMENT_URL", &self.azure.management_url),
            ] {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| anyhow::anyhow!("invalid configuration: {variable}: {e}"))?;
                anyhow::ensure!(
                    matches!(parsed.scheme(), "http" | "https"),
                    "invalid configuration: {variable}: must be an http(s) URL"
                );
            }
        }
        Ok(())
    }

    /// How long a worker may hold an attempt of `stage` (1 = build, 2 = signing), in seconds.
    pub fn stage_timeout_secs(&self, stage: i16) -> u64 {
        if stage >= 2 {
            self.signing_timeout_secs
        } else {
            self.build_timeout_secs
        }
    }

    /// Interval of the periodic sweeps.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_secs)
    }
}

/// Milliseconds in `secs` seconds, saturating.
pub fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// `secs` as "N minutes" when whole minutes, else "N seconds" (for messages to users).
pub fn human(secs: u64) -> String {
    match secs {
        3600 => "1 hour".to_owned(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        60 => "1 minute".to_owned(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "1 second".to_owned(),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        s: Settings,
    }

    fn parse(args: &[&str]) -> Settings {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        match P::try_parse_from(all) {
            Ok(p) => p.s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn azure_is_off_unless_all_six_variables_are_set() {
        let s = parse(&["--azure-tenant-id", "t", "--azure-client-secret", "x"]);
        assert!(!s.azure.enabled());
        assert_eq!(
            s.azure.missing(),
            vec![
                "AZURE_CLIENT_ID",
                "AZURE_SUBSCRIPTION_ID",
                "AZURE_VM_RESOURCE_GROUP",
                "AZURE_VM_NAME"
            ]
        );
        let s = parse(&[
            "--azure-tenant-id",
            "t",
            "--azure-client-id",
            "c",
            "--azure-client-secret",
            "x",
            "--azure-subscription-id",
            "s",
            "--azure-vm-resource-group",
            "rg",
            "--azure-vm-name",
            "vm",
        ]);
        assert!(s.azure.enabled());
        s.validate().unwrap();
    }

    #[test]
    fn defaults_follow_the_protocol() {
        let s = parse(&[]);
        assert_eq!(s.azure.idle_secs, 1800);
        assert_eq!(s.azure.start_retry_secs, 300);
        assert_eq!(s.azure.sign_timeout_secs, 1200);
        assert_eq!(s.azure.http_timeout_secs, 15);
        assert_eq!(s.queue_timeout_secs, 3600);
        assert_eq!((s.build_timeout_secs, s.signing_timeout_secs), (3600, 3600));
        let s = parse(&[
            "--build-timeout-secs",
            "60",
            "--signing-timeout-secs",
            "120",
        ]);
        assert_eq!(
            (s.stage_timeout_secs(1), s.stage_timeout_secs(2)),
            (60, 120)
        );
        assert!(parse(&["--build-timeout-secs", "0"])
            .validate()
            .unwrap_err()
            .to_string()
            .contains("PERRY_HUB_BUILD_TIMEOUT_SECS"));
        let s = parse(&[]);
        assert_eq!(s.azure.management_url, "https://management.azure.com");
        assert!(s.azure.prewarm, "the prewarm is on unless turned off");
        assert!(!parse(&["--azure-prewarm", "false"]).azure.prewarm);
        s.validate().unwrap();
    }

    #[test]
    fn secret_is_redacted_and_bad_values_name_the_variable() {
        let s = parse(&[
            "--azure-client-secret",
            "very-secret-value",
            "--sweep-secs",
            "0",
        ]);
        assert!(!format!("{s:?}").contains("very-secret-value"));
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("PERRY_FINISHER_SWEEP_SECS"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(3600), "1 hour");
        assert_eq!(human(1200), "20 minutes");
        assert_eq!(human(60), "1 minute");
        assert_eq!(human(90), "90 seconds");
        assert_eq!(ms(2), 2000);
    }
}
