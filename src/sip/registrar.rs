//! The registrar (RFC 3261 10.3): REGISTER binds the To user (the address of record) to each
//! Contact for its expiry (Contact `expires` parameter, else the Expires header, else
//! `[registry] default_expires`, at most `max_expires`); `*` with Expires 0 removes all.
//! Answers 200 with the current bindings and publishes "subscriber reachable".
//!
//! **Trust.** Only from trusted networks (`[sip] register` can turn it off), a binding's
//! Contact must lie inside them, and an address of record that names no handset gets 404.
//!
//! Standards: RFC 3261 10.3.

use std::net::SocketAddr;

use tracing::info;

use super::message::{NameAddr, Request, Response, Uri};
use crate::clock::now_unix;
use crate::config::{self};
use crate::identity::HandsetKey;
use crate::registry::{self, Reachable};

use super::service::{Refusal, Service, refuse};

impl Service {
    pub(super) async fn register(&self, req: &Request, peer: SocketAddr) -> Response {
        match self.do_register(req, peer).await {
            Ok(bindings) => {
                let mut r = self.response(req, 200, "OK");
                let now = now_unix();
                for b in &bindings {
                    r.headers.push(
                        "Contact",
                        format!("<{}>;expires={}", b.contact, b.expires.saturating_sub(now)),
                    );
                }
                r.headers.push(
                    "Date",
                    crate::clock::rfc5322_date(now).replace("+0000", "GMT"),
                );
                r
            }
            Err((status, reason)) => self.response(req, status, &reason),
        }
    }

    pub(super) async fn do_register(
        &self,
        req: &Request,
        peer: SocketAddr,
    ) -> Result<Vec<registry::Binding>, Refusal> {
        if !config::trusted(&self.cfg().sip.trusted_networks, peer.ip()) {
            return refuse(403, "Forbidden");
        }
        let aor = req
            .to()
            .and_then(|t| Uri::parse(&t.uri))
            .map(|u| u.user)
            .filter(|u| !u.is_empty())
            .ok_or((400, "Bad To".to_string()))?;
        // An address-of-record that names no handset is not ours (RFC 3261 10.3 step 3).
        let key = HandsetKey::parse(&aor).or_else(|_| refuse(404, "Not Found"))?;
        let aor = key.to_string();
        let max = self.cfg().registry.max_expires.0.as_secs();
        let header_expires = req
            .headers
            .get("Expires")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let default = header_expires.unwrap_or(self.cfg().registry.default_expires.0.as_secs());
        let values = req.headers.get_all("Contact");
        let remove_all = values.iter().any(|v| v.trim() == "*");
        if remove_all && (values.len() != 1 || header_expires != Some(0)) {
            return refuse(400, "Contact * needs Expires: 0 and no other Contact");
        }
        let mut contacts = Vec::new();
        if !remove_all {
            for v in &values {
                let na = NameAddr::parse(v).ok_or((400, "Bad Contact".to_string()))?;
                // A binding steers a handset's texts: only to a host inside the trusted
                // networks (a BTS), never to an address the registering party chose freely.
                let inside = crate::delivery::route::contact_target(&na.uri).is_some_and(|t| {
                    config::trusted(&self.cfg().sip.trusted_networks, t.addr.ip())
                });
                if !inside {
                    return refuse(403, "Forbidden (Contact outside the trusted networks)");
                }
                let exp = na
                    .param("expires")
                    .and_then(|e| e.parse::<u64>().ok())
                    .unwrap_or(default)
                    .min(max);
                contacts.push((na.uri, exp));
            }
        }
        let (a, c, src) = (aor.clone(), contacts.clone(), peer.to_string());
        let bindings = self
            .registry
            .call(move |db| db.register(&a, &c, remove_all, &src, now_unix()))
            .await
            .or_else(|e| refuse(503, format!("Service Unavailable ({e})")))?;
        info!(%peer, "REGISTER {aor}: {} binding(s)", bindings.len());
        if contacts.iter().any(|(_, e)| *e > 0) {
            let msisdn = if let HandsetKey::Imsi(imsi) = &key {
                let i = imsi.digits().to_string();
                self.registry
                    .call(move |db| db.by_imsi(&i))
                    .await
                    .ok()
                    .flatten()
                    .map(|s| s.msisdn)
            } else {
                Some(aor.clone())
            };
            let _ = self.reachable.send(Reachable {
                aor,
                msisdn,
                contacts: bindings.iter().map(|b| b.contact.clone()).collect(),
            });
        }
        Ok(bindings)
    }
}
