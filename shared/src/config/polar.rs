//! The Polar overage billing fragment.

use clap::Args;

use super::Secret;

/// Usage-based billing of pro overage through Polar (§6). Off unless both values are set.
#[derive(Debug, Clone, Default, Args)]
pub struct PolarConfig {
    /// Polar API token for overage metering.
    #[arg(
        id = "polar-access-token",
        long = "polar-access-token",
        env = "POLAR_ACCESS_TOKEN",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub access_token: Secret,
    /// Polar meter id of a publish.
    #[arg(
        id = "polar-meter-publish",
        long = "polar-meter-publish",
        env = "POLAR_METER_PUBLISH",
        default_value = ""
    )]
    pub meter_publish: String,
    /// Polar API base URL.
    #[arg(
        id = "polar-api-url",
        long = "polar-api-url",
        env = "PERRY_POLAR_API_URL",
        default_value = "https://api.polar.sh"
    )]
    pub api_url: String,
}

impl PolarConfig {
    /// Whether overage billing is configured.
    pub fn enabled(&self) -> bool {
        !self.access_token.is_empty() && !self.meter_publish.is_empty()
    }
}
