//! The fast path on frames from the LAN: structurally valid frames (right checksums, sessions
//! and fragments the seeded tables know, random virtio_net_hdr GSO and checksum fields)
//! decoded from the input, and raw bytes for one input in eight. Beyond "no panic": forwarded
//! frames are valid (checksums, lengths, TTL decremented), a translated one's session is found
//! by its reverse lookup, replies are valid ICMP errors or RSTs, every drop is counted, and
//! dropped or punted frames are left as they came (`fastpath::valid_frames::check`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mhrouter::fuzz::fastpath_frame(data, false));
