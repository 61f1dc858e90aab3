//! REST side of the emulator, over real HTTP on 127.0.0.1:0.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn smoke_describe_create_status() {
    let t = TestEmulator::start(Timings::instant()).await;
    let (s, _, v) = t.client.call("describeEnvironments", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"Environments": []}));
    let (s, _, v) = t.client.call("createEnvironment", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let id = v["EnvironmentId"].as_str().unwrap().to_owned();
    assert_eq!(v["Status"], "CREATING");
    let (s, _, v) = t
        .client
        .call("getEnvironmentStatus", json!({"EnvironmentId": id}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"EnvironmentId": id, "Status": "RUNNING"}));
    t.handle.shutdown().await;
}
