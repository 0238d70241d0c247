//! Any bytes a peer can send: decoding must never panic or allocate what a length field claims,
//! and a frame that decodes must re-encode to a frame that decodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_sync::{decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_frame(data) {
        let again = decode_frame(&encode_frame(&frame)).expect("a re-encoded frame decodes");
        assert_eq!(again, frame);
    }
});
