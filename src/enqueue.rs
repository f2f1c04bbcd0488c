//! A request admission put in a durable queue: read its body (bounded by the queue's
//! `max_body`), store the whole request with the forwarding headers as computed now, and answer
//! the client only once the store says it is durable (fsynced): the queue's `accepted` answer
//! with `X-Seawall-Receipt`, or 413 / 503 + `Retry-After`, never a 202 for a request that is not
//! on disk. The queue's worker delivers it later, at the app's pace.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::answers::{self, Reason};
use crate::ctx::{Ctx, Disposition};
use crate::headers::{X_FORWARDED_FOR, X_REQUEST_ID};
use crate::queue::{Forwarding, Lead, QueueHandle, Refusal};

/// `Idempotency-Key`: a client's key for "the same lead, sent again" (IETF draft).
const IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");

/// The longest `Idempotency-Key` kept: longer ones are not a key a client generated.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Read the request body, at most `max` bytes; `None` when it is larger.
async fn read_body(session: &mut Session, max: u64) -> Result<Option<Bytes>> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if (body.len() + chunk.len()) as u64 > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// The whole request as the app would have received it now, for the queue to replay.
fn lead(session: &Session, ctx: &Ctx, body: Bytes) -> Lead {
    let req = session.req_header();
    // The request id the client was told goes with the lead, so its delivery can be traced to
    // the answer the client got.
    let mut headers: Vec<(String, Bytes)> = req
        .headers
        .iter()
        .filter(|(name, _)| **name != X_REQUEST_ID)
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect();
    headers.push((
        X_REQUEST_ID.as_str().to_string(),
        Bytes::copy_from_slice(ctx.request_id.as_bytes()),
    ));
    let xff = crate::client_ip::forwarded_for(
        ctx.client.peer,
        ctx.client.peer_trusted,
        req.headers.get_all(&X_FORWARDED_FOR).iter(),
    );
    let mut client_ip = Vec::with_capacity(16);
    crate::client_ip::write_ip(&mut client_ip, ctx.client.ip);
    Lead {
        method: req.method.as_str().to_string(),
        path: req.uri.path().to_string(),
        query: req.uri.query().map(str::to_string),
        headers,
        body,
        forwarding: Forwarding {
            client_ip: String::from_utf8_lossy(&client_ip).into_owned(),
            x_forwarded_for: String::from_utf8_lossy(&xff).into_owned(),
            x_forwarded_proto: if ctx.client.secure { "https" } else { "http" }.to_string(),
        },
        campaign: ctx.campaign.as_ref().map(|c| c.name.to_string()),
        accepted_at_ms: 0,
        idempotency_key: req
            .headers
            .get(&IDEMPOTENCY_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
            .map(str::to_string),
        receipt: String::new(),
    }
}

/// Answer a refusal: 413, or 503 + `Retry-After`. The connection closes when the body was not
/// read to its end.
async fn refuse(session: &mut Session, ctx: &mut Ctx, reason: Reason) -> Result<()> {
    ctx.disposition = Disposition::Answered(reason);
    if !session.as_mut().is_body_done() {
        session.set_keepalive(None);
    }
    let (h, body) = answers::build(reason, ctx.request_id_text(), &ctx.own_answer_headers());
    answers::write(session, h, Some(body)).await
}

/// Store the request in `q` and answer the client.
pub async fn serve(session: &mut Session, ctx: &mut Ctx, q: Arc<QueueHandle>) -> Result<()> {
    let live = q.settings();
    let declared = crate::headers::content_length(&session.req_header().headers);
    if declared.is_some_and(|n| n > live.max_body) {
        q.count_refusal(&Refusal::TooLarge);
        return refuse(session, ctx, Reason::BodyTooLarge).await;
    }
    let Some(body) = read_body(session, live.max_body).await? else {
        q.count_refusal(&Refusal::TooLarge);
        return refuse(session, ctx, Reason::BodyTooLarge).await;
    };
    match q.accept(lead(session, ctx, body)).await {
        Ok(accepted) => {
            let (h, body) = answers::accepted(
                &live.accepted,
                &accepted.receipt,
                ctx.request_id_text(),
                &ctx.own_answer_headers(),
            );
            ctx.disposition = Disposition::Queued(h.status);
            ctx.receipt = Some(accepted.receipt);
            answers::write(session, h, Some(body)).await
        }
        Err(Refusal::Full) => refuse(session, ctx, Reason::QueueFull).await,
        Err(Refusal::TooLarge) => refuse(session, ctx, Reason::BodyTooLarge).await,
        Err(Refusal::StoreError(_)) => refuse(session, ctx, Reason::QueueUnavailable).await,
    }
}
