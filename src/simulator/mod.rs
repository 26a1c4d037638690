//! Provider simulator (being written; this placeholder keeps the API).
use std::net::SocketAddr;
pub struct SimConfig {
    pub listen: SocketAddr,
    pub seed: u64,
    pub orgs: u32,
    pub history_days: u32,
}
pub struct SimHandle {
    pub addr: SocketAddr,
}
impl SimHandle {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn openai_base_url(&self, org: &str) -> String {
        format!("{}/openai/{org}/v1", self.base_url())
    }
    pub fn anthropic_base_url(&self, org: &str) -> String {
        format!("{}/anthropic/{org}", self.base_url())
    }
    pub async fn stop(self) {}
    pub async fn restate(&self, _provider: &str, _org: &str, _day: &str, _factor: &str) {}
}
pub async fn start(_config: SimConfig) -> std::io::Result<SimHandle> {
    Err(std::io::Error::other("placeholder"))
}
pub fn org_ids(orgs: u32) -> Vec<String> {
    (1..=orgs).map(|i| format!("org-{i}")).collect()
}
pub fn openai_api_key(org: &str) -> String {
    format!("sk-admin-FAKE-sim-{org}")
}
pub fn anthropic_api_key(org: &str) -> String {
    format!("sk-ant-admin01-FAKE-sim-{org}")
}
