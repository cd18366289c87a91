//! Wire types of the Perry Hub contract (`docs/PROTOCOL.md`).
//!
//! Every HTTP body and WebSocket frame exchanged with the unmodified `perry publish` CLI and the
//! existing build workers is defined here with serde, so no JSON is ever built by hand (D24).
//! The modules are private; every type is re-exported at the crate root.
//!
//! - `errors`: HTTP errors [`ErrorCode`], [`ErrorBody`], [`ErrorDetail`], [`UsageInfo`], the
//!   WebSocket [`WsErrorCode`] and [`LOGIN_URL`] (§2.2).
//! - `bodies`: HTTP bodies [`StatusResponse`], [`RegisterRequest`], … [`AdminWorkersResponse`]
//!   (§3), one submodule per resource (`license`, `account`, `admin`).
//! - `licensing`: [`Tier`] and its limits (§6).
//! - `incoming`: WebSocket frames received by the hub, [`Incoming`] (§4.2, §4.4).
//! - `parse`: [`parse_incoming`], which validates them and explains every rejection with a
//!   [`FrameError`].
//! - `outgoing`: WebSocket frames sent by the hub, [`Outgoing`] (§4.3, §4.5); `relay` turns a
//!   worker's job events into CLI frames ([`Outgoing::from_worker_event`]).
//! - `redacted`: [`Redacted`], the `Debug`-hiding wrapper for secrets.
//!
//! Secrets carried by these types never appear in `Debug` output (D3, D9): they are either
//! wrapped in [`Redacted`] or the type has a hand-written `Debug`.

mod bodies;
mod errors;
mod incoming;
mod licensing;
mod outgoing;
mod parse;
mod redacted;
mod relay;

#[cfg(test)]
mod tests;

pub use bodies::{
    AccountCreateRequest, AccountCreateResponse, AccountResponse, AccountUpdateRequest,
    AccountUsage, AdminWorker, AdminWorkersResponse, ArtifactUploadResponse, BuildResponse,
    OkResponse, RegisterRequest, RegisterResponse, StatusResponse, UpdatePerryRequest,
    UpdatePerryResponse, VerifyRequest, VerifyResponse, WorkerSummary,
};
pub use errors::{ErrorBody, ErrorCode, ErrorDetail, UsageInfo, WsErrorCode, LOGIN_URL};
pub use incoming::{ArtifactInfo, Incoming, ReportedArtifact};
pub use licensing::Tier;
pub use outgoing::Outgoing;
pub use parse::{frame_job_id, parse_incoming, FrameError, INCOMING_TYPES};
pub use redacted::{Redacted, RedactedString};

/// Largest `job_assign` the hub sends (DEC-17): the manifest and the credentials, which carry
/// certificates and keystores base64-encoded, travel in it. Ingest refuses a submission whose
/// manifest and credentials would not fit (413); the dispatcher's write limit leaves room for it.
pub const MAX_JOB_ASSIGN_BYTES: usize = 8 * 1024 * 1024;

/// What a `job_assign` carries besides the manifest and the credentials (ids, token, URLs), at
/// most.
pub const JOB_ASSIGN_OVERHEAD_BYTES: usize = 16 * 1024;

/// Longest `log` line the hub keeps and relays, in bytes; a longer one is cut and marked.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;
