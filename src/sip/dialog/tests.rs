//! Cancel-safety of [`CallEvents::recv`]: the pump polls it inside a `select!` that drops it
//! whenever another branch is ready first. Each test jams the in-dialog transaction's response
//! channel (so any await on a reply would stay pending), polls `recv` exactly once, drops it, and
//! then checks that the caller still gets its final response and the call its event.

use std::future::Future;
use std::task::Poll;

use rsipstack::dialog::dialog::{
    DialogInner, DialogState, DialogStateSender, TransactionCommand, TransactionCommandReceiver,
    TransactionHandle,
};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::DialogId;
use rsipstack::sip::{Header, Request, StatusCode};
use rsipstack::transaction::key::TransactionRole;
use rsipstack::EndpointBuilder;

use super::{CallEvent, CallEvents};
use crate::sip::admission::CallSlots;

const CALL_ID: &str = "cancel-safety@frontdesk.test";
const OUR_SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
const THEIR_SDP: &[u8] = b"v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=sendonly\r\n";
/// Our Min-SE (RFC 4028), seconds.
const MIN_SE: u32 = 90;

/// One in-dialog request (`method`, CSeq `cseq`) from the caller, with extra header lines and a
/// body.
fn request(method: &str, cseq: u32, extra: &str, body: &[u8]) -> Request {
    let head = format!(
        "{method} sip:frontdesk@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{cseq}\r\n\
         From: <sip:caller@127.0.0.1>;tag=caller\r\n\
         To: <sip:frontdesk@127.0.0.1>;tag=frontdesk\r\n\
         Call-ID: {CALL_ID}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:caller@127.0.0.1:5070>\r\n\
         Max-Forwards: 70\r\n\
         {extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Request::try_from(bytes.as_slice()).expect("test request parses")
}

/// A call object on a dialog that never touches the network, and the sender of its dialog states.
fn call() -> (CallEvents, DialogStateSender, DialogId) {
    let endpoint = EndpointBuilder::new().build();
    let id = DialogId {
        call_id: CALL_ID.into(),
        local_tag: "frontdesk".into(),
        remote_tag: "caller".into(),
    };
    let (states, rx) = tokio::sync::mpsc::unbounded_channel();
    let (tu, _) = tokio::sync::mpsc::unbounded_channel();
    let invite = request("INVITE", 1, "", b"");
    let inner = DialogInner::new(
        TransactionRole::Server,
        id.clone(),
        invite,
        endpoint.inner.clone(),
        states.clone(),
        None,
        None,
        tu,
    )
    .expect("dialog");
    let dialog = InviteDialog::from_inner(std::sync::Arc::new(inner));
    let dialogs = std::sync::Arc::new(rsipstack::dialog::dialog_layer::DialogLayer::new(
        endpoint.inner.clone(),
    ));
    let slot = CallSlots::default().try_acquire(1).expect("a free slot");
    let (_, mut events) = CallEvents::new(
        rx,
        dialog,
        dialogs,
        CALL_ID.into(),
        slot,
        None,
        MIN_SE,
        true,
    );
    events.local_sdp = Some(OUR_SDP.to_vec());
    (events, states, id)
}

/// Polls `fut` exactly once.
async fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// A transaction whose response channel is full: a response sent now has to wait until the
/// transaction layer (the returned receiver) takes the queued ones. Returns the handle for the
/// request, the receiver and how many placeholders were queued.
async fn jammed_transaction() -> (TransactionHandle, TransactionCommandReceiver, usize) {
    let (handle, rx) = TransactionHandle::new();
    let mut queued = 0;
    while poll_once(handle.reply(StatusCode::Trying)).await.is_ready() {
        queued += 1;
        assert!(queued < 1000, "the transaction channel is bounded");
    }
    (handle, rx, queued)
}

/// The final response that reached the transaction after the `queued` placeholders.
async fn final_response(
    mut rx: TransactionCommandReceiver,
    queued: usize,
) -> (u16, Vec<Header>, Option<Vec<u8>>) {
    for _ in 0..queued {
        rx.recv().await.expect("placeholder");
    }
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("a response within 10 s");
    let Some(TransactionCommand::Respond {
        status,
        headers,
        body,
    }) = got
    else {
        panic!("the request was never answered: its reply was dropped with recv");
    };
    (u16::from(status), headers.unwrap_or_default(), body)
}

/// Puts `state(handle)` on the dialog's state channel, `handle` being a jammed transaction's;
/// returns that transaction's receiver and its count of placeholders.
async fn deliver(
    states: &DialogStateSender,
    state: impl FnOnce(TransactionHandle) -> DialogState,
) -> (TransactionCommandReceiver, usize) {
    let (handle, rx, queued) = jammed_transaction().await;
    states.send(state(handle)).expect("state channel");
    (rx, queued)
}

/// Sends the re-INVITE/UPDATE `req` to the call on a jammed transaction, polls `recv` once and
/// drops it; returns what that one poll produced and the response the caller got.
async fn deliver_and_drop(
    events: &mut CallEvents,
    states: &DialogStateSender,
    id: &DialogId,
    req: Request,
) -> (Poll<Option<CallEvent>>, (u16, Vec<Header>, Option<Vec<u8>>)) {
    let (rx, queued) = deliver(states, |h| DialogState::Updated(id.clone(), req, h)).await;
    let polled = poll_once(events.recv()).await;
    (polled, final_response(rx, queued).await)
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| match h {
        Header::Other(n, v) if n.eq_ignore_ascii_case(name) => Some(v.as_str()),
        _ => None,
    })
}

#[tokio::test]
async fn a_glare_491_reaches_the_caller_when_recv_is_dropped() {
    let (mut events, states, id) = call();
    // Our own session refresh is outstanding.
    events.refresh = Some(Box::pin(std::future::pending()));
    let reinvite = request("INVITE", 2, "Content-Type: application/sdp\r\n", THEIR_SDP);
    let (polled, (status, _, _)) = deliver_and_drop(&mut events, &states, &id, reinvite).await;
    assert!(polled.is_pending(), "glare is no event for the call");
    assert_eq!(status, 491);
}

#[tokio::test]
async fn a_422_with_min_se_reaches_the_caller_when_recv_is_dropped() {
    let (mut events, states, id) = call();
    let update = request("UPDATE", 2, "Session-Expires: 30\r\n", b"");
    let (polled, (status, headers, _)) = deliver_and_drop(&mut events, &states, &id, update).await;
    assert!(polled.is_pending());
    assert_eq!(status, 422);
    assert_eq!(
        header(&headers, "Min-SE"),
        Some(MIN_SE.to_string().as_str())
    );
}

#[tokio::test]
async fn a_reinvite_without_sdp_gets_our_sdp_when_recv_is_dropped() {
    let (mut events, states, id) = call();
    let reinvite = request("INVITE", 2, "", b"");
    let (polled, (status, headers, body)) =
        deliver_and_drop(&mut events, &states, &id, reinvite).await;
    assert!(polled.is_pending(), "the event comes with the ACK's answer");
    assert_eq!(status, 200);
    assert_eq!(body.as_deref(), Some(OUR_SDP));
    assert!(headers.iter().any(
        |h| matches!(h, Header::ContentType(ct) if ct.to_string().contains("application/sdp"))
    ));
    assert!(events.expect_ack_answer, "the ACK's answer is awaited");
}

#[tokio::test]
async fn an_update_without_sdp_gets_200_when_recv_is_dropped() {
    let (mut events, states, id) = call();
    let update = request("UPDATE", 2, "", b"");
    let (polled, (status, _, body)) = deliver_and_drop(&mut events, &states, &id, update).await;
    assert!(polled.is_pending());
    assert_eq!(status, 200);
    assert_eq!(body, None);
}

#[tokio::test]
async fn a_reoffer_comes_out_of_the_poll_that_took_it_and_its_answer_is_sent() {
    let (mut events, states, id) = call();
    let reinvite = request("INVITE", 2, "Content-Type: application/sdp\r\n", THEIR_SDP);
    let (rx, queued) = deliver(&states, |h| DialogState::Updated(id.clone(), reinvite, h)).await;
    // The one poll that takes the re-INVITE returns its offer: nothing in between can be lost.
    let polled = poll_once(events.recv()).await;
    assert_eq!(
        polled,
        Poll::Ready(Some(CallEvent::Offer {
            sdp: THEIR_SDP.to_vec()
        }))
    );
    // The core's answer goes out although the transaction cannot take it yet.
    let answer = b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\n".to_vec();
    events.answer_offer(Ok(answer.clone()));
    let (status, _, body) = final_response(rx, queued).await;
    assert_eq!(status, 200);
    assert_eq!(body, Some(answer.clone()));
    assert_eq!(events.local_sdp, Some(answer), "the answer is our SDP now");
}

#[tokio::test]
async fn an_unanswered_reoffer_gets_our_sdp_from_a_recv_that_is_dropped() {
    let (mut events, states, id) = call();
    let update = request("UPDATE", 2, "Content-Type: application/sdp\r\n", THEIR_SDP);
    let (rx, queued) = deliver(&states, |h| DialogState::Updated(id.clone(), update, h)).await;
    assert!(matches!(
        poll_once(events.recv()).await,
        Poll::Ready(Some(CallEvent::Offer { .. }))
    ));
    // Nobody answers; the next recv answers with our current SDP, even if it is dropped at once.
    assert!(poll_once(events.recv()).await.is_pending());
    let (status, _, body) = final_response(rx, queued).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_deref(), Some(OUR_SDP));
}

#[tokio::test]
async fn a_refer_notify_is_answered_and_reported_by_the_poll_that_took_it() {
    let (mut events, states, id) = call();
    let notify = request(
        "NOTIFY",
        3,
        "Event: refer\r\nSubscription-State: terminated;reason=noresource\r\nContent-Type: message/sipfrag\r\n",
        b"SIP/2.0 200 OK\r\n",
    );
    let (rx, queued) = deliver(&states, |h| DialogState::Notify(id.clone(), notify, h)).await;
    assert_eq!(
        poll_once(events.recv()).await,
        Poll::Ready(Some(CallEvent::ReferNotify {
            status: 200,
            terminated: true
        }))
    );
    assert_eq!(final_response(rx, queued).await.0, 200);
}
