//! Settings of the Windows signing VM on Azure (PROTOCOL §5.4): the six `AZURE_*` variables,
//! the endpoints, and the timing of starts, retries, idle deallocation and the prewarm (DEC-15).

use std::time::Duration;

use shared::config::Secret;

/// The Windows signing VM on Azure. Off unless all six `AZURE_*` variables are set.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "finisher-azure")]
pub struct AzureSettings {
    /// Azure AD tenant of the service principal.
    #[arg(
        id = "azure-tenant-id",
        long = "azure-tenant-id",
        env = "AZURE_TENANT_ID",
        default_value = ""
    )]
    pub tenant_id: String,
    /// Client (application) id of the service principal.
    #[arg(
        id = "azure-client-id",
        long = "azure-client-id",
        env = "AZURE_CLIENT_ID",
        default_value = ""
    )]
    pub client_id: String,
    /// Client secret of the service principal.
    #[arg(
        id = "azure-client-secret",
        long = "azure-client-secret",
        env = "AZURE_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub client_secret: Secret,
    /// Subscription holding the VM.
    #[arg(
        id = "azure-subscription-id",
        long = "azure-subscription-id",
        env = "AZURE_SUBSCRIPTION_ID",
        default_value = ""
    )]
    pub subscription_id: String,
    /// Resource group of the VM.
    #[arg(
        id = "azure-vm-resource-group",
        long = "azure-vm-resource-group",
        env = "AZURE_VM_RESOURCE_GROUP",
        default_value = ""
    )]
    pub resource_group: String,
    /// Name of the VM.
    #[arg(
        id = "azure-vm-name",
        long = "azure-vm-name",
        env = "AZURE_VM_NAME",
        default_value = ""
    )]
    pub vm_name: String,
    /// Base URL of the Microsoft identity platform (token endpoint).
    #[arg(
        id = "azure-login-url",
        long = "azure-login-url",
        env = "PERRY_AZURE_LOGIN_URL",
        default_value = "https://login.microsoftonline.com"
    )]
    pub login_url: String,
    /// Base URL of Azure Resource Manager.
    #[arg(
        id = "azure-management-url",
        long = "azure-management-url",
        env = "PERRY_AZURE_MANAGEMENT_URL",
        default_value = "https://management.azure.com"
    )]
    pub management_url: String,
    /// Deallocate the VM after this many seconds without `windows-sign` work queued or running.
    #[arg(
        id = "azure-idle-secs",
        long = "azure-idle-secs",
        env = "PERRY_AZURE_IDLE_SECS",
        default_value_t = 1800
    )]
    pub idle_secs: u64,
    /// Call `start` once more if sign jobs are still unassigned this many seconds after it (A14).
    #[arg(
        id = "azure-start-retry-secs",
        long = "azure-start-retry-secs",
        env = "PERRY_AZURE_START_RETRY_SECS",
        default_value_t = 300
    )]
    pub start_retry_secs: u64,
    /// Fail sign jobs still unassigned this many seconds after the first start call (A14).
    #[arg(
        id = "azure-sign-timeout-secs",
        long = "azure-sign-timeout-secs",
        env = "PERRY_AZURE_SIGN_TIMEOUT_SECS",
        default_value_t = 1200
    )]
    pub sign_timeout_secs: u64,
    /// Wait after a failed start or deallocate before calling again.
    #[arg(
        id = "azure-failure-backoff-secs",
        long = "azure-failure-backoff-secs",
        env = "PERRY_AZURE_FAILURE_BACKOFF_SECS",
        default_value_t = 60
    )]
    pub failure_backoff_secs: u64,
    /// Timeout of each Azure HTTP request.
    #[arg(
        id = "azure-http-timeout-secs",
        long = "azure-http-timeout-secs",
        env = "PERRY_AZURE_HTTP_TIMEOUT_SECS",
        default_value_t = 15
    )]
    pub http_timeout_secs: u64,
    /// Tries per Azure call when it fails transiently (5xx, 429, timeouts).
    #[arg(
        id = "azure-max-attempts",
        long = "azure-max-attempts",
        env = "PERRY_AZURE_MAX_ATTEMPTS",
        default_value_t = 4
    )]
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles on each retry (a `Retry-After` header wins).
    #[arg(
        id = "azure-retry-base-ms",
        long = "azure-retry-base-ms",
        env = "PERRY_AZURE_RETRY_BASE_MS",
        default_value_t = 1000
    )]
    pub retry_base_ms: u64,
    /// Longest wait for an accepted start/deallocate to finish (async-operation polling).
    #[arg(
        id = "azure-poll-timeout-secs",
        long = "azure-poll-timeout-secs",
        env = "PERRY_AZURE_POLL_TIMEOUT_SECS",
        default_value_t = 300
    )]
    pub poll_timeout_secs: u64,
    /// Start the VM as soon as a Windows build's stage 1 is assigned, so its boot overlaps the
    /// cross-compile, and keep it from idling out while stage 1 runs (DEC-15).
    #[arg(
        id = "azure-prewarm",
        long = "azure-prewarm",
        env = "PERRY_AZURE_PREWARM",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub prewarm: bool,
}

impl AzureSettings {
    /// The `AZURE_*` variables that are unset (all six are needed).
    pub fn missing(&self) -> Vec<&'static str> {
        let fields = [
            ("AZURE_TENANT_ID", self.tenant_id.trim().is_empty()),
            ("AZURE_CLIENT_ID", self.client_id.trim().is_empty()),
            ("AZURE_CLIENT_SECRET", self.client_secret.is_empty()),
            (
                "AZURE_SUBSCRIPTION_ID",
                self.subscription_id.trim().is_empty(),
            ),
            (
                "AZURE_VM_RESOURCE_GROUP",
                self.resource_group.trim().is_empty(),
            ),
            ("AZURE_VM_NAME", self.vm_name.trim().is_empty()),
        ];
        fields
            .into_iter()
            .filter(|(_, empty)| *empty)
            .map(|(name, _)| name)
            .collect()
    }

    /// Whether VM control is on.
    pub fn enabled(&self) -> bool {
        self.missing().is_empty()
    }

    /// Timeout of one HTTP request.
    pub fn http_timeout(&self) -> Duration {
        Duration::from_secs(self.http_timeout_secs)
    }
}
