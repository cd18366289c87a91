//! Helpers shared by the scenarios of this folder.

use perry_hub_tests::WsClient;
use serde_json::Value;

pub(super) fn frame_types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Receive frames until `complete`; returns all of them.
pub(super) async fn until_complete(cli: &mut WsClient) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let f = cli.recv().await.expect("socket closed before complete");
        let done = f["type"] == "complete";
        out.push(f);
        if done {
            return out;
        }
    }
}
