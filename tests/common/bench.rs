//! What the benches that use this harness share: their knobs and the load they ran under.

/// The number in environment variable `name`, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The machine's 1, 5 and 15 minute load averages, as printed beside every run.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The node a bench loads into: acme (a retailer) with `partners` as suppliers, and an admin
/// user; returns the admin's API token.
pub async fn set_up_acme(svc: &parley::service::Service, partners: &[&str]) -> String {
    use parley::domain::Role;
    use parley::service::{NewToken, Principal};
    let op = Principal::operator();
    svc.init_identity("acme", "Acme Retail", Role::Retailer)
        .await
        .unwrap();
    for p in partners {
        svc.add_partner(&op, p, &format!("{p} supplies"), Role::Supplier)
            .await
            .unwrap();
    }
    svc.add_user(&op, "admin", Some("password123".into()), true)
        .await
        .unwrap();
    svc.create_token(
        &op,
        NewToken {
            name: "bench".into(),
            user: Some("admin".into()),
        },
    )
    .await
    .unwrap()
    .secret
}
