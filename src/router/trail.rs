//! A request's audit trail: what the router knows of it, gathered as it
//! goes (the token, the mount) and written by [`crate::audit::Broker`] —
//! the request record before the handler runs, the response record after.

use crate::audit::record::{Auth, Request as RequestRecord, Response as ResponseRecord};
use crate::audit::{Broker, Entry};
use crate::auth::TokenEntry;
use crate::logical::{MountEntry, Response};
use crate::Error as AnyError;

use super::Incoming;

pub struct Trail {
    auth: Auth,
    request: RequestRecord,
    non_hmac_response_keys: Vec<String>,
    /// The request record is written (the handler may run).
    logged: bool,
}

impl Trail {
    pub fn new(incoming: &Incoming) -> Trail {
        Trail {
            auth: Auth {
                token_type: "default".into(),
                ..Auth::default()
            },
            request: RequestRecord {
                id: incoming.id.clone(),
                operation: incoming.operation.as_str().into(),
                path: incoming.path.clone(),
                data: incoming.data.clone(),
                remote_address: incoming.remote.map(|a| a.ip().to_string()),
                remote_port: incoming.remote.map(|a| a.port()),
                ..RequestRecord::default()
            },
            non_hmac_response_keys: Vec::new(),
            logged: false,
        }
    }

    /// The caller, once its token is known.
    pub fn token(&mut self, token: &str, entry: &TokenEntry) {
        self.auth = Auth {
            client_token: Some(token.to_string()),
            accessor: Some(entry.accessor.clone()),
            display_name: entry.display_name.clone(),
            policies: entry.policies.clone(),
            token_type: "service".into(),
            token_issue_time: chrono::DateTime::from_timestamp(entry.creation_time, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            token_ttl: Some(entry.creation_ttl),
        };
    }

    /// Writes the request record before the handler runs; `Err` refuses
    /// the request.
    pub async fn before_handler(
        &mut self,
        broker: &Broker,
        mount: &MountEntry,
    ) -> Result<(), AnyError> {
        self.request.mount_point = Some(mount.path.clone());
        self.request.mount_type = Some(mount.kind.clone());
        self.request.mount_accessor = Some(mount.accessor.clone());
        self.request.non_hmac_keys = mount.settings.audit_non_hmac_request_keys.clone();
        self.non_hmac_response_keys = mount.settings.audit_non_hmac_response_keys.clone();
        broker.log(&self.entry("request", None, None)).await?;
        self.logged = true;
        Ok(())
    }

    /// Writes what is still unwritten: the request record of a request
    /// refused before its handler (with the error), then the response
    /// record. `Err` when a record reached no device.
    pub async fn after(
        &self,
        broker: &Broker,
        result: &Result<Response, AnyError>,
    ) -> Result<(), AnyError> {
        let error = result.as_ref().err().map(|e| e.to_string());
        if !self.logged {
            broker
                .log(&self.entry("request", None, error.clone()))
                .await?;
        }
        let response = result.as_ref().ok().map(|r| ResponseRecord {
            data: r.data.clone(),
            lease_id: r.secret.as_ref().map(|s| s.lease_id.clone()),
            auth: r.auth.clone(),
            warnings: r.warnings.clone(),
            non_hmac_keys: self.non_hmac_response_keys.clone(),
        });
        broker
            .log(&self.entry("response", Some(response.unwrap_or_default()), error))
            .await?;
        Ok(())
    }

    fn entry(
        &self,
        kind: &'static str,
        response: Option<ResponseRecord>,
        error: Option<String>,
    ) -> Entry {
        Entry {
            kind,
            auth: self.auth.clone(),
            request: self.request.clone(),
            response,
            error,
        }
    }
}
