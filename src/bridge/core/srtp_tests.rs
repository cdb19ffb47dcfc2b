//! The core's side of SRTP: re-offers of an SRTP call (RFC 4568 §7.1.4) keep it encrypted and
//! re-key the sockets only when the caller's key changes.

use std::time::Instant;

use super::tests::{agent_plan, setup};
use super::{Bridge, Input, Output};
use crate::media::srtp::MasterKey;
use crate::realtime::protocol::Dialect;
use crate::sdp::sdes::{Policy, Sdes};
use crate::sip::CallEvent;

fn savp_offer(key: &MasterKey) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 40000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
        key.to_base64()
    )
    .into_bytes()
}

/// The outputs until the core sleeps, without the model commands and RTP.
fn effects(b: &mut Bridge) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match b.poll_output() {
            Output::Timeout(_) => return out,
            Output::SendModel(_) | Output::SendRtp { .. } | Output::SendRtcp { .. } => {}
            other => out.push(other),
        }
    }
}

#[test]
fn srtp_reoffers_rekey_only_on_a_new_caller_key_and_never_downgrade() {
    let t0 = Instant::now();
    let sdes = Sdes::new(Policy::Offer);
    let caller_key = MasterKey::generate();
    let local = "127.0.0.1:30000".parse().expect("addr");
    let (negotiated, _) =
        crate::sdp::answer_sdes(&savp_offer(&caller_key), local, 1, 1, &sdes).expect("answer");
    let mut s = setup(super::CallPlan::Agent(agent_plan(Dialect::Ga)));
    s.negotiated = negotiated.clone();
    s.sdes = Some(sdes.clone());
    let mut b = Bridge::new(t0, s);
    effects(&mut b);

    // The same offer again (a session refresh): answered, keys unchanged, no re-keying.
    let sip = |sdp: Vec<u8>| CallEvent::Offer { sdp };
    b.handle_input(Input::Sip(t0, sip(savp_offer(&caller_key))));
    let out = effects(&mut b);
    assert!(
        matches!(out.as_slice(), [Output::AnswerOffer(Ok(answer))]
            if String::from_utf8_lossy(answer).contains(&sdes.key.to_base64())),
        "{out:?}"
    );

    // A new caller key: answered with our same key, then the sockets are re-keyed.
    let new_key = MasterKey::generate();
    b.handle_input(Input::Sip(t0, sip(savp_offer(&new_key))));
    let out = effects(&mut b);
    match out.as_slice() {
        [Output::AnswerOffer(Ok(_)), Output::SetSrtp(Some(keys))] => {
            assert_eq!(keys.remote, new_key);
            assert_eq!(keys.local, sdes.key);
        }
        other => panic!("expected an answer and a re-key, got {other:?}"),
    }

    // A plain re-offer would downgrade the call: 488, nothing re-keyed.
    let plain = String::from_utf8_lossy(&savp_offer(&new_key))
        .replace("RTP/SAVP", "RTP/AVP")
        .lines()
        .filter(|l| !l.starts_with("a=crypto"))
        .map(|l| format!("{l}\r\n"))
        .collect::<String>();
    b.handle_input(Input::Sip(t0, sip(plain.into_bytes())));
    let out = effects(&mut b);
    assert!(
        matches!(out.as_slice(), [Output::AnswerOffer(Err(488))]),
        "{out:?}"
    );
}
