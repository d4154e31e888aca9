//! Bounds-checked big-endian field access shared by the views.
//!
//! Out-of-range reads yield zero and out-of-range writes are ignored. `new_checked` is what
//! guarantees the fields are present; this layer only makes sure that a view built with
//! `new_unchecked` over a short buffer, or a header whose lengths lie, still cannot panic.

use core::ops::Range;
use std::net::Ipv4Addr;

fn try_array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..)
        .and_then(|rest| rest.first_chunk::<N>())
        .copied()
}

fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    try_array(buf, at).unwrap_or([0; N])
}

fn put<const N: usize>(buf: &mut [u8], at: usize, bytes: [u8; N]) {
    if let Some(dst) = buf
        .get_mut(at..)
        .and_then(|rest| rest.first_chunk_mut::<N>())
    {
        *dst = bytes;
    }
}

pub(super) fn u8_at(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

pub(super) fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array(buf, at))
}

pub(super) fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(buf, at))
}

/// Like `u16_at`, but None when the field is not in `buf` (for callers that must skip an
/// update rather than compute with zero).
pub(crate) fn try_u16_at(buf: &[u8], at: usize) -> Option<u16> {
    try_array(buf, at).map(u16::from_be_bytes)
}

pub(crate) fn try_u32_at(buf: &[u8], at: usize) -> Option<u32> {
    try_array(buf, at).map(u32::from_be_bytes)
}

pub(super) fn ipv4_at(buf: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(array::<4>(buf, at))
}

pub(super) fn bytes_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    array(buf, at)
}

pub(super) fn set_u8(buf: &mut [u8], at: usize, value: u8) {
    put(buf, at, [value]);
}

pub(crate) fn set_u16(buf: &mut [u8], at: usize, value: u16) {
    put(buf, at, value.to_be_bytes());
}

pub(crate) fn set_u32(buf: &mut [u8], at: usize, value: u32) {
    put(buf, at, value.to_be_bytes());
}

pub(super) fn set_ipv4(buf: &mut [u8], at: usize, addr: Ipv4Addr) {
    put(buf, at, addr.octets());
}

pub(super) fn set_bytes<const N: usize>(buf: &mut [u8], at: usize, bytes: [u8; N]) {
    put(buf, at, bytes);
}

/// `buf[range]`, or empty when the range does not fit.
pub(super) fn slice(buf: &[u8], range: Range<usize>) -> &[u8] {
    buf.get(range).unwrap_or(&[])
}

/// `&mut buf[range]`, or empty when the range does not fit.
pub(super) fn slice_mut(buf: &mut [u8], range: Range<usize>) -> &mut [u8] {
    buf.get_mut(range).unwrap_or(&mut [])
}
