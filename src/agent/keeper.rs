//! One credential's loop: fetch, write the sink, notify, renew, replace,
//! and revoke replaced leases after the grace period.
//!
//! The loop never gives up on the server: every failed call is retried after
//! a capped exponential backoff. It stops between steps when shutdown is
//! signalled and hands back the leases it still holds, for the caller to
//! revoke.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::client::{self, Client};

use super::api::{self, Issued};
use super::credential::Credential;
use super::notify;
use super::render::render;
use super::schedule::{Action, Backoff, Held};
use super::sink;
use super::token::TokenFile;

/// A replaced lease waiting for its grace period to end.
#[derive(Debug, Clone)]
struct Retiring {
    lease_id: String,
    at: Instant,
    /// After this, the server has revoked it on its own.
    expires: Instant,
}

pub struct Keeper {
    credential: Credential,
    client: Client,
    token: Arc<TokenFile>,
    grace: Duration,
    backoff: Backoff,
    /// Revocation retries back off on their own, apart from fetch and renew.
    revoke_backoff: Backoff,
    current: Option<Held>,
    retiring: Vec<Retiring>,
    next: Option<(Action, Instant)>,
}

impl Keeper {
    pub fn new(
        credential: Credential,
        client: Client,
        token: Arc<TokenFile>,
        grace: Duration,
        backoff: Backoff,
    ) -> Keeper {
        Keeper {
            credential,
            client,
            token,
            grace,
            revoke_backoff: backoff.clone(),
            backoff,
            current: None,
            retiring: Vec::new(),
            next: Some((Action::Fetch, Instant::now())),
        }
    }

    /// Runs until `shutdown` turns true; returns the lease ids still held.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Vec<String> {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wake = self.wake_at();
            tokio::select! {
                _ = sleep_until(wake) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    continue;
                }
            }
            self.step(Instant::now()).await;
        }
        self.current
            .take()
            .map(|held| held.lease_id)
            .into_iter()
            .chain(self.retiring.drain(..).map(|r| r.lease_id))
            .collect()
    }

    /// The earliest of the next action and the next revocation.
    fn wake_at(&self) -> Option<Instant> {
        let action = self.next.map(|(_, at)| at);
        let retire = self.retiring.iter().map(|r| r.at).min();
        match (action, retire) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        }
    }

    /// Does whatever is due at `now`.
    pub async fn step(&mut self, now: Instant) {
        self.revoke_due(now).await;
        let Some((action, at)) = self.next else {
            return;
        };
        if at > now {
            return;
        }
        match action {
            Action::Fetch => self.fetch().await,
            Action::Renew => self.renew(now).await,
        }
    }

    async fn fetch(&mut self) {
        let c = &self.credential;
        let sent = Instant::now();
        let token = self.token.current();
        let issued = match api::read_credentials(&self.client, &token, &c.mount, &c.path).await {
            Ok(issued) => issued,
            Err(e) => return self.retry(Action::Fetch, "cannot get credentials", &e),
        };
        if let Err(e) = self.write(&issued).await {
            tracing::error!(
                path = %c.path,
                file = %c.file.display(),
                "cannot write the sink file: {e}"
            );
            // A user the application cannot see is of no use: give it back.
            self.retiring.push(Retiring {
                lease_id: issued.lease.id.clone(),
                at: Instant::now(),
                expires: sent + issued.lease.duration,
            });
            let delay = self.backoff.delay();
            self.next = Some((Action::Fetch, Instant::now() + delay));
            return;
        }
        tracing::info!(
            path = %c.path,
            file = %c.file.display(),
            username = %issued.credentials.username,
            lease_id = %issued.lease.id,
            ttl = issued.lease.duration.as_secs(),
            "wrote new credentials"
        );
        if let Some(command) = &c.command {
            notify::run_command(command, &c.file).await;
        }
        if let Some(target) = &c.signal {
            notify::send_signal(target);
        }
        let held = Held::issued(&issued.lease, sent);
        if let Some(old) = self.current.replace(held) {
            let now = Instant::now();
            let expires = old.expires();
            self.retiring.push(Retiring {
                lease_id: old.lease_id,
                at: (now + self.grace).min(expires),
                expires,
            });
        }
        self.backoff.reset();
        self.next = self.current.as_ref().and_then(Held::next);
    }

    async fn write(&self, issued: &Issued) -> std::io::Result<()> {
        let contents = render(
            &self.credential.format,
            &issued.credentials,
            &issued.lease.id,
        );
        sink::write(&self.credential.file, contents).await
    }

    async fn renew(&mut self, now: Instant) {
        let Some(held) = &self.current else {
            self.next = Some((Action::Fetch, now));
            return;
        };
        if now >= held.expires() {
            tracing::warn!(lease_id = %held.lease_id, "the lease expired before it could be renewed; fetching new credentials");
            self.next = Some((Action::Fetch, now));
            return;
        }
        let sent = Instant::now();
        let token = self.token.current();
        let (lease_id, increment) = (held.lease_id.clone(), held.increment);
        match api::renew(&self.client, &token, &lease_id, increment).await {
            Ok(lease) => {
                let Some(held) = self.current.as_mut() else {
                    return;
                };
                held.renewed(&lease, sent);
                self.backoff.reset();
                self.next = held.next();
                if held.capped {
                    tracing::info!(
                        lease_id = %lease_id,
                        ttl = lease.duration.as_secs(),
                        "the lease is near its max TTL; fetching new credentials"
                    );
                } else {
                    tracing::info!(lease_id = %lease_id, ttl = lease.duration.as_secs(), "renewed");
                }
            }
            // Not a 400 with Retry-After (PostgreSQL away): that one is
            // retried, keeping the credential, as a new one could not be
            // issued either.
            Err(e) if e.is_refused() => {
                tracing::warn!(lease_id = %lease_id, "renewal refused ({e}); fetching new credentials");
                self.next = Some((Action::Fetch, now));
            }
            Err(e) => self.retry(Action::Renew, "cannot renew the lease", &e),
        }
    }

    fn retry(&mut self, action: Action, what: &str, e: &client::Error) {
        let delay = self.backoff.delay();
        tracing::warn!(
            path = %self.credential.path,
            "{what}: {e}; retrying in {:.1}s",
            delay.as_secs_f64()
        );
        self.next = Some((action, Instant::now() + delay));
    }

    /// Revokes the replaced leases whose grace period is over. A failure is
    /// retried later, until the lease would have expired anyway.
    async fn revoke_due(&mut self, now: Instant) {
        let (due, waiting): (Vec<Retiring>, Vec<Retiring>) =
            self.retiring.drain(..).partition(|r| r.at <= now);
        self.retiring = waiting;
        for mut r in due {
            let token = self.token.current();
            match api::revoke(&self.client, &token, &r.lease_id).await {
                Ok(()) => {
                    self.revoke_backoff.reset();
                    tracing::info!(lease_id = %r.lease_id, "revoked the replaced lease");
                }
                Err(e) if e.is_permission_denied() => {
                    tracing::error!(lease_id = %r.lease_id, "cannot revoke the replaced lease: {e} ({})", super::REVOKE_HINT);
                }
                Err(e) if Instant::now() >= r.expires => {
                    tracing::info!(lease_id = %r.lease_id, "cannot revoke the replaced lease ({e}); it has expired anyway");
                }
                Err(e) => {
                    let delay = self.revoke_backoff.delay();
                    tracing::warn!(lease_id = %r.lease_id, "cannot revoke the replaced lease: {e}; retrying in {:.1}s", delay.as_secs_f64());
                    r.at = Instant::now() + delay;
                    self.retiring.push(r);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
