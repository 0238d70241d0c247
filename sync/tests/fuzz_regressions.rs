//! Inputs kept from fuzzing the frame decoder (`sync/fuzz`, target `decode_frame`): crashes it
//! found, once fixed, and corpus entries that reached new code. Each must decode to a typed
//! error or to a frame that survives re-encoding, without a panic.

use parley_sync::{decode_frame, encode_frame};

#[test]
fn kept_fuzz_inputs_decode_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("sync/fuzz/regressions exists") {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Ok(frame) = decode_frame(&bytes) {
            let again = decode_frame(&encode_frame(&frame))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(again, frame, "{}", path.display());
        }
        seen += 1;
    }
    assert!(seen > 0, "no kept inputs in {}", dir.display());
}
