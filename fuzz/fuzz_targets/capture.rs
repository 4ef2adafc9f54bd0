//! The capture reader (`flowfilter replay`): arbitrary bytes as a pcap or
//! pcapng file.
//!
//! Invariants: no panic; errors name the file; memory stays bounded by the
//! input (every frame costs at least a 12-byte record of input and grows by
//! at most a synthesised 14-byte Ethernet header); every frame it returns
//! goes through the packet parser.
#![no_main]

use filter_common::parse::parse_frame;
use filter_user::replay::capture::parse_capture;
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz.pcap";

fuzz_target!(|data: &[u8]| {
    match parse_capture(NAME, data) {
        Ok(frames) => {
            assert!(
                frames.len() <= data.len() / 12,
                "{} frames from {} bytes",
                frames.len(),
                data.len()
            );
            let total: usize = frames.iter().map(|f| f.data.len()).sum();
            assert!(
                total <= data.len() + 14 * frames.len(),
                "{total} bytes of frames from {} bytes of input",
                data.len()
            );
            for f in &frames {
                let _ = parse_frame(f.data.as_slice());
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with(NAME), "error does not name the file: {msg}");
        }
    }
});
