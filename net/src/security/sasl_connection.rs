//! SASL on one connection (Kafka's `SaslServerAuthenticator` at the edge): on a SASL_PLAINTEXT
//! or SASL_SSL listener nothing but ApiVersions, SaslHandshake and SaslAuthenticate is served
//! before the client authenticated; those two requests are answered here from the connection's
//! [`SaslSession`]. After a v0 SaslHandshake the tokens come as raw size-prefixed frames (Kafka
//! 0.10.0's framing) and are answered the same way. A failed authentication is answered with SASL_AUTHENTICATION_FAILED after
//! `connection.failed.authentication.delay.ms` and the connection closes. With
//! `connections.max.reauth.ms` the session has a lifetime (KIP-368): the client re-authenticates
//! on the same connection before it ends, or the connection closes at its next request.
//!
//! Owns: [`ConnectionAuth`]. Must never: serve another request before authentication, run a
//! PBKDF2 on the shard thread, or tell a client which part of its credentials was wrong.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse};

use super::protocol::ConnectionSecurity;
use super::sasl::{SaslSession, Step};
use super::scram::verify_password;
use crate::connection::{decode_request, encode_response, Decoded};
use crate::handlers::{codes, str_bytes};
use crate::response_buf::OutSegment;
use crate::shard_context::ShardContext;

/// What a SASL request came to.
pub enum SaslOutcome {
    /// Send this and go on.
    Reply(Vec<OutSegment>),
    /// Send this; the connection is now `principal`.
    Authenticated { reply: Vec<OutSegment>, principal: String },
    /// Send this, then close (the reason is for the log).
    Failed { reply: Vec<OutSegment>, reason: String },
}

/// A connection's authentication state.
pub struct ConnectionAuth {
    session: Option<SaslSession>,
    authenticated: bool,
    expires_at: Option<Instant>,
    /// Who the first authentication said this connection is: a re-authentication (KIP-368)
    /// must say the same, as in Kafka.
    principal: Option<String>,
    /// A v0 SaslHandshake: the next frames are raw SASL tokens, not requests.
    raw_tokens: bool,
}

/// The largest frame read before the client authenticated (Kafka's
/// `sasl.server.max.receive.size` default): an unauthenticated peer cannot make the broker
/// set aside `socket.request.max.bytes`.
pub const MAX_UNAUTHENTICATED_FRAME_BYTES: usize = 512 * 1024;

impl ConnectionAuth {
    pub fn new(ctx: &ShardContext, security: &ConnectionSecurity) -> ConnectionAuth {
        let session = security
            .protocol
            .uses_sasl()
            .then(|| SaslSession::new(ctx.config.security.sasl_enabled_mechanisms.clone()));
        ConnectionAuth {
            authenticated: session.is_none(),
            session,
            expires_at: None,
            principal: None,
            raw_tokens: false,
        }
    }

    /// The largest request frame to read now.
    pub fn max_frame_bytes(&self, max_request_bytes: usize) -> usize {
        if self.authenticated {
            max_request_bytes
        } else {
            max_request_bytes.min(MAX_UNAUTHENTICATED_FRAME_BYTES)
        }
    }

    /// Whether a frame of `api_key` is a SASL request to hand to [`ConnectionAuth::handle`];
    /// `Err` (close, with this reason) if it may not be served now.
    pub fn admit(&self, api_key: i16, now: Instant) -> Result<bool, String> {
        if self.raw_tokens {
            return Ok(true); // a raw SASL token, whatever its first bytes
        }
        let sasl = api_key == ApiKey::SaslHandshake as i16 || api_key == ApiKey::SaslAuthenticate as i16;
        if sasl {
            return Ok(true);
        }
        if !self.authenticated && api_key != ApiKey::ApiVersions as i16 {
            return Err(format!("request (API key {api_key}) before SASL authentication"));
        }
        if self.expires_at.is_some_and(|t| now >= t) && api_key != ApiKey::ApiVersions as i16 {
            return Err("the SASL session expired (connections.max.reauth.ms) without re-authentication".into());
        }
        Ok(false)
    }

    /// Answers a SaslHandshake or SaslAuthenticate frame (or a raw token after a v0 handshake).
    pub async fn handle(&mut self, ctx: &ShardContext, frame: Bytes) -> Result<SaslOutcome, String> {
        if self.raw_tokens {
            return Ok(self.handle_raw(ctx, frame).await);
        }
        let Decoded::Request { api, version, correlation_id, request, .. } = decode_request(frame)? else {
            return Err("undecodable SASL request".into());
        };
        let encode = |kind: &ResponseKind| encode_response(api, version, correlation_id, kind, Vec::new());
        let Some(session) = &mut self.session else {
            // A SASL request on a listener without SASL (Kafka: ILLEGAL_SASL_STATE).
            let kind = match *request {
                RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
                    SaslHandshakeResponse::default().with_error_code(codes::ILLEGAL_SASL_STATE),
                ),
                _ => ResponseKind::SaslAuthenticate(
                    SaslAuthenticateResponse::default().with_error_code(codes::ILLEGAL_SASL_STATE),
                ),
            };
            return Ok(SaslOutcome::Reply(encode(&kind)?)); // and the connection goes on
        };
        match *request {
            RequestKind::SaslHandshake(r) => {
                let mechanisms = session.enabled_names().into_iter().map(str_bytes).collect();
                let response = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
                match session.handshake(&r.mechanism) {
                    Ok(()) => {
                        self.raw_tokens = version == 0;
                        Ok(SaslOutcome::Reply(encode(&ResponseKind::SaslHandshake(response))?))
                    }
                    Err(code) => Ok(SaslOutcome::Failed {
                        reply: encode(&ResponseKind::SaslHandshake(response.with_error_code(code)))?,
                        reason: format!("SASL mechanism {:?} refused", r.mechanism.as_str()),
                    }),
                }
            }
            RequestKind::SaslAuthenticate(r) => {
                let response = SaslAuthenticateResponse::default();
                let encode_auth = |r: SaslAuthenticateResponse| encode(&ResponseKind::SaslAuthenticate(r));
                match self.exchange(ctx, &r.auth_bytes).await {
                    Exchange::Continue(bytes) => {
                        Ok(SaslOutcome::Reply(encode_auth(response.with_auth_bytes(bytes.into()))?))
                    }
                    Exchange::Done { response: bytes, principal, lifetime_ms } => Ok(SaslOutcome::Authenticated {
                        reply: encode_auth(
                            response.with_auth_bytes(bytes.into()).with_session_lifetime_ms(lifetime_ms),
                        )?,
                        principal,
                    }),
                    Exchange::Failed { message, reason } => Ok(SaslOutcome::Failed {
                        reply: encode_auth(
                            response
                                .with_error_code(codes::SASL_AUTHENTICATION_FAILED)
                                .with_error_message(Some(str_bytes(message))),
                        )?,
                        reason,
                    }),
                }
            }
            _ => Err("not a SASL request".into()),
        }
    }

    /// One client token of the exchange (SaslAuthenticate's bytes, or a raw token after a v0
    /// SaslHandshake).
    async fn exchange(&mut self, ctx: &ShardContext, bytes: &[u8]) -> Exchange {
        let Some(session) = &mut self.session else {
            return Exchange::Failed { message: "no SASL on this listener", reason: "no SASL session".into() };
        };
        let image = &ctx.image;
        let lookup = |user: &str, m| image.borrow().security.credential(user, m);
        let mut step = session.authenticate(bytes, lookup);
        if let Step::CheckPassword { mechanism, credential, password, .. } = step {
            let ok =
                glommio::executor().spawn_blocking(move || verify_password(mechanism, &credential, &password)).await;
            step = session.password_checked(ok);
        }
        let failed = |message, reason| async move {
            // Kafka's `connection.failed.authentication.delay.ms`: slows down guessing.
            glommio::timer::sleep(Duration::from_millis(ctx.config.security.failed_authentication_delay_ms)).await;
            Exchange::Failed { message, reason }
        };
        match step {
            Step::Continue(bytes) => Exchange::Continue(bytes),
            Step::Done { principal, .. } if self.principal.as_ref().is_some_and(|p| *p != principal) => {
                let reason = format!("re-authentication as {principal} instead of {:?}", self.principal);
                failed("Cannot change principals during re-authentication", reason).await
            }
            Step::Done { response, principal } => {
                self.principal = Some(principal.clone());
                self.authenticated = true;
                self.raw_tokens = false;
                let lifetime_ms = ctx.config.security.max_reauth_ms;
                self.expires_at = (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms as u64));
                Exchange::Done { response, principal, lifetime_ms }
            }
            Step::Failed(reason) => failed("Authentication failed: Invalid username or password", reason).await,
            Step::CheckPassword { .. } => unreachable!("a password check is answered above"),
        }
    }

    /// A raw token after a v0 SaslHandshake (Kafka 0.10.0's framing: size-prefixed tokens, no
    /// request header): the answer is a size-prefixed raw token; a failure closes without one.
    async fn handle_raw(&mut self, ctx: &ShardContext, frame: Bytes) -> SaslOutcome {
        let raw = |bytes: Vec<u8>| {
            let mut out = (bytes.len() as i32).to_be_bytes().to_vec();
            out.extend_from_slice(&bytes);
            vec![OutSegment::Bytes(Bytes::from(out))]
        };
        match self.exchange(ctx, &frame).await {
            Exchange::Continue(bytes) => SaslOutcome::Reply(raw(bytes)),
            Exchange::Done { response, principal, .. } => {
                SaslOutcome::Authenticated { reply: raw(response), principal }
            }
            Exchange::Failed { reason, .. } => SaslOutcome::Failed { reply: Vec::new(), reason },
        }
    }
}

/// What one client token of the exchange came to.
enum Exchange {
    Continue(Vec<u8>),
    Done {
        response: Vec<u8>,
        principal: String,
        lifetime_ms: i64,
    },
    /// `message` is for the client, `reason` for the log.
    Failed {
        message: &'static str,
        reason: String,
    },
}
